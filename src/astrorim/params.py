"""The model's nine lens parameters and their mapping to lenstronomy keyword arguments.

The model works on a normalised grid: x_norm = x_arcsec / half_fov_arcsec with
half_fov_arcsec = (npix / 2) * pixel_scale_arcsec, so the outer pixel edges sit at +-1
(``torch.nn.functional.grid_sample`` with ``align_corners=False``).  Lengths among the nine
parameters (b, x0, y0, r_s) are in units of the half field of view; q, phi, gamma, gamma_phi
and kappa_s are dimensionless.  Angles are radians, counter-clockwise from the +x axis,
as in lenstronomy.

    b         Einstein radius of the SIE (lenstronomy 'SIE' theta_E) / half_fov
    q         SIE axis ratio (minor/major)
    phi       SIE major-axis position angle [rad]
    x0, y0    SIE centre / half_fov
    gamma     external shear amplitude
    gamma_phi external shear angle [rad]: gamma1 = gamma cos 2 gamma_phi, gamma2 = gamma sin 2 gamma_phi
    kappa_s   NFW characteristic convergence rho_s r_s / Sigma_crit (0 when there is no halo)
    r_s       NFW scale radius (lenstronomy 'NFW' Rs) / half_fov
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

PARAMETER_NAMES: tuple[str, ...] = ("b", "q", "phi", "x0", "y0", "gamma", "gamma_phi", "kappa_s", "r_s")

# alpha_Rs = 4 kappa_s r_s (1 + ln 1/2): the NFW deflection at r = r_s (Wright & Brainerd 2000).
NFW_ALPHA_RS_FACTOR = 4.0 * (1.0 + math.log(0.5))


@dataclass(frozen=True)
class ParameterBound:
    """Closed interval an encoder head maps onto; ``log`` heads interpolate in log space."""

    low: float
    high: float
    log: bool = False


# Bounds wide enough for every simulated configuration (see docs/deviations.md: the published
# b <= 0.30 cannot reach theta_E = 0.9-1.5" at 0.04"/pix, where b = 0.47-0.78).
ENCODER_BOUNDS: dict[str, ParameterBound] = {
    "b": ParameterBound(0.01, 2.0, log=True),
    "q": ParameterBound(0.2, 1.0),
    "phi": ParameterBound(-math.pi, math.pi),
    "x0": ParameterBound(-0.25, 0.25),
    "y0": ParameterBound(-0.25, 0.25),
    "gamma": ParameterBound(0.0, 0.2),
    "gamma_phi": ParameterBound(-math.pi, math.pi),
    "kappa_s": ParameterBound(0.0, 1.0),
    "r_s": ParameterBound(0.05, 20.0, log=True),
}


def half_fov_arcsec(npix: int, pixel_scale_arcsec: float | np.ndarray) -> float | np.ndarray:
    """Half the field of view [arcsec] of an ``npix``-wide square image."""
    return 0.5 * npix * np.asarray(pixel_scale_arcsec, dtype=float)


def theta_e_arcsec_from_b(b, npix: int, pixel_scale_arcsec):
    """Einstein radius [arcsec] from the normalised deflection strength b."""
    return np.asarray(b, dtype=float) * half_fov_arcsec(npix, pixel_scale_arcsec)


def b_from_theta_e_arcsec(theta_e_arcsec, npix: int, pixel_scale_arcsec):
    """Normalised deflection strength b from an Einstein radius [arcsec]."""
    return np.asarray(theta_e_arcsec, dtype=float) / half_fov_arcsec(npix, pixel_scale_arcsec)


def ellipticity_from_q_phi(q, phi):
    """lenstronomy (e1, e2) from axis ratio q and position angle phi [rad]."""
    q = np.asarray(q, dtype=float)
    phi = np.asarray(phi, dtype=float)
    e = (1.0 - q) / (1.0 + q)
    return e * np.cos(2.0 * phi), e * np.sin(2.0 * phi)


def q_phi_from_ellipticity(e1, e2):
    """Axis ratio q and position angle phi [rad, in (-pi/2, pi/2]] from lenstronomy (e1, e2)."""
    e1 = np.asarray(e1, dtype=float)
    e2 = np.asarray(e2, dtype=float)
    e = np.hypot(e1, e2)
    return (1.0 - e) / (1.0 + e), 0.5 * np.arctan2(e2, e1)


def shear_components(gamma, gamma_phi):
    """lenstronomy (gamma1, gamma2) from amplitude and angle [rad]."""
    gamma = np.asarray(gamma, dtype=float)
    gamma_phi = np.asarray(gamma_phi, dtype=float)
    return gamma * np.cos(2.0 * gamma_phi), gamma * np.sin(2.0 * gamma_phi)


def shear_polar(gamma1, gamma2):
    """Amplitude and angle [rad, in (-pi/2, pi/2]] from lenstronomy (gamma1, gamma2)."""
    gamma1 = np.asarray(gamma1, dtype=float)
    gamma2 = np.asarray(gamma2, dtype=float)
    return np.hypot(gamma1, gamma2), 0.5 * np.arctan2(gamma2, gamma1)


def nfw_alpha_rs(kappa_s, r_s):
    """lenstronomy 'NFW' alpha_Rs (deflection at Rs, same length unit as r_s)."""
    return NFW_ALPHA_RS_FACTOR * np.asarray(kappa_s, dtype=float) * np.asarray(r_s, dtype=float)


def nfw_kappa_s(alpha_rs, r_s):
    """Dimensionless kappa_s from lenstronomy 'NFW' (alpha_Rs, Rs) in the same length unit."""
    return np.asarray(alpha_rs, dtype=float) / (NFW_ALPHA_RS_FACTOR * np.asarray(r_s, dtype=float))


def lenstronomy_kwargs_to_normalised(
    kwargs_sie: dict,
    kwargs_shear: dict,
    kwargs_nfw: dict | None,
    npix: int,
    pixel_scale_arcsec: float,
) -> dict[str, float]:
    """The nine normalised parameters from lenstronomy kwargs in arcsec.

    ``kwargs_sie``: theta_E, e1, e2, center_x, center_y; ``kwargs_shear``: gamma1, gamma2;
    ``kwargs_nfw``: Rs, alpha_Rs (centre ignored) or None for no halo (kappa_s = 0, r_s = nan).
    """
    half = float(half_fov_arcsec(npix, pixel_scale_arcsec))
    q, phi = q_phi_from_ellipticity(kwargs_sie["e1"], kwargs_sie["e2"])
    gamma, gamma_phi = shear_polar(kwargs_shear["gamma1"], kwargs_shear["gamma2"])
    if kwargs_nfw is None:
        kappa_s, r_s = 0.0, float("nan")
    else:
        kappa_s = float(nfw_kappa_s(kwargs_nfw["alpha_Rs"], kwargs_nfw["Rs"]))
        r_s = kwargs_nfw["Rs"] / half
    return {
        "b": kwargs_sie["theta_E"] / half,
        "q": float(q),
        "phi": float(phi),
        "x0": kwargs_sie.get("center_x", 0.0) / half,
        "y0": kwargs_sie.get("center_y", 0.0) / half,
        "gamma": float(gamma),
        "gamma_phi": float(gamma_phi),
        "kappa_s": kappa_s,
        "r_s": float(r_s),
    }


def normalised_to_lenstronomy_kwargs(
    params: dict[str, float], npix: int, pixel_scale_arcsec: float
) -> tuple[dict, dict, dict | None]:
    """Inverse of :func:`lenstronomy_kwargs_to_normalised`: (SIE, SHEAR, NFW-or-None) kwargs in arcsec.

    The NFW halo is placed at the SIE centre, as the model assumes.
    """
    half = float(half_fov_arcsec(npix, pixel_scale_arcsec))
    e1, e2 = ellipticity_from_q_phi(params["q"], params["phi"])
    g1, g2 = shear_components(params["gamma"], params["gamma_phi"])
    center_x, center_y = params["x0"] * half, params["y0"] * half
    kwargs_sie = {"theta_E": params["b"] * half, "e1": float(e1), "e2": float(e2),
                  "center_x": center_x, "center_y": center_y}
    kwargs_shear = {"gamma1": float(g1), "gamma2": float(g2), "ra_0": 0.0, "dec_0": 0.0}
    kwargs_nfw = None
    if params["kappa_s"] > 0 and np.isfinite(params["r_s"]):
        rs_arcsec = params["r_s"] * half
        kwargs_nfw = {"Rs": rs_arcsec, "alpha_Rs": float(nfw_alpha_rs(params["kappa_s"], rs_arcsec)),
                      "center_x": center_x, "center_y": center_y}
    return kwargs_sie, kwargs_shear, kwargs_nfw
