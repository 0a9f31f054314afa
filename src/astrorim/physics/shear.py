"""External shear, lenstronomy 'SHEAR' convention (torch, batched, differentiable).

Potential psi = gamma1/2 (dx^2 - dy^2) + gamma2 dx dy with dx = x - ra_0, dy = y - dec_0, so
alpha = (gamma1 dx + gamma2 dy, gamma2 dx - gamma1 dy) and kappa = 0.  The amplitude/angle form is
gamma1 = gamma cos(2 gamma_phi), gamma2 = gamma sin(2 gamma_phi) (``astrorim.params.shear_components``).
(ra_0, dec_0) only adds a constant deflection, i.e. an unobservable source-plane shift.
"""

from __future__ import annotations

import torch
from torch import Tensor

from astrorim.physics._common import as_param, check_coordinates

__all__ = ["deflection", "convergence"]

_PROFILE = "shear"


def deflection(x: Tensor, y: Tensor, gamma1, gamma2, ra_0=0.0, dec_0=0.0) -> tuple[Tensor, Tensor]:
    """Shear deflection (alpha_x, alpha_y) in the unit of x, y; parameters broadcast against x."""
    x, y = check_coordinates(x, y, _PROFILE)
    g1 = as_param(gamma1, x, "gamma1", _PROFILE)
    g2 = as_param(gamma2, x, "gamma2", _PROFILE)
    dx = x - as_param(ra_0, x, "ra_0", _PROFILE)
    dy = y - as_param(dec_0, x, "dec_0", _PROFILE)
    return g1 * dx + g2 * dy, g2 * dx - g1 * dy


def convergence(x: Tensor, y: Tensor, gamma1, gamma2, ra_0=0.0, dec_0=0.0) -> Tensor:
    """Shear convergence: identically 0, in the broadcast shape of the inputs (for API symmetry)."""
    x, y = check_coordinates(x, y, _PROFILE)
    terms = [as_param(v, x, n, _PROFILE) for v, n in ((gamma1, "gamma1"), (gamma2, "gamma2"),
                                                      (ra_0, "ra_0"), (dec_0, "dec_0"))]
    shape = torch.broadcast_shapes(x.shape, *(t.shape for t in terms))
    return torch.zeros(shape, dtype=x.dtype, device=x.device)
