"""The fit's non-linear parameters: their order, box bounds, and conversions to the paper's nine.

Lens (normalised units of :mod:`astrorim.params`): log b (b = SIE theta_E / half field), SIE e1, e2
(lenstronomy), centre x0, y0, external shear gamma1, gamma2 (about the origin).  Lens light: its
own ellipticity light_e1, light_e2 and log half-light radius light_log_re (centre tied to the
lens centre).  Group halo: kappa_s of a spherical NFW at the lens centre (lenstronomy 'NFW', the
:mod:`astrorim.params` convention) with its scale radius fixed (``FitConfig.halo_r_s``): inside the
field r << r_s and the profile's shape depends on r_s only logarithmically.  kappa_s is fixed at 0
in the starts without a halo (the fit's second start family frees it, docs/fit.md).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from astrorim.params import q_phi_from_ellipticity, shear_polar

LENS_NAMES = ("log_b", "e1", "e2", "x0", "y0", "gamma1", "gamma2")
LIGHT_NAMES = ("light_e1", "light_e2", "light_log_re")
HALO_NAMES = ("kappa_s",)
NAMES = LENS_NAMES + LIGHT_NAMES + HALO_NAMES
INDEX = {n: i for i, n in enumerate(NAMES)}

# Box bounds (normalised units).  Ellipticities and shears are bounded in modulus.
LOG_B_BOUNDS = (math.log(0.03), math.log(1.8))
CENTRE_BOUND = 0.3
MAX_E = 0.6            # q >= 0.25
MAX_GAMMA = 0.25
MAX_LIGHT_E = 0.7
LOG_RE_BOUNDS = (math.log(0.03), math.log(3.0))
KAPPA_S_BOUNDS = (0.0, 0.5)   # 0: no halo (not flagged as a bound)


def project(theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """theta (B, P) moved into the bounds; returns (projected, at-a-lens-bound mask (B,))."""
    t = theta.clone()
    at = torch.zeros(t.shape[0], dtype=torch.bool, device=t.device)
    i = INDEX["log_b"]
    t[:, i] = t[:, i].clamp(*LOG_B_BOUNDS)
    at |= (t[:, i] <= LOG_B_BOUNDS[0] + 1e-6) | (t[:, i] >= LOG_B_BOUNDS[1] - 1e-6)
    for name in ("x0", "y0"):
        k = INDEX[name]
        t[:, k] = t[:, k].clamp(-CENTRE_BOUND, CENTRE_BOUND)
        at |= t[:, k].abs() >= CENTRE_BOUND - 1e-6
    for a, b, limit, lens in (("e1", "e2", MAX_E, True), ("gamma1", "gamma2", MAX_GAMMA, True),
                              ("light_e1", "light_e2", MAX_LIGHT_E, False)):
        ia, ib = INDEX[a], INDEX[b]
        mod = torch.sqrt(t[:, ia] ** 2 + t[:, ib] ** 2)
        factor = torch.where(mod > limit, limit / mod.clamp_min(1e-30), torch.ones_like(mod))
        t[:, ia] = t[:, ia] * factor
        t[:, ib] = t[:, ib] * factor
        if lens:
            at |= mod >= limit * (1 - 1e-6)
    k = INDEX["light_log_re"]
    t[:, k] = t[:, k].clamp(*LOG_RE_BOUNDS)
    k = INDEX["kappa_s"]
    t[:, k] = t[:, k].clamp(*KAPPA_S_BOUNDS)
    at |= t[:, k] >= KAPPA_S_BOUNDS[1] - 1e-6
    return t, at


def nine_parameters(theta: np.ndarray, halo_r_s: float = float("nan")) -> dict[str, np.ndarray]:
    """The paper's nine normalised parameters from fitted rows theta (n, P); r_s = ``halo_r_s`` where
    the fit has a halo (kappa_s > 0), NaN where not."""
    theta = np.asarray(theta, dtype=float)
    kappa_s = theta[:, INDEX["kappa_s"]]
    q, phi = q_phi_from_ellipticity(theta[:, INDEX["e1"]], theta[:, INDEX["e2"]])
    gamma, gamma_phi = shear_polar(theta[:, INDEX["gamma1"]], theta[:, INDEX["gamma2"]])
    return {"b": np.exp(theta[:, INDEX["log_b"]]), "q": q, "phi": phi,
            "x0": theta[:, INDEX["x0"]], "y0": theta[:, INDEX["y0"]], "gamma": gamma,
            "gamma_phi": gamma_phi, "kappa_s": kappa_s,
            "r_s": np.where(kappa_s > 0, halo_r_s, np.nan)}
