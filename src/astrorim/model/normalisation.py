"""Per-example flux normalisation: one positive scalar per observation, applied linearly.

    s = q_0.995(y)            (the 99.5th percentile of the observation's pixels: a robust maximum
                               that one cosmic-ray hit or a few hot pixels do not set)
    y_n = y / s,  x_n = x / s,  sigma_n = sigma / s

The same s divides the observation, its noise level and -- during training -- the target source,
so the lensing operator (linear in flux) and the likelihood keep their meaning; outputs are
multiplied back by s.  If the percentile is not positive (an image that is mostly <= 0) we fall
back to max |y|, and an all-zero image gets s = 1.  No non-linear stretch (CLAHE, gamma, ...) is
ever applied.
"""

from __future__ import annotations

import numpy as np
import torch

ROBUST_MAX_QUANTILE = 0.995


def observation_scale(y: torch.Tensor | np.ndarray, *, check_finite: bool = True) -> torch.Tensor | np.ndarray:
    """Per-example scale s (B,) of observations y (B, H, W); same array type as y.

    ``check_finite`` refuses NaN or inf pixels; the check reads a flag back from y's device (a host
    synchronisation on a GPU), which the training step skips (a non-finite batch skips its update there)."""
    if isinstance(y, np.ndarray):
        return observation_scale(torch.from_numpy(np.ascontiguousarray(y)), check_finite=check_finite).numpy()
    if y.ndim != 3:
        raise ValueError(f"observations must be (B, H, W), got {tuple(y.shape)}")
    flat = y.detach().reshape(y.shape[0], -1)
    if check_finite and not torch.isfinite(flat).all():
        raise ValueError("observations contain NaN or inf pixels; cannot normalise")
    work = flat.double()
    s = torch.quantile(work, ROBUST_MAX_QUANTILE, dim=1)
    fallback = work.abs().amax(dim=1)
    s = torch.where(s > 0, s, fallback)
    s = torch.where(s > 0, s, torch.ones_like(s))
    return s.to(y.dtype if y.is_floating_point() else torch.float32)


def _expand(scale, like):
    if isinstance(like, np.ndarray):
        return np.asarray(scale).reshape((-1,) + (1,) * (like.ndim - 1))
    return torch.as_tensor(scale, dtype=like.dtype, device=like.device).reshape((-1,) + (1,) * (like.ndim - 1))


def normalise(a, scale):
    """a / s per example (a: (B, ...), s: (B,)); works for images, sources and noise levels."""
    return a / _expand(scale, a)


def denormalise(a, scale):
    """a * s per example: back to the input's flux units."""
    return a * _expand(scale, a)
