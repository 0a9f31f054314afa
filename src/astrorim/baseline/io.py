"""Atomic save/load of the baseline's artefacts: the trained VAE + latent prior, result arrays, JSON."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from astrorim.baseline.latent_prior import LatentPrior
from astrorim.baseline.vae import VAE, VAEConfig
from astrorim.io.atomic import atomic_path, write_text_atomic

VAE_FORMAT = "astrorim-baseline-vae-v1"


def save_vae(path: str | os.PathLike, vae: VAE, prior: LatentPrior, extra: dict | None = None) -> Path:
    """Weights, architecture, latent prior and ``extra`` metadata in one torch file (atomic)."""
    path = Path(path)
    payload = {"format": VAE_FORMAT, "config": vae.config.to_dict(), "state_dict": vae.state_dict(),
               "latent_prior": prior.state_dict(), "extra": extra or {}}
    with atomic_path(path, suffix=".pt.partial") as tmp:
        torch.save(payload, tmp)
    return path


def load_vae(path: str | os.PathLike) -> tuple[VAE, LatentPrior, dict]:
    """(VAE in eval mode, latent prior, extra metadata) from :func:`save_vae`'s file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: trained VAE not found")
    payload = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(payload, dict) or payload.get("format") != VAE_FORMAT:
        raise ValueError(f"{path}: not a baseline VAE file ({VAE_FORMAT})")
    vae = VAE(VAEConfig(**payload["config"]))
    vae.load_state_dict(payload["state_dict"])
    vae.eval()
    return vae, LatentPrior.from_state_dict(payload["latent_prior"]), payload.get("extra", {})


def save_npz(path: str | os.PathLike, **arrays: Any) -> Path:
    """``numpy.savez_compressed`` written atomically."""
    path = Path(path)
    with atomic_path(path, suffix=".npz.partial") as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
    return path


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found")
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.floating, np.integer, np.bool_)):
        return obj.item()
    return obj


def save_json(path: str | os.PathLike, data: dict) -> Path:
    """Pretty JSON (numpy values converted), atomic."""
    write_text_atomic(path, json.dumps(_jsonable(data), indent=2, sort_keys=False) + "\n")
    return Path(path)


def load_json(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found")
    return json.loads(path.read_text(encoding="utf-8"))
