"""Singular isothermal sphere, lenstronomy 'SIS' convention (torch, batched, differentiable).

kappa = theta_E / (2 r), alpha = theta_E (dx, dy) / r, with r the distance from (center_x, center_y)
in the unit of x, y.  A core 1e-12 theta_E inside r (``_common.core_radius``) makes r = 0 give
alpha = 0 (as lenstronomy) and a finite kappa; elsewhere it changes nothing at float64 precision.
"""

from __future__ import annotations

import torch
from torch import Tensor

from astrorim.physics._common import as_param, check_coordinates, core_radius

__all__ = ["deflection", "convergence"]

_PROFILE = "sis"


def _offsets(x, y, theta_E, center_x, center_y):
    x, y = check_coordinates(x, y, _PROFILE)
    theta_E = as_param(theta_E, x, "theta_E", _PROFILE)
    dx = x - as_param(center_x, x, "center_x", _PROFILE)
    dy = y - as_param(center_y, x, "center_y", _PROFILE)
    s = core_radius(theta_E)
    return dx, dy, torch.sqrt(dx * dx + dy * dy + s * s), theta_E


def deflection(x: Tensor, y: Tensor, theta_E, center_x=0.0, center_y=0.0) -> tuple[Tensor, Tensor]:
    """SIS deflection (alpha_x, alpha_y) in the unit of x, y; parameters broadcast against x."""
    dx, dy, r, theta_E = _offsets(x, y, theta_E, center_x, center_y)
    return theta_E * dx / r, theta_E * dy / r


def convergence(x: Tensor, y: Tensor, theta_E, center_x=0.0, center_y=0.0) -> Tensor:
    """SIS convergence theta_E / (2 r) (dimensionless)."""
    _, _, r, theta_E = _offsets(x, y, theta_E, center_x, center_y)
    return 0.5 * theta_E / r
