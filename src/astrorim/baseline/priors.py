"""Priors of paper 003 (eqs. 14-16 source, 18-23 lens) with physically valid supports.

The paper writes every prior as an untruncated normal N(mean, sd).  Where that allows values that
make no sense we truncate the normal to the interval below (the shape inside is the paper's):

=========  =======================  ============  ====================  =====================================
name       quantity                 paper prior   support used          why
=========  =======================  ============  ====================  =====================================
gamma1/2   external shear comps     N(0, 1)       [-0.5, 0.5]           |gamma| >~ 1 folds the whole plane
phi        major-axis angle [rad]   N(0, 1)       [-pi/2, pi/2]         phi is defined modulo pi
q          axis ratio               N(0.5, 0.5)   [0.2, 1]              q <= 0 meaningless; q > 1 is the
                                                                        same lens as 1/q at phi + pi/2;
                                                                        EPL series cost grows as q -> 0
r_ein      Einstein radius [arcsec] N(1.5, 0.5)   [0.1, 5]              r <= 0 meaningless; <= half field
slope      power-law slope gamma    N(2, 0.5)     [1.2, 2.8]            1 < gamma < 3 for a finite EPL
x/y_lens   lens centre [arcsec]     N(0, 0.5)     real                  -
x/y_src    source centre [arcsec]   N(0, 0.1)     real                  -
scale      source scale s           N(5, 1)       [1, 10]               s <= 0 meaningless
iota       source intensity         N(1, 0.5)     [0, 10]               negative flux meaningless
=========  =======================  ============  ====================  =====================================

``slope`` is the paper's gamma (eq. 11) and lenstronomy's EPL ``gamma``; ``r_ein`` is lenstronomy's EPL
``theta_E`` (intermediate-axis normalisation: kappa = (3 - gamma)/2 (theta_E / sqrt(q x^2 + y^2/q))^(gamma-1)).
Read literally, eq. 11 normalises on the major axis, r_Ein(eq. 11) = theta_E / sqrt(q); we keep
lenstronomy's convention so that the project's physics and its tests apply unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pyro.distributions as dist
import torch

from astrorim.baseline.distributions import TruncatedNormal


@dataclass(frozen=True)
class PriorSpec:
    loc: float
    scale: float
    low: float | None
    high: float | None
    unit: str
    paper_eq: str

    def distribution(self, dtype=torch.float32):
        loc = torch.tensor(self.loc, dtype=dtype)
        scale = torch.tensor(self.scale, dtype=dtype)
        if self.low is None:
            return dist.Normal(loc, scale)
        return TruncatedNormal(loc, scale, torch.tensor(self.low, dtype=dtype), torch.tensor(self.high, dtype=dtype))

    def clip(self, value: float, margin: float = 1e-3) -> float:
        """``value`` moved inside the open support by a relative ``margin`` of its width."""
        if self.low is None:
            return float(value)
        eps = margin * (self.high - self.low)
        return float(min(max(value, self.low + eps), self.high - eps))


LENS_PRIORS: dict[str, PriorSpec] = {
    "gamma1": PriorSpec(0.0, 1.0, -0.5, 0.5, "", "18"),
    "gamma2": PriorSpec(0.0, 1.0, -0.5, 0.5, "", "18"),
    "phi": PriorSpec(0.0, 1.0, -math.pi / 2, math.pi / 2, "rad", "19"),
    "q": PriorSpec(0.5, 0.5, 0.2, 1.0, "", "20"),
    "r_ein": PriorSpec(1.5, 0.5, 0.1, 5.0, "arcsec", "21"),
    "slope": PriorSpec(2.0, 0.5, 1.2, 2.8, "", "22"),
    "x_lens": PriorSpec(0.0, 0.5, None, None, "arcsec", "23"),
    "y_lens": PriorSpec(0.0, 0.5, None, None, "arcsec", "23"),
}

SOURCE_PRIORS: dict[str, PriorSpec] = {
    "x_src": PriorSpec(0.0, 0.1, None, None, "arcsec", "14"),
    "y_src": PriorSpec(0.0, 0.1, None, None, "arcsec", "14"),
    "scale": PriorSpec(5.0, 1.0, 1.0, 10.0, "", "15"),
    "iota": PriorSpec(1.0, 0.5, 0.0, 10.0, "", "16"),
}

PRIORS: dict[str, PriorSpec] = {**LENS_PRIORS, **SOURCE_PRIORS}
LENS_PARAMS: tuple[str, ...] = tuple(LENS_PRIORS)
SOURCE_PARAMS: tuple[str, ...] = tuple(SOURCE_PRIORS)
SCALAR_PARAMS: tuple[str, ...] = LENS_PARAMS + SOURCE_PARAMS
LATENT_SITE = "z_white"  # whitened VAE latent: z = mean + L z_white, z_white ~ N(0, I)
