"""Elliptical power law, lenstronomy 'EPL' convention (torch, batched, differentiable).

    kappa(x', y') = (3 - gamma)/2 * (theta_E / sqrt(q x'^2 + y'^2 / q))^(gamma - 1)

in the major-axis frame (phi = atan2(e2, e1)/2, q = (1 - e)/(1 + e)).  With t = gamma - 1,
b = theta_E sqrt(q), R = sqrt(q^2 x'^2 + y'^2) and R e^{i varphi} = q x' + i y', Tessore & Metcalf
(2015) eqs. 13 and 29 give

    alpha' = 2 b / (1 + q) (b / R)^(t - 1) omega(varphi),   omega = sum_n Omega_n,
    Omega_0 = e^{i varphi},  Omega_n = -f (2n - 2 + t) / (2n + 2 - t) e^{2 i varphi} Omega_{n-1},

with f = (1 - q)/(1 + q) (= e).  This is lenstronomy's hypergeometric 2F1(1, t/2; 2 - t/2; -f e^{2i varphi})
summed term by term.  |Omega_n / Omega_{n-1}| <= f whenever t <= 2, so the series is cut once the
geometric tail bound f^N / (1 - f) is below the dtype's tolerance (N chosen per call from the
largest f in the batch: 30 terms at q = 0.5, 54 at q = 0.3 in float64).  A core 1e-12 b keeps R = 0 finite.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from astrorim.physics._common import (
    as_param,
    check_coordinates,
    core_radius,
    ellipticity_geometry,
    from_major_axis_frame,
    to_major_axis_frame,
)

__all__ = ["deflection", "convergence", "n_series_terms"]

_PROFILE = "epl"

# Tail tolerance relative to |Omega_0| = 1, per dtype.
_SERIES_TOLERANCE = {torch.float64: 1e-14, torch.float32: 1e-8, torch.float16: 1e-4, torch.bfloat16: 1e-3}
# f^N / (1 - f) <= 1e-14 needs N = 346 at q = 0.05 (float64); flatter lenses, far outside any lens model
# here, are refused rather than silently truncated.
_MAX_SERIES_TERMS = 400


def n_series_terms(f_max: float, dtype: torch.dtype) -> int:
    """Number of Tessore-Metcalf terms for ellipticity modulus f = (1 - q)/(1 + q) at ``dtype``."""
    if not 0.0 <= f_max < 1.0 or not math.isfinite(f_max):
        raise ValueError(f"{_PROFILE}: ellipticity modulus must be in [0, 1), got {f_max}")
    if f_max == 0.0:
        return 1
    tol = _SERIES_TOLERANCE.get(dtype, 1e-14)
    n = math.ceil(math.log(tol * (1.0 - f_max)) / math.log(f_max))
    n = max(n, 1)
    if n > _MAX_SERIES_TERMS:
        q = (1.0 - f_max) / (1.0 + f_max)
        raise ValueError(
            f"{_PROFILE}: axis ratio q = {q:.3g} needs {n} series terms (> {_MAX_SERIES_TERMS}); "
            "use q >= 0.05"
        )
    return n


def _params(x, y, theta_E, gamma, e1, e2, center_x, center_y):
    x, y = check_coordinates(x, y, _PROFILE)
    theta_E = as_param(theta_E, x, "theta_E", _PROFILE)
    t = as_param(gamma, x, "gamma", _PROFILE) - 1.0
    e1 = as_param(e1, x, "e1", _PROFILE)
    e2 = as_param(e2, x, "e2", _PROFILE)
    e, q, cos_phi, sin_phi = ellipticity_geometry(e1, e2)
    dx = x - as_param(center_x, x, "center_x", _PROFILE)
    dy = y - as_param(center_y, x, "center_y", _PROFILE)
    xp, yp = to_major_axis_frame(dx, dy, cos_phi, sin_phi)
    b = theta_E * torch.sqrt(q)
    s = core_radius(b)
    R = torch.sqrt(q * q * xp * xp + yp * yp + s * s)
    return xp, yp, t, e, q, cos_phi, sin_phi, b, R


def deflection(x: Tensor, y: Tensor, theta_E, gamma, e1, e2, center_x=0.0, center_y=0.0) -> tuple[Tensor, Tensor]:
    """EPL deflection (alpha_x, alpha_y) in the unit of x, y.

    gamma is the 3D logarithmic slope (2 = isothermal; tested on [1.5, 2.5]); the other parameters as
    in :mod:`astrorim.physics.sie`.  All parameters broadcast against x.
    """
    xp, yp, t, e, q, cos_phi, sin_phi, b, R = _params(x, y, theta_E, gamma, e1, e2, center_x, center_y)
    f = e  # (1 - q) / (1 + q) with q = (1 - e) / (1 + e)
    n_terms = n_series_terms(float(f.detach().max()) if f.numel() else 0.0, x.dtype)

    cos_v = q * xp / R
    sin_v = yp / R
    cos_2v = cos_v * cos_v - sin_v * sin_v
    sin_2v = 2.0 * cos_v * sin_v
    re, im = cos_v, sin_v
    sum_re, sum_im = re, im
    for n in range(1, n_terms):
        ratio = -f * (2.0 * n - 2.0 + t) / (2.0 * n + 2.0 - t)
        re, im = ratio * (re * cos_2v - im * sin_2v), ratio * (re * sin_2v + im * cos_2v)
        sum_re = sum_re + re
        sum_im = sum_im + im

    amplitude = 2.0 * b / (1.0 + q) * (b / R) ** (t - 1.0)
    return from_major_axis_frame(amplitude * sum_re, amplitude * sum_im, cos_phi, sin_phi)


def convergence(x: Tensor, y: Tensor, theta_E, gamma, e1, e2, center_x=0.0, center_y=0.0) -> Tensor:
    """EPL convergence (2 - t)/2 (b / R)^t with t = gamma - 1 (dimensionless)."""
    _, _, t, _, _, _, _, b, R = _params(x, y, theta_E, gamma, e1, e2, center_x, center_y)
    return 0.5 * (2.0 - t) * (b / R) ** t
