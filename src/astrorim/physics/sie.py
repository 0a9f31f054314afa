"""Singular isothermal ellipsoid, lenstronomy 'SIE' convention (torch, batched, differentiable).

    kappa(x', y') = theta_E / (2 sqrt(q x'^2 + y'^2 / q))

in the frame whose x' axis is the major axis at angle phi = atan2(e2, e1)/2, with
q = (1 - e)/(1 + e), e = |e1 + i e2|, and theta_E the product-averaged (circularised) Einstein radius.
The deflection is Kormann et al. (1994) / Keeton & Kochanek (1998) eq. 8 with b = theta_E sqrt(q),
exactly the closed form lenstronomy evaluates (NIE with a vanishing core); it equals EPL at gamma = 2.
A core s = 1e-12 theta_E (see ``_common.core_radius``) keeps r = 0 finite; as in lenstronomy's NIE
it enters the closed form linearly, changing alpha by O(s/r) (< 1e-10 relative beyond r = 0.01 theta_E).
Lengths are in the unit of x, y (arcsec or normalised).
"""

from __future__ import annotations

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

__all__ = ["deflection", "convergence"]

_PROFILE = "sie"

# Below this (1 - q^2) the arctan/arctanh divided by sqrt(1 - q^2) is replaced by its Taylor series:
# the closed form is 0/0 at q = 1, the series (4 terms) is exact to < 1e-17 here.
_SERIES_MAX_ONE_MINUS_Q2 = 1e-4


def _params(x, y, theta_E, e1, e2, center_x, center_y):
    x, y = check_coordinates(x, y, _PROFILE)
    theta_E = as_param(theta_E, x, "theta_E", _PROFILE)
    e1 = as_param(e1, x, "e1", _PROFILE)
    e2 = as_param(e2, x, "e2", _PROFILE)
    e, q, cos_phi, sin_phi = ellipticity_geometry(e1, e2)
    dx = x - as_param(center_x, x, "center_x", _PROFILE)
    dy = y - as_param(center_y, x, "center_y", _PROFILE)
    xp, yp = to_major_axis_frame(dx, dy, cos_phi, sin_phi)
    b = theta_E * torch.sqrt(q)
    s = core_radius(theta_E) / torch.sqrt(q)  # lenstronomy NIE: s = s_scale / sqrt(q)
    return xp, yp, e, q, cos_phi, sin_phi, b, s


def _atan_over(u2: Tensor, t: Tensor, series: Tensor, hyperbolic: bool) -> Tensor:
    """arctan(u t)/u (arctanh if ``hyperbolic``) for u = sqrt(u2); its series in u2 t^2 where ``series``.

    The series path never takes sqrt(u2), so gradients stay finite at u2 = 0 (q = 1).
    """
    u_safe = torch.sqrt(torch.where(series, torch.ones_like(u2), u2))
    closed = (torch.atanh(u_safe * t) if hyperbolic else torch.atan(u_safe * t)) / u_safe
    w = torch.where(series, u2, torch.zeros_like(u2)) * t * t
    sign = 1.0 if hyperbolic else -1.0
    poly = 1.0 + w * (sign / 3.0 + w * (1.0 / 5.0 + w * (sign / 7.0)))
    return torch.where(series, t * poly, closed)


def deflection(x: Tensor, y: Tensor, theta_E, e1, e2, center_x=0.0, center_y=0.0) -> tuple[Tensor, Tensor]:
    """SIE deflection (alpha_x, alpha_y) in the unit of x, y.

    x, y: tensors of any (matching) shape; theta_E, e1, e2, center_x, center_y: floats or tensors
    broadcasting against x (e.g. shape (B, 1, 1)).  Output has the broadcast shape and x's dtype.
    """
    xp, yp, e, q, cos_phi, sin_phi, b, s = _params(x, y, theta_E, e1, e2, center_x, center_y)
    psi = torch.sqrt(q * q * (s * s + xp * xp) + yp * yp)
    # 1 - q^2 = 4 e / (1 + e)^2 exactly, which avoids cancellation when q -> 1.
    one_minus_q2 = 4.0 * e / (1.0 + e) ** 2
    series = one_minus_q2 < _SERIES_MAX_ONE_MINUS_Q2
    ax = b * _atan_over(one_minus_q2, xp / (psi + s), series, hyperbolic=False)
    ay = b * _atan_over(one_minus_q2, yp / (psi + q * q * s), series, hyperbolic=True)
    return from_major_axis_frame(ax, ay, cos_phi, sin_phi)


def convergence(x: Tensor, y: Tensor, theta_E, e1, e2, center_x=0.0, center_y=0.0) -> Tensor:
    """SIE convergence kappa (dimensionless); same inputs as :func:`deflection`."""
    xp, yp, _, q, _, _, b, s = _params(x, y, theta_E, e1, e2, center_x, center_y)
    return 0.5 * b / torch.sqrt(q * q * (s * s + xp * xp) + yp * yp)
