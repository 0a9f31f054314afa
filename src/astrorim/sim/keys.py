"""Example keys and their random streams.

Every simulated example is identified by (seed, version, phase, split, index).  Its random numbers
come only from ``example_rng`` of that key, so an example does not depend on which shard, batch
size or process produced it.
"""

from __future__ import annotations

import numpy as np

VERSIONS: tuple[str, ...] = ("v1", "v2", "v3", "v4", "v5", "v6")
PHASE_CODES: dict[str, int] = {"initial": 0, "finetune": 1, "test": 2}
SPLIT_CODES: dict[str, int] = {"train": 0, "val": 1, "test": 2}


def version_number(version: str) -> int:
    """1..6 for "v1".."v6"; ValueError naming the bad value otherwise."""
    if version not in VERSIONS:
        raise ValueError(f"unknown simulator version {version!r}; expected one of {VERSIONS}")
    return int(version[1:])


def phase_code(phase: str) -> int:
    if phase not in PHASE_CODES:
        raise ValueError(f"unknown phase {phase!r}; expected one of {tuple(PHASE_CODES)}")
    return PHASE_CODES[phase]


def split_code(split: str) -> int:
    if split not in SPLIT_CODES:
        raise ValueError(f"unknown split {split!r}; expected one of {tuple(SPLIT_CODES)}")
    return SPLIT_CODES[split]


def example_rng(seed: int, version: str, phase: str, split: str, index: int) -> np.random.Generator:
    """The random generator of one example.

    Built from ``SeedSequence([seed, version_number, phase_code, split_code, index])`` with phase
    codes initial=0, finetune=1, test=2 and split codes train=0, val=1, test=2.
    """
    for name, value in (("seed", seed), ("index", index)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{name} must be an integer, got {value!r}")
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value!r}")
    key = [int(seed), version_number(version), phase_code(phase), split_code(split), int(index)]
    return np.random.default_rng(np.random.SeedSequence(key))
