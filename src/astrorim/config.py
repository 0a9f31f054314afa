"""Loading and validating workflow configuration files against ``config/schema.yaml``."""

from __future__ import annotations

import os
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


def validate_config(config: dict[str, Any], source: str = "<config>") -> dict[str, Any]:
    """Validate ``config`` in place (defaults are not filled); raise :class:`ConfigError` naming the key."""
    validator = jsonschema.Draft202012Validator(load_schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for error in errors:
            if error.validator == "additionalProperties":
                lines.append(f"{_key_path(error)}: {error.message} (mistyped key?)")
            else:
                lines.append(f"{_key_path(error)}: {error.message}")
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
