"""Physical conversions between lensing angles and masses / velocity dispersions.

All functions take redshifts and angles as python scalars or numpy arrays (broadcast against each
other) and return a python ``float`` when every input is scalar, else a numpy ``ndarray``.
Distances are angular-diameter distances from an astropy cosmology; ``cosmology=None`` means
:func:`default_cosmology`, the flat LambdaCDM (H0 = 70 km/s/Mpc, Om0 = 0.3, no radiation) that
Table 1 of the paper states.

Units:
    critical_surface_density          Msun / arcsec^2  (mass per unit solid angle seen at the lens)
    einstein_mass                     Msun
    sis_velocity_dispersion           km / s
    theta_e_from_velocity_dispersion  arcsec
"""

from __future__ import annotations

import numpy as np
from astropy import constants as const
from astropy import units as u
from astropy.cosmology import FlatLambdaCDM

__all__ = [
    "default_cosmology",
    "critical_surface_density",
    "einstein_mass",
    "sis_velocity_dispersion",
    "theta_e_from_velocity_dispersion",
]

_RAD_PER_ARCSEC = (1.0 * u.arcsec).to_value(u.rad)


def default_cosmology() -> FlatLambdaCDM:
    """Flat LambdaCDM with H0 = 70 km/s/Mpc and Om0 = 0.3 (Tcmb0 = 0), as in the paper's Table 1."""
    return FlatLambdaCDM(H0=70.0, Om0=0.3)


def _scalar_or_array(value: np.ndarray, *inputs) -> float | np.ndarray:
    if all(np.ndim(v) == 0 for v in inputs):
        return float(value)
    return np.asarray(value, dtype=float)


def _as_float_array(value, name: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a number or an array of numbers, got {value!r}") from exc
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return arr


def _distances_mpc(z_lens, z_source, cosmology):
    """(D_l, D_s, D_ls) in Mpc, after checking 0 < z_lens < z_source elementwise."""
    zl = _as_float_array(z_lens, "z_lens")
    zs = _as_float_array(z_source, "z_source")
    if np.any(zl <= 0):
        raise ValueError(f"z_lens must be > 0 (D_l = 0 makes the conversion singular), got {z_lens!r}")
    if np.any(zs <= zl):
        raise ValueError(f"z_source must be > z_lens, got z_lens={z_lens!r}, z_source={z_source!r}")
    cosmo = default_cosmology() if cosmology is None else cosmology
    if not hasattr(cosmo, "angular_diameter_distance"):
        raise ValueError(f"cosmology must be an astropy cosmology, got {type(cosmo).__name__}")
    zl, zs = np.broadcast_arrays(zl, zs)
    d_l = cosmo.angular_diameter_distance(zl).to_value(u.Mpc)
    d_s = cosmo.angular_diameter_distance(zs).to_value(u.Mpc)
    d_ls = cosmo.angular_diameter_distance(zl, zs).to_value(u.Mpc)
    return d_l, d_s, d_ls


def _critical_density_msun_per_mpc2(d_l, d_s, d_ls) -> np.ndarray:
    factor = (const.c**2 / (4.0 * np.pi * const.G)).to_value(u.Msun / u.Mpc)
    return factor * d_s / (d_l * d_ls)


def critical_surface_density(z_lens, z_source, cosmology=None) -> float | np.ndarray:
    """Critical surface density per unit solid angle [Msun / arcsec^2].

    Sigma_crit = c^2 D_s / (4 pi G D_l D_ls) is a mass per physical area [Msun / Mpc^2]; one arcsec^2
    seen at the lens covers (D_l * 1 arcsec)^2 of physical area, so the value returned is
    Sigma_crit * (D_l [Mpc] * 1 arcsec [rad])^2 (lenstronomy's ``LensCosmo.sigma_crit_angle``).
    Multiplying it by kappa integrated over arcsec^2 gives a mass in Msun.
    """
    d_l, d_s, d_ls = _distances_mpc(z_lens, z_source, cosmology)
    sigma = _critical_density_msun_per_mpc2(d_l, d_s, d_ls) * (d_l * _RAD_PER_ARCSEC) ** 2
    return _scalar_or_array(sigma, z_lens, z_source)


def einstein_mass(theta_e_arcsec, z_lens, z_source, cosmology=None) -> float | np.ndarray:
    """Projected mass inside the Einstein radius [Msun]: M_E = pi Sigma_crit (D_l theta_E)^2.

    Equivalent to ``critical_surface_density [Msun/arcsec^2] * pi * theta_E[arcsec]^2``: the mean
    convergence inside theta_E is 1 for any circularly symmetric lens.
    """
    theta = _as_float_array(theta_e_arcsec, "theta_e_arcsec")
    if np.any(theta < 0):
        raise ValueError(f"theta_e_arcsec must be >= 0, got {theta_e_arcsec!r}")
    sigma_angle = np.asarray(critical_surface_density(z_lens, z_source, cosmology))
    mass = np.pi * sigma_angle * theta**2
    return _scalar_or_array(mass, theta_e_arcsec, z_lens, z_source)


def sis_velocity_dispersion(theta_e_arcsec, z_lens, z_source, cosmology=None) -> float | np.ndarray:
    """SIS-equivalent line-of-sight velocity dispersion [km/s].

    Inverts theta_E = 4 pi (sigma / c)^2 D_ls / D_s: sigma = c sqrt(theta_E[rad] D_s / (4 pi D_ls)).
    """
    theta = _as_float_array(theta_e_arcsec, "theta_e_arcsec")
    if np.any(theta < 0):
        raise ValueError(f"theta_e_arcsec must be >= 0, got {theta_e_arcsec!r}")
    _, d_s, d_ls = _distances_mpc(z_lens, z_source, cosmology)
    c_kms = const.c.to_value(u.km / u.s)
    sigma = c_kms * np.sqrt(theta * _RAD_PER_ARCSEC * d_s / (4.0 * np.pi * d_ls))
    return _scalar_or_array(sigma, theta_e_arcsec, z_lens, z_source)


def theta_e_from_velocity_dispersion(sigma_v_kms, z_lens, z_source, cosmology=None) -> float | np.ndarray:
    """SIS Einstein radius [arcsec] of a velocity dispersion [km/s]: theta_E = 4 pi (sigma/c)^2 D_ls/D_s."""
    sigma = _as_float_array(sigma_v_kms, "sigma_v_kms")
    if np.any(sigma < 0):
        raise ValueError(f"sigma_v_kms must be >= 0, got {sigma_v_kms!r}")
    _, d_s, d_ls = _distances_mpc(z_lens, z_source, cosmology)
    c_kms = const.c.to_value(u.km / u.s)
    theta_rad = 4.0 * np.pi * (sigma / c_kms) ** 2 * d_ls / d_s
    return _scalar_or_array(theta_rad / _RAD_PER_ARCSEC, sigma_v_kms, z_lens, z_source)
