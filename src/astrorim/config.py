"""Loading and validating workflow configuration files against ``config/schema.yaml``."""

from __future__ import annotations

import difflib
import os
import re
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml


class ConfigError(ValueError):
    """A configuration file is unreadable or invalid; the message names the file and the key."""


def load_schema() -> dict[str, Any]:
    """The configuration JSON schema shipped with the package (a copy of ``config/schema.yaml``)."""
    text = resources.files("astrorim").joinpath("data/config_schema.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def _key_path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "<top level>"


# At most this many problems are listed (after a header line), so a message stays within five lines.
MAX_LISTED_ERRORS = 3


def _describe(error: jsonschema.ValidationError) -> str:
    """One line: the key, what is wrong, and what is allowed (keys, or the type)."""
    where = _key_path(error)
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = sorted(schema.get("properties", {}))
        patterns = list(schema.get("patternProperties", {}))
        unknown = [k for k in error.instance
                   if k not in allowed and not any(re.search(pattern, str(k)) for pattern in patterns)]
        prefix = "" if where == "<top level>" else f"{where}."
        parts = []
        for key in unknown:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            parts.append(f"{prefix}{key}" + (f" (did you mean {prefix}{close[0]}?)" if close else ""))
        keys = ", ".join(allowed + [f"/{pattern}/" for pattern in patterns])
        return f"{', '.join(parts) or where}: unknown key; allowed at {where}: {keys}"
    if error.validator == "required":
        return f"{where}: {error.message.replace(' is a required property', '')} is missing (a required key)"
    if error.validator == "type":
        return f"{where}: {error.instance!r} is not of type {error.validator_value!r}"
    return f"{where}: {error.message}"


def validate_config(config: dict[str, Any], source: str = "<config>") -> dict[str, Any]:
    """Validate ``config`` in place (defaults are not filled); raise :class:`ConfigError` naming the key.

    The message is at most five lines: the file, then up to three problems (key, what is wrong, the
    allowed keys or type), then how many more there are.
    """
    validator = jsonschema.Draft202012Validator(load_schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    # a missing required key that is the likely spelling of an unknown key there is the same mistake
    renamed = {(tuple(e.absolute_path), close) for e in errors if e.validator == "additionalProperties"
               and isinstance(e.instance, dict) and isinstance(e.schema, dict)
               for key in e.instance if key not in e.schema.get("properties", {})
               for close in difflib.get_close_matches(str(key), sorted(e.schema.get("properties", {})), n=1)}
    errors = [e for e in errors if not (e.validator == "required" and isinstance(e.validator_value, list)
                                        and any((tuple(e.absolute_path), k) in renamed for k in e.validator_value
                                                if k not in e.instance))]
    if errors:
        lines = [_describe(error) for error in errors[:MAX_LISTED_ERRORS]]
        if len(errors) > MAX_LISTED_ERRORS:
            lines.append(f"... and {len(errors) - MAX_LISTED_ERRORS} more")
        raise ConfigError(f"{source}: invalid configuration\n  " + "\n  ".join(lines))
    return config


def load_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML configuration and validate it."""
    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: configuration file not found") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return validate_config(config, source=str(path))
