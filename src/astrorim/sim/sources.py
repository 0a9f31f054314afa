"""Source galaxies (paper §3.2.3, stage 1): sampling and rendering on the supersampled grid.

A source is described in its own frame (centre at 0, fluxes as fractions of the main body's
flux), then placed and scaled when rendered.  Everything here lies in the source plane and is
lensed: bulge and disk, companions, clumps and spiral modulation.

Rendered images are flux per *detector* pixel area [ADU] sampled at supersampled-pixel centres,
so a 4x4 block mean gives the flux in each detector pixel and bilinear sampling at
beta = theta - alpha(theta) gives the lensed surface brightness in the same units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .sersic import Sersic, add_sersic
from .settings import VersionSettings


@dataclass(frozen=True)
class Clump:
    """Gaussian star-forming knot (eq. 33); amplitude relative to the smooth body's peak."""

    amplitude_rel: float
    sigma_arcsec: float
    dx: float
    dy: float


@dataclass(frozen=True)
class Spiral:
    """Multiplicative spiral modulation.

    style "paper": S = 1 + A sin(3 theta + 5 r / r_max + phase) on the whole body (eq. 34);
    style "log":   S = 1 + A (1 - exp(-(r/r_in)^2)) cos(m (theta - ln(r / r_max) / tan(pitch)) + phase)
                   on the disk only (logarithmic arms, v5/v6).
    theta and r are measured in the deprojected disk frame.
    """

    style: str
    amplitude: float
    arms: int
    pitch_rad: float
    phase: float
    r_max_arcsec: float
    r_in_arcsec: float
    q: float
    phi_rad: float


@dataclass(frozen=True)
class SourceGalaxy:
    morphology: str
    body: tuple[Sersic, ...]          # fluxes sum to 1 (fractions of the main body)
    disk_index: int | None            # which body component the "log" spiral modulates
    companions: tuple[Sersic, ...]    # fluxes are fractions of the main body
    clumps: tuple[Clump, ...]
    spiral: Spiral | None
    size_arcsec: float                # characteristic radius (largest body R_e)
    bulge_re_arcsec: float = float("nan")
    bulge_n: float = float("nan")
    disk_re_arcsec: float = float("nan")
    bulge_fraction: float = float("nan")
    q: float = float("nan")


def _ellipse_offset(rng, radius_arcsec: float, q: float, phi: float) -> tuple[float, float]:
    """A random point inside an ellipse of semi-major axis ``radius_arcsec`` (uniform in area)."""
    r = radius_arcsec * np.sqrt(rng.uniform())
    t = rng.uniform(0.0, 2.0 * np.pi)
    u, v = r * np.cos(t), r * q * np.sin(t)
    return u * np.cos(phi) - v * np.sin(phi), u * np.sin(phi) + v * np.cos(phi)


def _sample_companions(rng, s: VersionSettings) -> tuple[Sersic, ...]:
    out = []
    for _ in range(int(rng.integers(0, s.companions_max + 1))):
        dist = rng.uniform(*s.companion_distance_arcsec)
        ang = rng.uniform(0.0, 2.0 * np.pi)
        out.append(Sersic(flux=rng.uniform(*s.companion_flux_fraction),
                          r_e_arcsec=rng.uniform(*s.companion_re_arcsec), n=rng.uniform(0.7, 2.5),
                          q=1.0 - rng.uniform(0.0, 0.5), phi_rad=rng.uniform(0.0, np.pi),
                          center_x=dist * np.cos(ang), center_y=dist * np.sin(ang)))
    return tuple(out)


def _sample_clumps(rng, s: VersionSettings, ss_pixel_arcsec: float, n: int, radius_arcsec: float,
                   q: float, phi: float, amplitude=None, centre=(0.0, 0.0)) -> tuple[Clump, ...]:
    amplitude = s.clump_amplitude_frac if amplitude is None else amplitude
    clumps = []
    for _ in range(n):
        dx, dy = _ellipse_offset(rng, radius_arcsec, q, phi)
        clumps.append(Clump(rng.uniform(*amplitude), rng.uniform(*s.clump_sigma_superpix) * ss_pixel_arcsec,
                            dx + centre[0], dy + centre[1]))
    return tuple(clumps)


