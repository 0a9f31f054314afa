"""Photometry (paper §3.2.3, stage 4): magnitudes to detector counts.

C_total [e-] = t_exp 10^(-0.4 (m - m0)) with m0 = 25.94, the AB magnitude that gives 1 e-/s on
HST/ACS/WFC F814W; counts in ADU are C_total / gain.
"""

from __future__ import annotations

import numpy as np

from .settings import VersionSettings


def mag_to_adu(mag, exposure_s, zero_point: float, gain_e_per_adu: float):
    """Total counts [ADU] of a source of AB magnitude ``mag`` in an exposure of ``exposure_s`` seconds."""
    if np.any(np.asarray(exposure_s) <= 0) or gain_e_per_adu <= 0:
        raise ValueError(f"exposure_s and gain must be > 0, got {exposure_s}, {gain_e_per_adu}")
    return np.asarray(exposure_s) * 10.0 ** (-0.4 * (np.asarray(mag) - zero_point)) / gain_e_per_adu


def adu_to_mag(adu, exposure_s, zero_point: float, gain_e_per_adu: float):
    """Inverse of :func:`mag_to_adu`."""
    return zero_point - 2.5 * np.log10(np.asarray(adu) * gain_e_per_adu / np.asarray(exposure_s))


def sample_source_mag(rng: np.random.Generator, s: VersionSettings) -> float:
    """Uniform in ``source_mag``, or Gaussian ``source_mag_normal`` truncated to it (by redrawing)."""
    lo, hi = s.source_mag
    if s.source_mag_normal is None:
        return float(rng.uniform(lo, hi))
    mean, sigma = s.source_mag_normal
    for _ in range(100):
        m = rng.normal(mean, sigma)
        if lo <= m <= hi:
            return float(m)
    return float(np.clip(m, lo, hi))
