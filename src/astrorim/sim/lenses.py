"""Lens mass models (paper §3.2.3, stage 2) on lenstronomy's LensModel.

Main lens: 'SIE' (Kormann et al. 1994, lenstronomy's convention for theta_E) + 'SHEAR' about the
field centre (ra_0 = dec_0 = 0, as the model assumes); optional group halo 'NFW' at the SIE centre,
optional 'SIS' subhalos and, in v4, a second 'SIE'.

Einstein radius: either theta_E ~ U(range) with sigma_v derived, or sigma_v ~ U(range) with
theta_E = 4 pi (sigma_v/c)^2 D_ls/D_s.  Redshifts: z_l ~ U(z_lens), z_s = min(z_l + U(dz), z_max).
The ring is kept inside the field (theta_E <= theta_e_max_half_fov x half field of view): in the
sigma_v mode the redshift pair is redrawn up to 20 times, then theta_E is capped (flagged) and
sigma_v recomputed so that the truth stays self-consistent.

Group halo: M200 [Msun, 200 x critical density at z_l] log-uniform and concentration c uniform,
converted with lenstronomy's ``LensCosmo.nfw_physical2angle(M, c)`` into Rs and alpha_Rs [arcsec],
redrawn until Rs lies in the paper's 10-30" window.

Subhalos: with probability ``subhalo_prob`` a Poisson(``subhalo_mean_count``) number of SIS, capped at
``subhalo_max_count``, each recorded in the truth table (``subhalo_truth_columns``);
``lens_system_from_truth`` rebuilds an example's lens from its truth row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from lenstronomy.LensModel.lens_model import LensModel
from lenstronomy.LensModel.Solver.lens_equation_solver import LensEquationSolver

from ..params import ellipticity_from_q_phi, shear_components
from .cosmology import DistanceTable
from .settings import VersionSettings

_MAX_REDSHIFT_DRAWS = 20
_MAX_NFW_DRAWS = 100


@dataclass(frozen=True)
class NfwHalo:
    m200_msun: float
    concentration: float
    rs_arcsec: float
    alpha_rs_arcsec: float
    center_x: float
    center_y: float


@dataclass(frozen=True)
class LensSystem:
    z_lens: float
    z_source: float
    sigma_v_kms: float
    theta_e_arcsec: float
    q: float
    phi_rad: float
    e1: float
    e2: float
    center_x: float
    center_y: float
    gamma1: float
    gamma2: float
    theta_e_extreme: bool = False
    theta_e_capped: bool = False
    nfw: NfwHalo | None = None
    subhalos: tuple[tuple[float, float, float], ...] = ()  # (theta_E, x, y) [arcsec]
    second: dict | None = None  # SIE kwargs of a second main lens

    @property
    def kwargs_sie(self) -> dict:
        return {"theta_E": self.theta_e_arcsec, "e1": self.e1, "e2": self.e2,
                "center_x": self.center_x, "center_y": self.center_y}

    @property
    def kwargs_shear(self) -> dict:
        return {"gamma1": self.gamma1, "gamma2": self.gamma2, "ra_0": 0.0, "dec_0": 0.0}

    @property
    def kwargs_nfw(self) -> dict | None:
        if self.nfw is None:
            return None
        return {"Rs": self.nfw.rs_arcsec, "alpha_Rs": self.nfw.alpha_rs_arcsec,
                "center_x": self.nfw.center_x, "center_y": self.nfw.center_y}

    def model_list(self) -> list[str]:
        names = ["SIE", "SHEAR"]
        if self.nfw is not None:
            names.append("NFW")
        names += ["SIS"] * len(self.subhalos)
        if self.second is not None:
            names.append("SIE")
        return names

    def kwargs_list(self) -> list[dict]:
        kw = [self.kwargs_sie, self.kwargs_shear]
        if self.nfw is not None:
            kw.append(self.kwargs_nfw)
        kw += [{"theta_E": t, "center_x": x, "center_y": y} for t, x, y in self.subhalos]
        if self.second is not None:
            kw.append(dict(self.second))
        return kw

    def lens_model(self) -> LensModel:
        return LensModel(self.model_list())


def _sample_einstein_radius(rng, s: VersionSettings, dist: DistanceTable, half_fov: float):
    """(z_l, z_s, sigma_v, theta_E, extreme, capped)."""
    theta_max = s.theta_e_max_half_fov * half_fov

    def draw_z():
        z_l = rng.uniform(*s.z_lens)
        return z_l, min(z_l + rng.uniform(*s.z_source_minus_lens), s.z_source_max)

    if s.einstein_radius_mode == "theta_e":
        z_l, z_s = draw_z()
        extreme = rng.uniform() < s.theta_e_extreme_prob
        if extreme:
            lo, hi = s.theta_e_extreme_arcsec
            r_lo, r_hi = s.theta_e_arcsec
            width_lo, width_hi = max(r_lo - lo, 0.0), max(hi - r_hi, 0.0)
            u = rng.uniform(0.0, width_lo + width_hi)
            theta = lo + u if u < width_lo else r_hi + (u - width_lo)
        else:
            theta = rng.uniform(*s.theta_e_arcsec)
        capped = theta > theta_max
        theta = min(theta, theta_max)
        return z_l, z_s, float(dist.sigma_v_kms(theta, z_l, z_s)), theta, extreme, capped
    sigma = rng.uniform(*s.sigma_v_kms)
    for _ in range(_MAX_REDSHIFT_DRAWS):
        z_l, z_s = draw_z()
        theta = float(dist.theta_e_arcsec(sigma, z_l, z_s))
        if theta <= theta_max:
            return z_l, z_s, sigma, theta, False, False
    return z_l, z_s, float(dist.sigma_v_kms(theta_max, z_l, z_s)), theta_max, False, True


def _uniform_annulus(rng, r_lo: float, r_hi: float) -> tuple[float, float]:
    r = np.sqrt(rng.uniform(r_lo**2, r_hi**2))
    t = rng.uniform(0.0, 2.0 * np.pi)
    return r * np.cos(t), r * np.sin(t)


def _sample_nfw(rng, s: VersionSettings, dist: DistanceTable, z_l, z_s, cx, cy) -> NfwHalo:
    """Group halo at the lens centre; (M200, c) redrawn until Rs lies in ``nfw_rs_arcsec``.

    The window is the paper's R_s = 10-30"; every z_l in range has (M200, c) pairs inside it, so the
    redraw ends quickly (the last draw is kept after _MAX_NFW_DRAWS, still a physical halo).
    """
    for _ in range(_MAX_NFW_DRAWS):
        m200 = 10.0 ** rng.uniform(*s.nfw_log10_m200_msun)
        conc = rng.uniform(*s.nfw_concentration)
        rs, alpha_rs = dist.nfw_angles(m200, conc, z_l, z_s)
        if s.nfw_rs_arcsec[0] <= rs <= s.nfw_rs_arcsec[1]:
            break
    return NfwHalo(m200, conc, rs, alpha_rs, cx, cy)


def sample_lens(rng: np.random.Generator, s: VersionSettings, dist: DistanceTable, half_fov: float,
                shift: tuple[float, float] = (0.0, 0.0)) -> LensSystem:
    """Draw one lens system; ``shift`` [arcsec] is the sub-pixel pointing offset added to its centre."""
    z_l, z_s, sigma_v, theta_e, extreme, capped = _sample_einstein_radius(rng, s, dist, half_fov)
    q = 1.0 - rng.uniform(*s.lens_ellipticity)
    phi = rng.uniform(-0.5 * np.pi, 0.5 * np.pi)
    e1, e2 = (float(v) for v in ellipticity_from_q_phi(q, phi))
    c = s.lens_center_half_fov * half_fov
    cx = rng.uniform(-c, c) + shift[0]
    cy = rng.uniform(-c, c) + shift[1]
    g1, g2 = (float(v) for v in shear_components(rng.uniform(0.0, s.shear_max), rng.uniform(-0.5 * np.pi, 0.5 * np.pi)))
    nfw = None
    if rng.uniform() < s.nfw_prob:
        nfw = _sample_nfw(rng, s, dist, z_l, z_s, cx, cy)
    subhalos: tuple = ()
    if rng.uniform() < s.subhalo_prob:
        n_sub = min(int(rng.poisson(s.subhalo_mean_count)), s.subhalo_max_count)  # cap: see settings
        subs = []
        for _ in range(n_sub):
            dx, dy = _uniform_annulus(rng, s.subhalo_annulus_theta_e[0] * theta_e, s.subhalo_annulus_theta_e[1] * theta_e)
            subs.append((rng.uniform(*s.subhalo_theta_e_arcsec), cx + dx, cy + dy))
        subhalos = tuple(subs)
    second = None
    if rng.uniform() < s.second_lens_prob:
        sep = min(rng.uniform(*s.second_lens_separation_theta_e) * theta_e, 0.8 * half_fov)
        ang = rng.uniform(0.0, 2.0 * np.pi)
        q2 = 1.0 - rng.uniform(0.0, 0.4)
        e1b, e2b = (float(v) for v in ellipticity_from_q_phi(q2, rng.uniform(-0.5 * np.pi, 0.5 * np.pi)))
        second = {"theta_E": rng.uniform(*s.second_lens_theta_e_ratio) * theta_e, "e1": e1b, "e2": e2b,
                  "center_x": cx + sep * np.cos(ang), "center_y": cy + sep * np.sin(ang)}
    return LensSystem(z_l, z_s, sigma_v, theta_e, q, phi, e1, e2, cx, cy, g1, g2, extreme, capped,
                      nfw, subhalos, second)


SUBHALO_FIELDS = ("theta_E", "center_x", "center_y")  # SIS keyword arguments [arcsec]


def subhalo_columns(k: int) -> tuple[str, ...]:
    """Truth-table columns of subhalo ``k`` (0-based): subhalo_{k}_theta_E, _center_x, _center_y."""
    return tuple(f"subhalo_{k}_{f}" for f in SUBHALO_FIELDS)


def subhalo_truth_columns(subhalos, max_count: int) -> dict:
    """Truth columns subhalo_{k}_theta_E / _center_x / _center_y [arcsec] for k < ``max_count``, NaN-padded."""
    if len(subhalos) > max_count:
        raise ValueError(f"{len(subhalos)} subhalos exceed the {max_count} truth columns")
    nan = float("nan")
    row = {}
    for k in range(max_count):
        values = subhalos[k] if k < len(subhalos) else (nan,) * len(SUBHALO_FIELDS)
        row.update({c: float(v) for c, v in zip(subhalo_columns(k), values)})
    return row


def lens_system_from_truth(row) -> LensSystem:
    """The :class:`LensSystem` an example was simulated with, rebuilt from its truth row.

    ``row`` is a mapping or a pandas Series (one row of ``read_shard(path).truth``).  Raises ValueError
    for a row written before the per-subhalo / second-lens ellipticity columns existed when it needs them.
    """
    nfw = None
    if bool(row["has_nfw"]):
        nfw = NfwHalo(float(row["nfw_M200"]), float(row["nfw_concentration"]), float(row["nfw_Rs"]),
                      float(row["nfw_alpha_Rs"]), float(row["nfw_center_x"]), float(row["nfw_center_y"]))
    n_sub = int(row["n_subhalos"])
    subhalos = []
    for k in range(n_sub):
        cols = subhalo_columns(k)
        if any(c not in row for c in cols):
            raise ValueError(f"truth row has {n_sub} subhalos but no column {cols[0]} "
                             "(written before per-subhalo columns were recorded)")
        subhalos.append(tuple(float(row[c]) for c in cols))
    second = None
    if bool(row["has_second_lens"]):
        if "second_e1" not in row or "second_e2" not in row:
            raise ValueError("truth row has a second lens but no second_e1/second_e2 "
                             "(written before they were recorded)")
        second = {"theta_E": float(row["second_theta_E"]), "e1": float(row["second_e1"]),
                  "e2": float(row["second_e2"]), "center_x": float(row["second_center_x"]),
                  "center_y": float(row["second_center_y"])}
    return LensSystem(float(row["z_lens"]), float(row["z_source"]), float(row["sigma_v"]), float(row["theta_E"]),
                      float(row["q"]), float(row["phi"]), float(row["e1"]), float(row["e2"]),
                      float(row["center_x"]), float(row["center_y"]), float(row["gamma1"]), float(row["gamma2"]),
                      nfw=nfw, subhalos=tuple(subhalos), second=second)


def lens_model_from_truth(row) -> tuple[list[str], list[dict]]:
    """lenstronomy (model list, kwargs list) of the lens an example was simulated with, from its truth row
    (:func:`lens_system_from_truth`; the order is the simulator's)."""
    system = lens_system_from_truth(row)
    return system.model_list(), system.kwargs_list()


def deflection(lens: LensSystem, model: LensModel, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Deflection (alpha_x, alpha_y) [arcsec] at (x, y) [arcsec], same shape as x."""
    ax, ay = model.alpha(x.ravel(), y.ravel(), lens.kwargs_list())
    return np.reshape(ax, x.shape), np.reshape(ay, x.shape)


def caustic_points(x: np.ndarray, y: np.ndarray, alpha_x: np.ndarray, alpha_y: np.ndarray,
                   lens: LensSystem, spacing_arcsec: float) -> tuple[np.ndarray, np.ndarray]:
    """Source-plane positions of critical-curve crossings found on a meshgrid.

    The critical curve is where det(d beta / d theta) changes sign between neighbouring grid
    points; its image under beta = theta - alpha is the caustic.  Points within 0.3 theta_E of the
    singular SIE centre are dropped (finite differences there are meaningless).
    """
    dax_dy, dax_dx = np.gradient(alpha_x, spacing_arcsec)
    day_dy, day_dx = np.gradient(alpha_y, spacing_arcsec)
    det = (1.0 - dax_dx) * (1.0 - day_dy) - dax_dy * day_dx
    sign = det > 0
    crossing = np.zeros_like(sign)
    crossing[:, :-1] |= sign[:, :-1] != sign[:, 1:]
    crossing[:-1, :] |= sign[:-1, :] != sign[1:, :]
    r = np.hypot(x - lens.center_x, y - lens.center_y)
    crossing &= r > 0.3 * lens.theta_e_arcsec
    bx = (x - alpha_x)[crossing]
    by = (y - alpha_y)[crossing]
    return bx, by


def count_images(lens: LensSystem, model: LensModel, x_source: float, y_source: float, half_fov: float,
                 pixel_scale_arcsec: float) -> int:
    """Number of images of a point source inside the field, from lenstronomy's LensEquationSolver."""
    solver = LensEquationSolver(model)
    xs, ys = solver.image_position_from_source(
        x_source, y_source, lens.kwargs_list(), min_distance=pixel_scale_arcsec,
        search_window=2.0 * half_fov, precision_limit=1e-8, num_iter_max=60)
    return int(len(xs))
