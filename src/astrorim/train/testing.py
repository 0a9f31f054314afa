"""Tiny simulated datasets and a tiny model configuration for tests and benchmarks of the training stage.

``make_tiny_dataset`` runs the real simulators (:func:`astrorim.sim.simulate`) on small images and writes
shards and per-phase manifests exactly as the workflow does, so tests exercise the real file format.
"""

from __future__ import annotations

import os
from pathlib import Path

from astrorim.io.shards import write_shard
from astrorim.manifest import build_manifest, write_manifest

# A model small enough to train a few epochs in seconds on one CPU core (32 x 32 images).
TINY_MODEL = {"n_iter": 2, "encoder_channels": [8, 8, 8, 8], "encoder_pool": 1, "encoder_hidden": [16, 16],
              "rim_channels": [8, 8], "rim_hidden": 8, "rim_fine_hidden": 0, "psf_kernel_size": 7}

TINY_COUNTS = {"initial": {"train": 32, "val": 16}, "finetune": {"train": 16, "val": 8}}
TINY_SEEDS = {"initial": 1001, "finetune": 2002, "test": 3003}


def make_tiny_dataset(root: str | os.PathLike, *, npix: int = 32, counts: dict | None = None,
                      versions: tuple[str, ...] = ("v1", "v2"), shard_size: int = 8,
                      seeds: dict | None = None) -> dict[str, Path]:
    """Simulate shards under ``root/sims/<phase>/<version>/<split>/`` and write each phase's manifest.

    ``counts[phase][split]`` examples are split evenly over ``versions`` (v1 and v2 work at 32 px; later
    versions' correlated-noise kernels need larger images).  Returns {phase: manifest path}.
    """
    from astrorim.sim import simulate  # lenstronomy import only when data are made

    root = Path(root)
    counts = counts or TINY_COUNTS
    seeds = {**TINY_SEEDS, **(seeds or {})}
    manifests = {}
    for phase, splits in counts.items():
        paths = []
        for split, total in splits.items():
            per_version = total // len(versions)
            for version in versions:
                for shard, start in enumerate(range(0, per_version, shard_size)):
                    n = min(shard_size, per_version - start)
                    batch = simulate(version, n, seeds[phase], phase=phase, split=split, start_index=start,
                                     npix=npix)
                    path = root / "sims" / phase / version / split / f"shard-{shard:05d}.h5"
                    write_shard(path, batch, {"version": version, "phase": phase, "split": split,
                                              "seed": seeds[phase], "start_index": start})
                    paths.append(path)
        manifests[phase] = root / "sims" / phase / "manifest.csv"
        write_manifest(build_manifest(paths), manifests[phase])
    return manifests


def tiny_config(data_dir: str | os.PathLike, results_dir: str | os.PathLike, **training) -> dict:
    """A workflow-like configuration for the tiny dataset; ``training`` keys override the defaults."""
    base = {"seed": 7, "batch_size": 8, "num_workers": 0, "checkpoint_every_s": 0,
            "initial": {"epochs": 2, "lr_rim": 1e-3, "lr_forward": 1e-4, "warmup_epochs": 1},
            "finetune": {"epochs": 2, "lr_rim": 1e-4, "lr_forward": 1e-5}}
    for key, value in training.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return {"run_name": "tiny", "data_dir": str(data_dir), "results_dir": str(results_dir), "npix": 32,
            "model": dict(TINY_MODEL), "training": base}
