"""The six lens simulators v1-v6 (paper §3.2) on lenstronomy.

``simulate(version, n, seed, ...)`` returns a :class:`SimulationBatch` of float32 images and a truth
table; every example is reproducible from (seed, version, phase, split, index) alone.
"""

from __future__ import annotations

from . import v1, v2, v3, v4, v5, v6
from .core import SimulationBatch, run_settings
from .keys import VERSIONS, example_rng, version_number
from .settings import InstrumentRegime, VersionSettings

_SETTINGS = {m.SETTINGS.name: m.SETTINGS for m in (v1, v2, v3, v4, v5, v6)}

__all__ = ["VERSIONS", "SimulationBatch", "VersionSettings", "InstrumentRegime", "example_rng",
           "get_settings", "simulate"]


def get_settings(version: str) -> VersionSettings:
    """The frozen settings of one simulator version."""
    version_number(version)
    return _SETTINGS[version]


def simulate(version: str, n: int, seed: int, *, phase: str = "initial", split: str = "train",
             start_index: int = 0, npix: int = 96, progress: bool = False) -> SimulationBatch:
    """Simulate examples ``start_index .. start_index + n - 1`` of one (version, phase, split, seed).

    Raises ValueError naming the bad value for an unknown version/phase/split, n <= 0, a negative
    seed or start_index, or an odd npix.
    """
    return run_settings(get_settings(version), version, n, seed, phase=phase, split=split,
                        start_index=start_index, npix=npix, progress=progress)
