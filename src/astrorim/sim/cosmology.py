"""Cosmological distances for the simulators, tabulated once per ``simulate`` call.

Both cosmologies used are flat (Planck15 in v1-v5, FlatLambdaCDM(H0=70, Om0=0.3) in v6), so every
angular-diameter distance follows from the comoving distance D_C(z):
D_A(z) = D_C(z)/(1+z) and D_A(z1, z2) = (D_C(z2) - D_C(z1))/(1+z2).  Calling astropy per example
costs milliseconds; a cubic spline of D_C on 0 <= z <= 6 is accurate to ~1e-9 relative.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy import constants as const
from astropy import units as u
from astropy.cosmology import FLRW, FlatLambdaCDM, Planck15
from lenstronomy.Cosmo.lens_cosmo import LensCosmo
from scipy.interpolate import CubicSpline

C_KMS = const.c.to_value(u.km / u.s)
ARCSEC_PER_RAD = (1.0 * u.rad).to_value(u.arcsec)
Z_TABLE_MAX = 6.0


def astropy_cosmology(name: str) -> FLRW:
    """The astropy cosmology object of a settings name."""
    if name == "Planck15":
        return Planck15
    if name == "FlatLambdaCDM_H70_Om0.3":
        return FlatLambdaCDM(H0=70.0, Om0=0.3)
    raise ValueError(f"unknown cosmology {name!r}; expected 'Planck15' or 'FlatLambdaCDM_H70_Om0.3'")


@dataclass(frozen=True)
class DistanceTable:
    name: str
    cosmology: FLRW
    _spline: CubicSpline

    def comoving_mpc(self, z) -> np.ndarray:
        z = np.asarray(z, dtype=float)
        if np.any(z < 0) or np.any(z > Z_TABLE_MAX):
            raise ValueError(f"redshift outside the tabulated range [0, {Z_TABLE_MAX}]: {z}")
        return self._spline(z)

    def dls_over_ds(self, z_lens, z_source) -> np.ndarray:
        """D_ls / D_s for a flat universe (H0 drops out)."""
        d_l = self.comoving_mpc(z_lens)
        d_s = self.comoving_mpc(z_source)
        return (d_s - d_l) / d_s

    def theta_e_arcsec(self, sigma_v_kms, z_lens, z_source) -> np.ndarray:
        """SIS Einstein radius theta_E = 4 pi (sigma_v / c)^2 D_ls / D_s [arcsec]."""
        ratio = self.dls_over_ds(z_lens, z_source)
        return 4.0 * np.pi * (np.asarray(sigma_v_kms) / C_KMS) ** 2 * ratio * ARCSEC_PER_RAD

    def sigma_v_kms(self, theta_e_arcsec, z_lens, z_source) -> np.ndarray:
        """Inverse of :meth:`theta_e_arcsec`."""
        ratio = self.dls_over_ds(z_lens, z_source)
        return C_KMS * np.sqrt(np.asarray(theta_e_arcsec) / ARCSEC_PER_RAD / (4.0 * np.pi * ratio))

    def nfw_angles(self, m200_msun: float, concentration: float, z_lens: float, z_source: float):
        """(Rs [arcsec], alpha_Rs [arcsec]) of an NFW halo of mass M200 (200 rho_crit(z_lens)).

        Delegates to lenstronomy's ``LensCosmo.nfw_physical2angle`` (physical units, no little h).
        """
        lens_cosmo = LensCosmo(z_lens=float(z_lens), z_source=float(z_source), cosmo=self.cosmology)
        rs_arcsec, alpha_rs_arcsec = lens_cosmo.nfw_physical2angle(float(m200_msun), float(concentration))
        return float(rs_arcsec), float(alpha_rs_arcsec)


def distance_table(name: str, n_nodes: int = 601) -> DistanceTable:
    cosmo = astropy_cosmology(name)
    z = np.linspace(0.0, Z_TABLE_MAX, n_nodes)
    d_c = cosmo.comoving_distance(z).to_value(u.Mpc)
    return DistanceTable(name, cosmo, CubicSpline(z, d_c))
