"""The simulation plan: which shard files a configuration asks for and what each one holds.

Example indices are counted separately within each (phase, version, split) stream, and every example's random
stream is keyed by (seed, version, phase, split, index) — so the arrays do not depend on the shard size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

PHASES = ("initial", "finetune", "test")
SPLITS_BY_PHASE = {"initial": ("train", "val"), "finetune": ("train", "val"), "test": ("test",)}


@dataclass(frozen=True)
class ShardSpec:
    """One shard: ``n`` consecutive examples of a (phase, version, split) stream starting at ``start_index``."""

    phase: str
    version: str
    split: str
    shard: int
    start_index: int
    n: int
    seed: int

    @property
    def shard_label(self) -> str:
        return f"{self.shard:05d}"

    def relative_path(self) -> str:
        return f"sims/{self.phase}/{self.version}/{self.split}/shard-{self.shard_label}.h5"


def split_counts(phase: str, count: int, val_fraction: float | None) -> dict[str, int]:
    """Examples per split of one version within one phase (val rounded to the nearest integer)."""
    if phase == "test":
        return {"test": count}
    n_val = int(round(count * float(val_fraction)))
    return {"train": count - n_val, "val": n_val}


def shard_plan(config: dict[str, Any]) -> list[ShardSpec]:
    """Every shard the configuration asks for, in a stable order."""
    sim = config["simulation"]
    size = int(sim["shard_size"])
    specs = []
    for phase in PHASES:
        phase_cfg = sim["phases"][phase]
        for version in sorted(phase_cfg["counts"]):
            counts = split_counts(phase, int(phase_cfg["counts"][version]), phase_cfg.get("val_fraction"))
            for split, total in counts.items():
                for shard, start in enumerate(range(0, total, size)):
                    specs.append(ShardSpec(phase, version, split, shard, start, min(size, total - start),
                                           int(phase_cfg["seed"])))
    return specs


def shard_paths(config: dict[str, Any], phase: str | None = None) -> list[Path]:
    """Paths of every planned shard (optionally of one phase) under ``config['data_dir']``."""
    root = Path(config["data_dir"])
    return [root / s.relative_path() for s in shard_plan(config) if phase is None or s.phase == phase]


def find_shard(config: dict[str, Any], phase: str, version: str, split: str, shard: int) -> ShardSpec:
    """The plan entry for one shard; KeyError naming it when the configuration does not ask for it."""
    for spec in shard_plan(config):
        if (spec.phase, spec.version, spec.split, spec.shard) == (phase, version, split, int(shard)):
            return spec
    raise KeyError(f"shard {phase}/{version}/{split}/{int(shard):05d} is not in the configuration's plan")
