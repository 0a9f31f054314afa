"""Resumable training checkpoints on top of :mod:`astrorim.model.checkpoint`.

A training checkpoint is a model checkpoint (format "astrorim-checkpoint": model_config, model_state,
ema_state, meta) with these extra keys, all loadable with ``torch.load(weights_only=True)``:

    epoch             completed epochs
    batch_in_epoch    batches of epoch ``epoch`` already done (0 at an epoch boundary; mid-epoch saves)
    global_step       optimiser steps so far
    config_hash       hash of ``training_state['hashed_config']`` (astrorim.train.config.config_hash)
    optimizer_state   AdamW state_dict
    scheduler_state   WarmupPlateau state_dict
    scaler_state      GradScaler state_dict (empty when no fp16 scaling)
    rng_state         python, numpy, torch CPU and CUDA generator states
    training_state    hashed_config, EMA counters, best-so-far, early stopping, metric history,
                      partial-epoch sums, finished flag

``meta`` carries what downstream stages read: phase, the example streams trained and validated on
(``training_data``: role, phase, version, split, seed, start_index, n), config hash, val metrics.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from astrorim.model.checkpoint import CheckpointError, read_checkpoint, save_model_checkpoint
from astrorim.train.config import config_differences

EXTRA_KEYS = ("epoch", "batch_in_epoch", "global_step", "config_hash", "optimizer_state", "scheduler_state",
              "scaler_state", "rng_state", "training_state")


class ConfigMismatchError(CheckpointError):
    """A checkpoint was written by a run with another configuration."""


def capture_rng_state() -> dict:
    """Python, numpy (legacy global), torch CPU and CUDA generator states, weights_only-loadable."""
    py = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": [py[0], list(py[1]), py[2]],
             "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
             "torch": torch.get_rng_state(),
             "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}
    return state


def restore_rng_state(state: dict) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        if len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])


def save_training_checkpoint(path: str | os.PathLike, model, ema_model, *, meta: dict, epoch: int,
                             batch_in_epoch: int, global_step: int, config_hash: str, optimizer, scheduler,
                             scaler, training_state: dict) -> Path:
    """Write a resumable checkpoint atomically (``save_model_checkpoint`` writes temp + rename)."""
    extra = {
        "epoch": int(epoch),
        "batch_in_epoch": int(batch_in_epoch),
        "global_step": int(global_step),
        "config_hash": str(config_hash),
        "optimizer_state": optimizer.state_dict(),
        "scheduler_state": scheduler.state_dict(),
        "scaler_state": scaler.state_dict() if scaler is not None and scaler.is_enabled() else {},
        "rng_state": capture_rng_state(),
        "training_state": training_state,
    }
    ema_state = {k: v for k, v in ema_model.state_dict().items()}
    return save_model_checkpoint(path, model, ema_state=ema_state, meta=meta, extra=extra)


def read_training_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """A training checkpoint dict; CheckpointError naming the file if it lacks the training keys."""
    ckpt = read_checkpoint(path, map_location)
    missing = [k for k in EXTRA_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path} is a model checkpoint without training state (missing {missing}); "
                              f"it cannot be resumed")
    return ckpt


def restore_training_state(ckpt: dict, model, ema, optimizer, scheduler, scaler=None) -> dict:
    """Load a training checkpoint's weights, EMA, optimiser, schedule, gradient scaler and RNG streams into a run;
    returns its ``training_state`` (the loop's own bookkeeping)."""
    model.load_state_dict(ckpt["model_state"], strict=True)
    training_state = ckpt["training_state"]
    ema.load_state_dict(training_state["ema"], ckpt["ema_state"])
    optimizer.load_state_dict(ckpt["optimizer_state"])
    scheduler.load_state_dict(ckpt["scheduler_state"])
    if scaler is not None and scaler.is_enabled() and ckpt["scaler_state"]:
        scaler.load_state_dict(ckpt["scaler_state"])
    restore_rng_state(ckpt["rng_state"])
    return training_state


def check_config(path: str | os.PathLike, ckpt: dict, current_hash: str, current_config: dict) -> None:
    """Refuse a checkpoint written under another configuration, naming both hashes and the keys."""
    saved_hash = ckpt["config_hash"]
    if saved_hash == current_hash:
        return
    saved = ckpt["training_state"].get("hashed_config", {})
    diffs = config_differences(saved, current_config) or ["<no key differs: code or hash definition changed>"]
    shown = diffs[:20] + ([f"... and {len(diffs) - 20} more"] if len(diffs) > 20 else [])
    raise ConfigMismatchError(
        f"{path}: refusing to resume: the checkpoint was written with config hash {saved_hash}, "
        f"this run has config hash {current_hash}. Differing keys (checkpoint -> this run):\n  "
        + "\n  ".join(shown)
        + f"\nRestore the original configuration, or delete {Path(path).parent} to start over.")
