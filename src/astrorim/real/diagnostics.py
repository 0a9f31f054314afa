"""Physical diagnostics of a lens model given by the model's nine normalised parameters.

Inputs are the nine parameters (``astrorim.params``: lengths in units of the half field of view),
the model grid (``npix`` pixels of ``pixel_scale_arcsec``) and the redshifts.  Everything is
evaluated with the project's own profiles (:mod:`astrorim.physics`: SIE, SHEAR, NFW in
lenstronomy's conventions) and conversions (:mod:`astrorim.physics.conversions`, flat LambdaCDM
H0 = 70, Om0 = 0.3 unless a cosmology is given).

Conventions: coordinates in arcsec on the model grid, x along columns, y along rows, origin at the
grid centre (a pixel corner for even npix); pixel centres at (k + 1/2 - npix/2) x pixel_scale.

Quantities:
    theta_E [arcsec]              b x half field of view (the SIE parameter; the paper's definition)
    Sigma_crit                    Msun/arcsec^2 and kg/m^2
    sigma_SIS [km/s]              SIS-equivalent velocity dispersion of theta_E
    M_E [Msun]                    pi Sigma_crit theta_E^2 (Einstein mass, as Table 1 of the paper)
    M(<r) [Msun]                  projected mass of the full model (SIE + NFW) inside a circle about
                                  the lens centre, by Gauss's theorem on the deflection field:
                                  int_disc kappa dA = (1/2) oint alpha . n dl (exact up to the
                                  angular quadrature; the shear has zero divergence)
    theta_E,eff [arcsec]          radius where the mean convergence inside equals 1
    kappa map, kappa(r)           convergence on the grid and its azimuthal average
    chi2/dof, RMS residual, S/N   forward consistency against the noise map (see
                                  :func:`forward_consistency`)
"""

from __future__ import annotations

import numpy as np
from astropy import units as u
from scipy import optimize

from astrorim import physics
from astrorim.params import PARAMETER_NAMES, half_fov_arcsec, normalised_to_lenstronomy_kwargs
from astrorim.physics import conversions

# chi2/dof above this flags a lens as not forward-consistent (the model image cannot reproduce the data).
CHI2_DOF_FLAG_THRESHOLD = 3.0
_ARCSEC_RAD = (1.0 * u.arcsec).to_value(u.rad)


def _check_params(params: dict) -> dict[str, float]:
    missing = [k for k in PARAMETER_NAMES if k not in params]
    if missing:
        raise ValueError(f"lens parameters are missing {missing}; expected the nine {list(PARAMETER_NAMES)}")
    out = {k: float(params[k]) for k in PARAMETER_NAMES}
    for k in ("b", "q", "x0", "y0", "gamma", "phi", "gamma_phi", "kappa_s"):
        if not np.isfinite(out[k]):
            raise ValueError(f"lens parameter {k}={params[k]!r} is not finite")
    if out["b"] <= 0 or not 0 < out["q"] <= 1:
        raise ValueError(f"lens parameters need b > 0 and 0 < q <= 1, got b={out['b']}, q={out['q']}")
    return out


def profile_kwargs(params: dict, npix: int, pixel_scale_arcsec: float) -> list[tuple[str, dict]]:
    """(profile name, lenstronomy kwargs in arcsec) for each component of the model (SIE, SHEAR[, NFW])."""
    p = _check_params(params)
    sie, shear, nfw = normalised_to_lenstronomy_kwargs(p, npix, pixel_scale_arcsec)
    parts = [("sie", sie), ("shear", shear)]
    if nfw is not None:
        parts.append(("nfw", nfw))
    return parts


