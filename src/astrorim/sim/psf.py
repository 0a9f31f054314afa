"""Point-spread functions: Gaussian, Moffat and Airy kernels that realise the requested FWHM.

Width parameters from the FWHM (the published code got Moffat and Airy wrong):
    Gaussian  sigma = FWHM / (2 sqrt(2 ln 2))
    Moffat    alpha = FWHM / (2 sqrt(2^(1/beta) - 1)),  profile (1 + r^2/alpha^2)^(-beta)
    Airy      (2 J1(v)/v)^2 with v = pi r / (lambda/D) and lambda/D = FWHM / 1.02899 (first zero at
              1.21967 lambda/D)
An elliptical PSF with e = 1 - q keeps the geometric-mean FWHM: FWHM / sqrt(q) along the major axis
and FWHM sqrt(q) along the minor axis.  A "coma-like" PSF (v6) moves a fraction w of the light into
a broader lobe displaced along one direction; the core is displaced the other way so the centroid
stays at the origin.

Kernels are integrated over pixels (2x2 samples per supersampled pixel), normalised to sum 1 over
their finite support, and returned both on the supersampled grid (size 4K+1, used for the
convolution) and at detector resolution (size K, what the model is given).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy.optimize import brentq
from scipy.special import j1

GAUSSIAN_FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))


def _airy(v):
    v = np.asarray(v, dtype=float)
    safe = np.where(v == 0.0, 1.0, v)
    return np.where(v == 0.0, 1.0, (2.0 * j1(safe) / safe) ** 2)


# Half-maximum argument of the Airy pattern, v_half = 1.6163...; FWHM = (2 v_half / pi) lambda/D.
AIRY_V_HALF = brentq(lambda v: _airy(v) - 0.5, 1.0, 2.5, xtol=1e-14)
AIRY_FWHM_PER_LAMBDA_OVER_D = 2.0 * AIRY_V_HALF / np.pi
AIRY_FIRST_ZERO_PER_LAMBDA_OVER_D = brentq(j1, 3.0, 4.5, xtol=1e-14) / np.pi

FAMILIES = ("gaussian", "moffat", "airy")


@dataclass(frozen=True)
class PsfParams:
    family: str
    fwhm_arcsec: float           # geometric-mean FWHM of the core
    beta: float = float("nan")   # Moffat only
    ellipticity: float = 0.0     # 1 - minor/major
    phi_rad: float = 0.0         # major-axis angle
    coma_weight: float = 0.0     # flux fraction in the displaced lobe
    coma_phi_rad: float = 0.0

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"unknown PSF family {self.family!r}; expected one of {FAMILIES}")
        if not self.fwhm_arcsec > 0:
            raise ValueError(f"PSF fwhm_arcsec must be > 0, got {self.fwhm_arcsec}")
        if self.family == "moffat" and not self.beta > 1.0:
            raise ValueError(f"Moffat beta must be > 1, got {self.beta}")
        if not 0.0 <= self.ellipticity < 1.0:
            raise ValueError(f"PSF ellipticity must be in [0, 1), got {self.ellipticity}")
        if not 0.0 <= self.coma_weight < 0.5:
            raise ValueError(f"PSF coma_weight must be in [0, 0.5), got {self.coma_weight}")


def core_profile(family: str, r, fwhm: float, beta: float = float("nan")) -> np.ndarray:
    """Circular profile (peak 1) of radius ``r`` in the same unit as ``fwhm``."""
    r = np.asarray(r, dtype=float)
    if family == "gaussian":
        sigma = fwhm / GAUSSIAN_FWHM_PER_SIGMA
        return np.exp(-0.5 * (r / sigma) ** 2)
    if family == "moffat":
        alpha = fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))
        return (1.0 + (r / alpha) ** 2) ** (-beta)
    if family == "airy":
        lambda_over_d = fwhm / AIRY_FWHM_PER_LAMBDA_OVER_D
        return _airy(np.pi * r / lambda_over_d)
    raise ValueError(f"unknown PSF family {family!r}; expected one of {FAMILIES}")


def _elliptical_radius(dx, dy, q, phi):
    c, s = np.cos(phi), np.sin(phi)
    u = dx * c + dy * s
    v = -dx * s + dy * c
    return np.sqrt(q * u * u + v * v / q)


def psf_value(p: PsfParams, dx, dy) -> np.ndarray:
    """Unnormalised PSF at offsets (dx, dy) [arcsec]."""
    q = 1.0 - p.ellipticity
    if p.coma_weight == 0.0:
        return core_profile(p.family, _elliptical_radius(dx, dy, q, p.phi_rad), p.fwhm_arcsec, p.beta)
    w = p.coma_weight
    shift = 0.8 * p.fwhm_arcsec
    ux, uy = np.cos(p.coma_phi_rad), np.sin(p.coma_phi_rad)
    core_shift = -w * shift / (1.0 - w)
    lobe_fwhm = 1.8 * p.fwhm_arcsec
    core = core_profile(p.family, _elliptical_radius(dx - core_shift * ux, dy - core_shift * uy, q, p.phi_rad),
                        p.fwhm_arcsec, p.beta)
    # The lobe is a Gaussian elongated along the coma direction (a comet-like tail).
    lobe = core_profile("gaussian", _elliptical_radius(dx - shift * ux, dy - shift * uy, 0.6, p.coma_phi_rad),
                        lobe_fwhm)
    # Weights are flux fractions: divide each profile by its integral (peak-1 profile areas).
    core_area = _profile_area(p.family, p.fwhm_arcsec, p.beta)
    lobe_area = _profile_area("gaussian", lobe_fwhm)
    return (1.0 - w) * core / core_area + w * lobe / lobe_area


def _profile_area(family: str, fwhm: float, beta: float = float("nan")) -> float:
    """Integral over the plane of a peak-1 circular profile (ellipticity keeps the area)."""
    if family == "gaussian":
        return 2.0 * np.pi * (fwhm / GAUSSIAN_FWHM_PER_SIGMA) ** 2
    if family == "moffat":
        alpha = fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))
        return np.pi * alpha**2 / (beta - 1.0)
    lambda_over_d = fwhm / AIRY_FWHM_PER_LAMBDA_OVER_D
    return 4.0 / np.pi * lambda_over_d**2


@dataclass(frozen=True)
class PsfKernels:
    supersampled: np.ndarray  # (4K+1, 4K+1) on the supersampled grid, sum 1
    detector: np.ndarray      # (K, K) integrated over detector pixels, sum 1


def psf_kernels(p: PsfParams, pixel_scale_arcsec: float, size_pix: int, supersampling: int = 4) -> PsfKernels:
    """Pixel-integrated kernels centred on the central pixel of each grid.

    Both come from one evaluation on a lattice of spacing 1/2 supersampled pixel offset by 1/4, so
    each supersampled pixel averages 2x2 samples and each detector pixel (2 ss)^2 samples.
    """
    if size_pix % 2 != 1 or size_pix < 3:
        raise ValueError(f"PSF size_pix must be odd and >= 3, got {size_pix}")
    if supersampling % 2:
        raise ValueError(f"supersampling must be even for centred kernels, got {supersampling}")
    half_ss = supersampling * size_pix // 2  # supersampled kernel spans offsets -half_ss..half_ss
    n_fine = 2 * (2 * half_ss + 1)
    u = (-half_ss - 0.25 + 0.5 * np.arange(n_fine)) * (pixel_scale_arcsec / supersampling)
    dx, dy = np.meshgrid(u, u)
    fine = psf_value(p, dx, dy)
    ss = fine.reshape(n_fine // 2, 2, n_fine // 2, 2).sum(axis=(1, 3))
    det_lo = (n_fine - 2 * supersampling * size_pix) // 2
    inner = fine[det_lo:det_lo + 2 * supersampling * size_pix, det_lo:det_lo + 2 * supersampling * size_pix]
    f = 2 * supersampling
    det = inner.reshape(size_pix, f, size_pix, f).sum(axis=(1, 3))
    return PsfKernels(ss / ss.sum(), det / det.sum())


def measure_fwhm_pix(kernel: np.ndarray) -> tuple[float, float]:
    """FWHM [pixels] along the central row and column, by linear interpolation at half maximum.

    Assumes the peak is at the central pixel (odd kernel) and a monotonic core.
    """
    kernel = np.asarray(kernel, dtype=float)
    c = kernel.shape[0] // 2
    peak = kernel[c, c]
    out = []
    for profile in (kernel[c, :], kernel[:, c]):
        widths = []
        for side in (profile[c:], profile[c::-1]):
            below = np.flatnonzero(side < 0.5 * peak)
            if below.size == 0:
                raise ValueError("kernel does not fall below half maximum inside its support")
            k = below[0]
            v0, v1 = side[k - 1], side[k]
            widths.append(k - 1 + (v0 - 0.5 * peak) / (v0 - v1))
        out.append(widths[0] + widths[1])
    return out[0], out[1]


def sample_family(rng: np.random.Generator, families: tuple[tuple[str, float], ...]) -> str:
    names = [f for f, _ in families]
    w = np.array([wt for _, wt in families], dtype=float)
    return names[int(rng.choice(len(names), p=w / w.sum()))]


def sample_psf(rng: np.random.Generator, settings, fwhm_range_arcsec: tuple[float, float]) -> PsfParams:
    family = sample_family(rng, settings.psf_families)
    fwhm = rng.uniform(*fwhm_range_arcsec)
    beta = rng.uniform(*settings.moffat_beta) if family == "moffat" else float("nan")
    e = rng.uniform(0.0, settings.psf_ellipticity_max) if settings.psf_ellipticity_max > 0 else 0.0
    phi = rng.uniform(0.0, np.pi)
    coma_w, coma_phi = 0.0, 0.0
    if rng.uniform() < settings.psf_coma_prob:
        coma_w = rng.uniform(*settings.psf_coma_weight)
        coma_phi = rng.uniform(0.0, 2.0 * np.pi)
    return PsfParams(family, fwhm, beta, e, phi, coma_w, coma_phi)


def mismatched_psf(rng: np.random.Generator, settings, p: PsfParams) -> PsfParams:
    """The "measured" PSF of a mismatch example: FWHM off by 5-15 %, shape perturbed."""
    sign = 1.0 if rng.uniform() < 0.5 else -1.0
    fwhm = p.fwhm_arcsec * (1.0 + sign * rng.uniform(*settings.psf_mismatch_fwhm_frac))
    e = float(np.clip(p.ellipticity + rng.uniform(-0.05, 0.05), 0.0, 0.9))
    phi = p.phi_rad + np.deg2rad(rng.normal(0.0, 10.0))
    beta = float(np.clip(p.beta + rng.uniform(-0.5, 0.5), 1.5, 10.0)) if p.family == "moffat" else p.beta
    return replace(p, fwhm_arcsec=fwhm, ellipticity=e, phi_rad=phi, beta=beta)
