"""Spherical NFW halo, lenstronomy 'NFW' convention (torch, batched, differentiable).

With X = r / Rs and kappa_s = rho0 Rs / Sigma_crit = alpha_Rs / (4 Rs (1 + ln 1/2)) (Bartelmann 1996;
Wright & Brainerd 2000; Golse & Kneib 2002 eq. 54 ff.):

    kappa(X)   = 2 kappa_s F(X),        F(X) = (1 - G(X)) / (X^2 - 1)
    |alpha|(r) = 4 kappa_s Rs g(X) / X,  g(X) = ln(X/2) + G(X)
    G(X) = arccosh(1/X) / sqrt(1 - X^2)  (X < 1),   1 (X = 1),   arccos(1/X) / sqrt(X^2 - 1)  (X > 1)

so alpha_Rs is the deflection at r = Rs.  G is analytic in z = 1 - X^2: G = sum_k z^k / (2k + 1) on
both sides of X = 1, which gives the branch used for |z| < 0.25 (no 0/0 at X = 1, no cancellation
in F just beside it).  For X < 1 g is written without the ln(X/2) + ln(2/X) cancellation that ruins
float32 at small X.  A core 1e-12 Rs inside r keeps r = 0 finite (alpha = 0 there).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from astrorim.physics._common import as_param, check_coordinates, core_radius

__all__ = ["deflection", "convergence"]

_PROFILE = "nfw"

_LN_HALF_PLUS_ONE = 1.0 + math.log(0.5)
_SERIES_MAX_ABS_Z = 0.25
# 0.25^28 / 57 < 1e-18: the truncated series is exact to float64 rounding on |z| < 0.25.
_SERIES_TERMS = 28


def _series(z: Tensor, first_denominator: int) -> Tensor:
    """sum_{k < _SERIES_TERMS} z^k / (2k + first_denominator), by Horner's rule."""
    acc = torch.zeros_like(z)
    for k in reversed(range(_SERIES_TERMS)):
        acc = acc * z + 1.0 / (2 * k + first_denominator)
    return acc


def _radial(x, y, Rs, alpha_Rs, center_x, center_y):
    x, y = check_coordinates(x, y, _PROFILE)
    Rs = as_param(Rs, x, "Rs", _PROFILE)
    alpha_Rs = as_param(alpha_Rs, x, "alpha_Rs", _PROFILE)
    dx = x - as_param(center_x, x, "center_x", _PROFILE)
    dy = y - as_param(center_y, x, "center_y", _PROFILE)
    s = core_radius(Rs)
    X = torch.sqrt(dx * dx + dy * dy + s * s) / Rs
    kappa_s = alpha_Rs / (4.0 * Rs * _LN_HALF_PLUS_ONE)
    z = (1.0 - X) * (1.0 + X)  # = 1 - X^2 with no cancellation at X ~ 1
    low = z >= _SERIES_MAX_ABS_Z
    high = z <= -_SERIES_MAX_ABS_Z
    mid = ~(low | high)
    return dx, dy, Rs, kappa_s, X, z, low, high, mid


def deflection(x: Tensor, y: Tensor, Rs, alpha_Rs, center_x=0.0, center_y=0.0) -> tuple[Tensor, Tensor]:
    """NFW deflection (alpha_x, alpha_y) in the unit of x, y.

    Rs (> 0) and alpha_Rs (deflection at Rs) in the unit of x, y; all parameters broadcast against x.
    """
    dx, dy, Rs, kappa_s, X, z, low, high, mid = _radial(x, y, Rs, alpha_Rs, center_x, center_y)
    one = torch.ones_like(X)

    # X < 1: g / X^2 = -ln(X/2) / (s (1 + s)) + ln(1 - X^2 / (2 (1 + s))) / (s X^2), s = sqrt(1 - X^2).
    X_lo = torch.where(low, X, 0.5 * one)
    s_lo = torch.sqrt(torch.where(low, z, 0.75 * one))
    X2_lo = X_lo * X_lo
    g_x2_low = -torch.log(0.5 * X_lo) / (s_lo * (1.0 + s_lo)) + torch.log1p(
        -X2_lo / (2.0 * (1.0 + s_lo))
    ) / (s_lo * X2_lo)

    X_hi = torch.where(high, X, 2.0 * one)
    root_w = torch.sqrt(torch.where(high, -z, 3.0 * one))
    g_x2_high = (torch.log(0.5 * X_hi) + torch.atan(root_w) / root_w) / (X_hi * X_hi)

    X_mid = torch.where(mid, X, one)
    g_x2_mid = (torch.log(0.5 * X_mid) + _series(torch.where(mid, z, 0.0 * one), 1)) / (X_mid * X_mid)

    g_over_x2 = torch.where(low, g_x2_low, torch.where(high, g_x2_high, g_x2_mid))
    # |alpha| = 4 kappa_s Rs g / X along the unit vector (dx, dy) / r = (dx, dy) / (X Rs).
    factor = 4.0 * kappa_s * g_over_x2
    return factor * dx, factor * dy


def convergence(x: Tensor, y: Tensor, Rs, alpha_Rs, center_x=0.0, center_y=0.0) -> Tensor:
    """NFW convergence kappa (dimensionless); same inputs as :func:`deflection`."""
    _, _, _, kappa_s, X, z, low, high, mid = _radial(x, y, Rs, alpha_Rs, center_x, center_y)
    one = torch.ones_like(X)

    z_lo = torch.where(low, z, 0.75 * one)
    s_lo = torch.sqrt(z_lo)
    # arccosh(1/X) = ln((1 + s) / X), finite for the smallest X.
    G_low = (torch.log1p(s_lo) - torch.log(torch.where(low, X, 0.5 * one))) / s_lo
    F_low = (G_low - 1.0) / z_lo

    w_hi = torch.where(high, -z, 3.0 * one)
    root_w = torch.sqrt(w_hi)
    F_high = (1.0 - torch.atan(root_w) / root_w) / w_hi

    F_mid = _series(torch.where(mid, z, 0.0 * one), 3)

    F = torch.where(low, F_low, torch.where(high, F_high, F_mid))
    return 2.0 * kappa_s * F