def _sample_spiral(rng, s: VersionSettings, disk_re: float, bulge_re: float, q: float, phi: float) -> Spiral:
    if s.spiral_style == "paper":
        return Spiral("paper", rng.uniform(*s.spiral_amplitude), 3, 0.0, rng.uniform(0.0, 2.0 * np.pi),
                      3.0 * disk_re, bulge_re, q, phi)
    arms = 2 if rng.uniform() < 0.7 else 3
    return Spiral("log", rng.uniform(*s.spiral_amplitude), arms, np.deg2rad(rng.uniform(12.0, 30.0)),
                  rng.uniform(0.0, 2.0 * np.pi), 3.0 * disk_re, bulge_re, q, phi)


def sample_bulge_disk_source(rng: np.random.Generator, s: VersionSettings, ss_pixel_arcsec: float,
                             morphology: str = "bulge_disk", force_spiral: bool = False) -> SourceGalaxy:
    """Bulge + exponential disk with the ranges of §3.2.3, plus companions, clumps and spiral."""
    re_b = rng.uniform(*s.bulge_re_arcsec)
    n_b = rng.uniform(*s.bulge_n)
    re_d = re_b * rng.uniform(*s.disk_re_factor)
    f_b = rng.beta(*s.bulge_fraction_beta)
    e_d = rng.uniform(*s.source_ellipticity)
    q_d = 1.0 - e_d
    phi_d = rng.uniform(0.0, np.pi)
    # Bulges are rounder than their disks and only slightly misaligned.
    q_b = 1.0 - e_d * rng.uniform(0.4, 1.0)
    phi_b = phi_d + np.deg2rad(rng.normal(0.0, s.source_misalignment_deg))
    body = (Sersic(f_b, re_b, n_b, q_b, phi_b), Sersic(1.0 - f_b, re_d, 1.0, q_d, phi_d))
    companions = _sample_companions(rng, s)
    clumps: tuple[Clump, ...] = ()
    if rng.uniform() < s.clump_prob:
        clumps = _sample_clumps(rng, s, ss_pixel_arcsec, int(rng.integers(1, s.clump_max + 1)),
                                1.5 * re_d, q_d, phi_d)
    spiral = None
    if force_spiral or rng.uniform() < s.spiral_prob:
        spiral = _sample_spiral(rng, s, re_d, re_b, q_d, phi_d)
    return SourceGalaxy(morphology, body, 1, companions, clumps, spiral, re_d,
                        bulge_re_arcsec=re_b, bulge_n=n_b, disk_re_arcsec=re_d, bulge_fraction=f_b, q=q_d)


def sample_morphology_class_source(rng: np.random.Generator, s: VersionSettings,
                                   ss_pixel_arcsec: float) -> SourceGalaxy:
    """v6: 50 % spiral, 30 % elliptical, 20 % irregular, each with its own Sérsic ranges."""
    u = rng.uniform()
    if u < 0.5:
        return sample_bulge_disk_source(rng, s, ss_pixel_arcsec, morphology="spiral", force_spiral=True)
    if u < 0.8:
        re = rng.uniform(0.05, 0.30)
        n = rng.uniform(3.0, 5.5)
        q = 1.0 - rng.uniform(0.0, 0.4)
        body = (Sersic(1.0, re, n, q, rng.uniform(0.0, np.pi)),)
        return SourceGalaxy("elliptical", body, None, _sample_companions(rng, s), (), None, re,
                            bulge_re_arcsec=re, bulge_n=n, bulge_fraction=1.0, q=q)
    re = rng.uniform(0.08, 0.35)
    n = rng.uniform(0.5, 1.2)
    q = 1.0 - rng.uniform(0.2, 0.7)
    phi = rng.uniform(0.0, np.pi)
    body = (Sersic(1.0, re, n, q, phi),)
    # Irregulars are lopsided: the knots cluster on one side of the smooth body.
    side = rng.uniform(0.0, 2.0 * np.pi)
    centre = (0.5 * re * np.cos(side), 0.5 * re * np.sin(side))
    clumps = _sample_clumps(rng, s, ss_pixel_arcsec, int(rng.integers(3, 9)), 1.2 * re, q, phi,
                            amplitude=(0.2, 1.0), centre=centre)
    return SourceGalaxy("irregular", body, None, _sample_companions(rng, s), clumps, None, re,
                        disk_re_arcsec=re, bulge_fraction=0.0, q=q)


