"""Model checkpoints: a plain dict saved with ``torch.save``, written atomically.

Keys (format_version 2):

    format          "astrorim-checkpoint"
    format_version  2
    model_config    AstroRIMConfig.to_dict()  -- enough to rebuild the model, encoder_heads included
    model_state     model.state_dict()
    ema_state       EMA shadow of the model's tensors (same keys, a subset is allowed) or None
    meta            free-form, JSON-like dict (training set, epoch, metrics, ...)
    saved_with      {"astrorim": version, "torch": version}

format_version 1 (before the component encoder) had no ``encoder_heads`` in model_config: every such
checkpoint holds the paper's periodic-head encoder, so :func:`read_checkpoint` converts it on reading by
setting ``encoder_heads: periodic`` (weights unchanged); the model it builds is the one that was saved.

Other modules (training) may add further keys (optimiser state, ...); :func:`load_model` ignores them.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import zipfile
from pathlib import Path

import torch

from astrorim import __version__
from astrorim.io.atomic import atomic_path
from astrorim.model.astrorim import AstroRIM, AstroRIMConfig

CHECKPOINT_FORMAT = "astrorim-checkpoint"
CHECKPOINT_FORMAT_VERSION = 2
READABLE_FORMAT_VERSIONS = (1, 2)


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, or incompatible with this code."""


class NotACheckpointError(CheckpointError):
    """The file is not an astrorim checkpoint at all: torch cannot read it as plain state, or it has no format."""


def _plain(value, where: str):
    """JSON-like copy of ``value`` (numpy scalars become Python numbers) so that the checkpoint
    loads with ``torch.load(weights_only=True)``; anything else is refused, naming its key."""
    if isinstance(value, dict):
        return {str(k): _plain(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"checkpoint {where} has a {type(value).__name__}; use plain numbers, strings, "
                    f"lists and dicts")


def build_checkpoint(model: AstroRIM, *, ema_state: dict | None = None, meta: dict | None = None,
                     extra: dict | None = None) -> dict:
    """The checkpoint dict for ``model`` (tensors moved to CPU)."""
    if not isinstance(model, AstroRIM):
        raise TypeError(f"model must be an AstroRIM, got {type(model).__name__}")
    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "model_config": model.config.to_dict(),
        "model_state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "ema_state": None if ema_state is None else {k: v.detach().cpu() for k, v in ema_state.items()},
        "meta": _plain(dict(meta or {}), "meta"),
        "saved_with": {"astrorim": __version__, "torch": str(torch.__version__)},
    }
    for key, value in (extra or {}).items():
        if key in ckpt:
            raise ValueError(f"extra checkpoint key {key!r} collides with a reserved key")
        ckpt[key] = value
    return ckpt


def save_model_checkpoint(path: str | os.PathLike, model: AstroRIM, *, ema_state: dict | None = None,
                          meta: dict, extra: dict | None = None) -> Path:
    """Write ``model`` (and optional EMA weights, metadata, extra keys) to ``path`` atomically."""
    ckpt = build_checkpoint(model, ema_state=ema_state, meta=meta, extra=extra)
    path = Path(path)
    with atomic_path(path, suffix=".pt.partial") as tmp:
        torch.save(ckpt, tmp)
    return path


def read_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Load and validate the checkpoint dict at ``path`` (raises :class:`CheckpointError`)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, OSError,
            UnicodeDecodeError, ValueError, AttributeError, TypeError) as exc:
        raise NotACheckpointError(f"{path} is not a readable torch checkpoint ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''})") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise NotACheckpointError(f"{path} is not an AstroRIM checkpoint (no format: {CHECKPOINT_FORMAT!r})")
    version = ckpt.get("format_version")
    if version not in READABLE_FORMAT_VERSIONS:
        raise CheckpointError(f"{path} has checkpoint format_version {version!r}; this code reads "
                              f"versions {list(READABLE_FORMAT_VERSIONS)}")
    for key in ("model_config", "model_state"):
        if not isinstance(ckpt.get(key), dict):
            raise CheckpointError(f"{path} has no valid {key!r} entry")
    if version == 1:
        ckpt = convert_format_1(ckpt, path)
    return ckpt


def convert_format_1(ckpt: dict, path: str | os.PathLike = "<checkpoint>") -> dict:
    """A format_version 1 checkpoint as format_version 2: its encoder is the periodic-head one.

    A version 1 model_config naming encoder_heads other than "periodic" cannot exist (the key did not) and is
    refused.  The weights are not touched; ``meta['converted_from_format_version']`` records the conversion.
    """
    config = dict(ckpt["model_config"])
    heads = config.setdefault("encoder_heads", "periodic")
    if heads != "periodic":
        raise CheckpointError(f"{path}: format_version 1 checkpoint with encoder_heads={heads!r}; version 1 "
                              f"checkpoints hold the periodic-head encoder only")
    meta = dict(ckpt.get("meta") or {})
    meta["converted_from_format_version"] = 1
    return {**ckpt, "format_version": 2, "model_config": config, "meta": meta}


def load_model(path: str | os.PathLike, map_location="cpu", *, prefer_ema: bool = True,
               expected_npix: int | None = None) -> tuple[AstroRIM, dict]:
    """Rebuild the model stored at ``path``; returns (model in eval mode, meta).

    The EMA weights are used when present (``prefer_ema``).  ``expected_npix`` refuses a model
    built for another image size.
    """
    path = Path(path)
    ckpt = read_checkpoint(path, map_location)
    try:
        config = AstroRIMConfig.from_dict(ckpt["model_config"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: incompatible model_config: {exc}") from exc
    if expected_npix is not None and config.npix != expected_npix:
        raise CheckpointError(f"{path} holds a model for {config.npix} px images, expected {expected_npix}")
    try:
        model = AstroRIM(config)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot build the stored model_config: {exc}") from exc
    try:
        model.load_state_dict(ckpt["model_state"], strict=True)
        ema = ckpt.get("ema_state")
        if prefer_ema and ema:
            state = model.state_dict()
            unknown = sorted(set(ema) - set(state))
            if unknown:
                raise RuntimeError(f"EMA state has keys the model lacks: {unknown[:5]}")
            state.update(ema)
            model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the stored model_config: "
                              f"{str(exc).splitlines()[0]}") from exc
    model.to(map_location if not callable(map_location) else "cpu")
    model.eval()
    return model, dict(ckpt.get("meta") or {})


def sha256_file(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file (recorded in outputs for provenance)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk_bytes), b""):
            h.update(block)
    return h.hexdigest()