def grid_arcsec(npix: int, pixel_scale_arcsec: float, oversample: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (x, y) [arcsec], shape (npix*oversample,)*2, x along columns."""
    n = npix * oversample
    step = pixel_scale_arcsec / oversample
    c = (np.arange(n) + 0.5 - 0.5 * n) * step
    return np.meshgrid(c, c)


def convergence_map(params: dict, npix: int, pixel_scale_arcsec: float, x=None, y=None) -> np.ndarray:
    """kappa of the full model (SIE + shear + NFW) at (x, y) [arcsec], default the model grid."""
    if x is None or y is None:
        x, y = grid_arcsec(npix, pixel_scale_arcsec)
    kappa = np.zeros(np.broadcast(np.asarray(x), np.asarray(y)).shape)
    for name, kw in profile_kwargs(params, npix, pixel_scale_arcsec):
        kappa = kappa + physics.convergence(name, x, y, **kw)
    return kappa


def deflection_field(params: dict, npix: int, pixel_scale_arcsec: float, x, y) -> tuple[np.ndarray, np.ndarray]:
    """Total deflection (alpha_x, alpha_y) [arcsec] of the model at (x, y) [arcsec]."""
    ax = np.zeros(np.broadcast(np.asarray(x), np.asarray(y)).shape)
    ay = np.zeros_like(ax)
    for name, kw in profile_kwargs(params, npix, pixel_scale_arcsec):
        dx, dy = physics.deflection(name, x, y, **kw)
        ax, ay = ax + dx, ay + dy
    return ax, ay


def magnification_determinant(params: dict, npix: int, pixel_scale_arcsec: float, x, y,
                              step_arcsec: float = 1e-4) -> np.ndarray:
    """det(d beta / d theta) from central differences of the deflection; its zero contour is the critical curve."""
    h = step_arcsec
    axp, ayp = deflection_field(params, npix, pixel_scale_arcsec, x + h, y)
    axm, aym = deflection_field(params, npix, pixel_scale_arcsec, x - h, y)
    bxp, byp = deflection_field(params, npix, pixel_scale_arcsec, x, y + h)
    bxm, bym = deflection_field(params, npix, pixel_scale_arcsec, x, y - h)
    a_xx, a_yx = (axp - axm) / (2 * h), (ayp - aym) / (2 * h)
    a_xy, a_yy = (bxp - bxm) / (2 * h), (byp - bym) / (2 * h)
    return (1 - a_xx) * (1 - a_yy) - a_xy * a_yx


def lens_centre_arcsec(params: dict, npix: int, pixel_scale_arcsec: float) -> tuple[float, float]:
    """SIE centre (x0, y0) [arcsec]."""
    half = float(half_fov_arcsec(npix, pixel_scale_arcsec))
    return float(params["x0"]) * half, float(params["y0"]) * half


def radial_profile(kappa: np.ndarray, x: np.ndarray, y: np.ndarray, centre: tuple[float, float],
                   r_edges_arcsec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Azimuthal average of ``kappa`` in annuli ``r_edges_arcsec`` about ``centre``: (r_mid, mean kappa).

    Annuli without a pixel centre give NaN.
    """
    r = np.hypot(x - centre[0], y - centre[1]).ravel()
    k = np.asarray(kappa).ravel()
    idx = np.digitize(r, r_edges_arcsec) - 1
    n_bins = len(r_edges_arcsec) - 1
    ok = (idx >= 0) & (idx < n_bins)
    sums = np.bincount(idx[ok], weights=k[ok], minlength=n_bins)
    counts = np.bincount(idx[ok], minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return 0.5 * (r_edges_arcsec[1:] + r_edges_arcsec[:-1]), mean


def mean_convergence_inside(params: dict, npix: int, pixel_scale_arcsec: float, r_arcsec,
                            centre: tuple[float, float] | None = None, n_phi: int = 720) -> np.ndarray:
    """Mean kappa inside circles of radius ``r_arcsec`` about ``centre`` (default the lens centre).

    From Gauss's theorem: int_disc kappa dA = (1/2) oint alpha . n dl = (r/2) int alpha_r dphi, so
    mean kappa = (1 / (2 pi r)) int_0^{2pi} alpha_r(r, phi) dphi; the midpoint rule in phi is
    spectrally accurate for this smooth periodic integrand.
    """
    if centre is None:
        centre = lens_centre_arcsec(params, npix, pixel_scale_arcsec)
    r = np.atleast_1d(np.asarray(r_arcsec, dtype=float))
    if np.any(r <= 0):
        raise ValueError("radii must be positive")
    phi = (np.arange(n_phi) + 0.5) * (2 * np.pi / n_phi)
    cos_p, sin_p = np.cos(phi), np.sin(phi)
    xx = centre[0] + r[:, None] * cos_p[None, :]
    yy = centre[1] + r[:, None] * sin_p[None, :]
    ax, ay = deflection_field(params, npix, pixel_scale_arcsec, xx, yy)
    alpha_r = ax * cos_p[None, :] + ay * sin_p[None, :]
    return alpha_r.mean(axis=1) / r


def enclosed_mass_msun(params: dict, npix: int, pixel_scale_arcsec: float, r_arcsec, z_lens: float,
                       z_source: float, cosmology=None, centre: tuple[float, float] | None = None) -> np.ndarray:
    """Projected mass M(<r) [Msun] of the full model inside radius ``r_arcsec`` about the lens centre."""
    r = np.atleast_1d(np.asarray(r_arcsec, dtype=float))
    sigma = conversions.critical_surface_density(z_lens, z_source, cosmology)
    return np.pi * r ** 2 * sigma * mean_convergence_inside(params, npix, pixel_scale_arcsec, r, centre)


def enclosed_mass_pixel_sum_msun(kappa: np.ndarray, x: np.ndarray, y: np.ndarray, pixel_area_arcsec2: float,
                                 r_arcsec: float, sigma_crit_msun_per_arcsec2: float,
                                 centre: tuple[float, float]) -> float:
    """M(<r) by summing a convergence map over pixel centres inside r (the published code's method; a cross-check)."""
    inside = np.hypot(x - centre[0], y - centre[1]) < r_arcsec
    return float(np.sum(kappa[inside]) * pixel_area_arcsec2 * sigma_crit_msun_per_arcsec2)


def effective_einstein_radius(params: dict, npix: int, pixel_scale_arcsec: float) -> float:
    """Radius [arcsec] where the mean convergence inside equals 1 (NaN if not bracketed in 0.01-3 x b half-fov)."""
    half = float(half_fov_arcsec(npix, pixel_scale_arcsec))
    b_arcsec = float(params["b"]) * half

    def f(r):
        return float(mean_convergence_inside(params, npix, pixel_scale_arcsec, r)[0]) - 1.0

    lo, hi = 0.01 * b_arcsec, 3.0 * b_arcsec
    if f(lo) * f(hi) > 0:
        return float("nan")
    return float(optimize.brentq(f, lo, hi, xtol=1e-6 * b_arcsec))


def sigma_crit_kg_per_m2(z_lens: float, z_source: float, cosmology=None) -> float:
    """Critical surface density [kg/m^2] (the paper's Table 5 unit)."""
    cosmo = cosmology or conversions.default_cosmology()
    per_arcsec2 = conversions.critical_surface_density(z_lens, z_source, cosmo) * u.Msun
    d_l = cosmo.angular_diameter_distance(z_lens)
    area = (d_l * _ARCSEC_RAD) ** 2
    return float((per_arcsec2 / area).to_value(u.kg / u.m ** 2))


def physical_quantities(params: dict, npix: int, pixel_scale_arcsec: float, z_lens: float, z_source: float,
                        cosmology=None) -> dict[str, float]:
    """theta_E, Sigma_crit, sigma_SIS, M_E, M(<theta_E) of the full model and theta_E,eff (see module docstring)."""
    p = _check_params(params)
    theta_e = float(p["b"] * half_fov_arcsec(npix, pixel_scale_arcsec))
    return {
        "theta_e_arcsec": theta_e,
        "sigma_crit_msun_per_arcsec2": float(conversions.critical_surface_density(z_lens, z_source, cosmology)),
        "sigma_crit_kg_per_m2": sigma_crit_kg_per_m2(z_lens, z_source, cosmology),
        "sigma_sis_kms": float(conversions.sis_velocity_dispersion(theta_e, z_lens, z_source, cosmology)),
        "einstein_mass_msun": float(conversions.einstein_mass(theta_e, z_lens, z_source, cosmology)),
        "mass_within_theta_e_msun": float(enclosed_mass_msun(p, npix, pixel_scale_arcsec, theta_e, z_lens,
                                                             z_source, cosmology)[0]),
        "theta_e_effective_arcsec": effective_einstein_radius(p, npix, pixel_scale_arcsec),
        "pixel_scale_arcsec": float(pixel_scale_arcsec),
        "npix": int(npix),
        "z_lens": float(z_lens),
        "z_source": float(z_source),
    }


def forward_consistency(observed: np.ndarray, model_image: np.ndarray, noise: np.ndarray, mask: np.ndarray,
                        n_params: int = len(PARAMETER_NAMES),
                        threshold: float = CHI2_DOF_FLAG_THRESHOLD) -> dict:
    """chi2 of the model image against the data with the per-pixel noise, over ``mask`` (True = use).

    dof = number of used pixels - ``n_params`` (the nine lens parameters; the pixelated source is
    not counted, so chi2/dof is a consistency measure rather than a formal goodness of fit).
    Returns chi2, dof, chi2_dof, the flag (chi2_dof > threshold), the chi2 map (NaN outside the
    mask), the RMS residual and S/N = sum(data) / sqrt(sum(noise^2)) over the used pixels.
    """
    observed, model_image, noise = (np.asarray(a, dtype=float) for a in (observed, model_image, noise))
    mask = np.asarray(mask, dtype=bool)
    if not (observed.shape == model_image.shape == noise.shape == mask.shape):
        raise ValueError(f"shapes differ: observed {observed.shape}, model {model_image.shape}, noise {noise.shape}, "
                         f"mask {mask.shape}")
    use = mask & np.isfinite(observed) & np.isfinite(model_image) & np.isfinite(noise) & (noise > 0)
    n = int(use.sum())
    if n <= n_params:
        raise ValueError(f"only {n} usable pixels for {n_params} parameters")
    resid = observed - model_image
    chi2_map = np.full(observed.shape, np.nan)
    chi2_map[use] = (resid[use] / noise[use]) ** 2
    chi2 = float(np.sum(chi2_map[use]))
    dof = n - n_params
    return {
        "chi2": chi2,
        "dof": dof,
        "chi2_dof": chi2 / dof,
        "chi2_dof_threshold": threshold,
        "flag_high_chi2": bool(chi2 / dof > threshold),
        "rms_residual": float(np.sqrt(np.mean(resid[use] ** 2))),
        "snr": float(np.sum(observed[use]) / np.sqrt(np.sum(noise[use] ** 2))),
        "n_pixels": n,
        "chi2_map": chi2_map,
    }


def source_summary(source: np.ndarray) -> dict[str, float]:
    """Max and mean of the reconstructed source (the paper's 'source max/mean')."""
    source = np.asarray(source, dtype=float)
    return {"source_max": float(np.max(source)), "source_mean": float(np.mean(source))}


def profile_curves(params: dict, npix: int, pixel_scale_arcsec: float, z_lens: float, z_source: float,
                   cosmology=None, n_bins: int = 40, oversample: int = 4) -> dict[str, np.ndarray]:
    """kappa(r) (azimuthal average of an oversampled map) and M(<r) about the lens centre, r up to the half field."""
    half = float(half_fov_arcsec(npix, pixel_scale_arcsec))
    centre = lens_centre_arcsec(params, npix, pixel_scale_arcsec)
    x, y = grid_arcsec(npix, pixel_scale_arcsec, oversample)
    kappa = convergence_map(params, npix, pixel_scale_arcsec, x, y)
    edges = np.linspace(0.0, half, n_bins + 1)
    r_mid, kappa_r = radial_profile(kappa, x, y, centre, edges)
    r_mass = np.linspace(half / n_bins, half, n_bins)
    mass = enclosed_mass_msun(params, npix, pixel_scale_arcsec, r_mass, z_lens, z_source, cosmology, centre)
    return {"r_kappa_arcsec": r_mid, "kappa_r": kappa_r, "r_mass_arcsec": r_mass, "enclosed_mass_msun": mass}