def _spiral_factor(sp: Spiral, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    cos_p, sin_p = np.cos(sp.phi_rad), np.sin(sp.phi_rad)
    xp = x * cos_p + y * sin_p
    yp = (-x * sin_p + y * cos_p) / sp.q
    theta = np.arctan2(yp, xp)
    r = np.hypot(xp, yp)
    if sp.style == "paper":
        return 1.0 + sp.amplitude * np.sin(3.0 * theta + 5.0 * r / sp.r_max_arcsec + sp.phase)
    # The arm pattern fades towards the centre so the bulge stays smooth.
    envelope = 1.0 - np.exp(-((r / sp.r_in_arcsec) ** 2))
    with np.errstate(divide="ignore"):
        wind = np.log(np.maximum(r, 1e-12) / sp.r_max_arcsec) / np.tan(sp.pitch_rad)
    return 1.0 + sp.amplitude * envelope * np.cos(sp.arms * (theta - wind) + sp.phase)


def render_source(src: SourceGalaxy, x: np.ndarray, y: np.ndarray, center: tuple[float, float],
                  body_flux_adu: float, pixel_area_arcsec2: float) -> np.ndarray:
    """Flux per detector-pixel area [ADU] of the placed source at meshgrid points (x, y) [arcsec].

    ``body_flux_adu`` is the total flux of the smooth bulge + disk; companions and clumps add to it.
    Each Sérsic component is evaluated inside the box holding all but 1e-4 of its flux.
    """
    cx, cy = center
    image = np.zeros(x.shape, dtype=x.dtype)
    sp = src.spiral
    for k, comp in enumerate(src.body):
        modulation = None
        if sp is not None and (sp.style == "paper" or k == src.disk_index):
            def modulation(xb, yb, sp=sp):
                return _spiral_factor(sp, xb - cx, yb - cy)
        add_sersic(image, comp.shifted(cx, cy, body_flux_adu), x, y, pixel_area_arcsec2, modulation=modulation)
    if src.clumps:
        peak = float(image.max())
        for cl in src.clumps:
            _add_gaussian(image, x, y, cx + cl.dx, cy + cl.dy, cl.sigma_arcsec, cl.amplitude_rel * peak)
    for comp in src.companions:
        add_sersic(image, comp.shifted(cx, cy, body_flux_adu), x, y, pixel_area_arcsec2)
    return np.maximum(image, 0.0, out=image)


def _add_gaussian(image, x, y, x0, y0, sigma, amplitude) -> None:
    """Add a Gaussian in place, evaluated only inside +-6 sigma (beyond: < 1e-7 of its peak).

    ``x``, ``y`` are meshgrid coordinates (x constant along columns, y along rows).
    """
    half = 6.0 * sigma
    cols = np.flatnonzero(np.abs(x[0] - x0) <= half)
    rows = np.flatnonzero(np.abs(y[:, 0] - y0) <= half)
    if cols.size == 0 or rows.size == 0:
        return
    sl = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    image[sl] += amplitude * np.exp(-((x[sl] - x0) ** 2 + (y[sl] - y0) ** 2) / (2.0 * sigma**2))
