"""Detector and noise model (paper §3.2.3, stage 5).

The noiseless image [ADU] becomes the observation in this order:

1. expected electrons  E = gain (noiseless + sky map) x response, where the sky map carries the
   sky gradient and the response the PRNU (1 + N(0, prnu^2) per pixel) and vignetting
   (1 - v (r / r_corner)^2);
2. photon + read noise: N = Poisson(E) + N(0, read^2);
3. correlated noise: the noise N - E is convolved (periodically, so every pixel keeps the same
   variance) with a kernel of unit L2 norm, which preserves the per-pixel variance while
   correlating neighbours (Gaussian of sigma 0.8-4 px, or a fixed 3x3 kernel in v6);
4. cosmic rays [e-] are added (single pixels or multi-pixel tracks);
5. charge-transfer inefficiency: a fraction of each pixel's charge is deferred into an exponential
   trail towards increasing row index (read out through row 0); charge is conserved except what
   leaves the top row;
6. ADU = electrons / gain, minus the mean sky level; where the version has sky-subtraction
   residuals, the subtracted sky is off by a constant plus a plane, each up to
   ``sky_residual_sigma`` x the background noise (a gradient in the sky itself is left in).

Read noise is applied before CTI although physically it enters at the amplifier after the
transfer; the trails are a few per cent, so the difference is negligible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

from .settings import VersionSettings

# v6: the paper's Hyper Suprime-Cam correlation kernel is not published; this separable 3-tap
# kernel gives a nearest-neighbour noise correlation of 0.29, typical of resampled coadds.
FIXED_CORRELATION_TAPS = np.array([0.15, 1.0, 0.15])


@dataclass(frozen=True)
class CosmicRay:
    row: float
    col: float
    angle_rad: float
    length_pix: int
    adu: float


@dataclass(frozen=True)
class DetectorParams:
    gain_e_per_adu: float
    read_noise_e: float
    sky_adu: float
    prnu_sigma: float = 0.0
    sky_gradient: tuple[float, float] = (0.0, 0.0)   # fractional sky change per half field (x, y)
    sky_residual_adu: float = 0.0                    # constant left after sky subtraction
    sky_residual_plane: tuple[float, float] = (0.0, 0.0)  # plane left [ADU per half field] (x, y)
    cosmic_rays: tuple[CosmicRay, ...] = ()
    correlation: str = "none"                        # "none", "gaussian" or "fixed"
    correlation_sigma_pix: float = float("nan")
    cti_fraction: float = 0.0
    cti_trail_pix: float = float("nan")
    vignetting: float = 0.0                          # fractional response drop at the corners

    @property
    def background_sigma_adu(self) -> float:
        """Per-pixel noise std of the sky background [ADU]: sqrt(sky gain + read^2) / gain."""
        return float(np.sqrt(self.sky_adu * self.gain_e_per_adu + self.read_noise_e**2) / self.gain_e_per_adu)


def sample_detector(rng: np.random.Generator, s: VersionSettings, npix: int) -> DetectorParams:
    """Draw the detector set-up of one example from the version's settings."""
    read = rng.uniform(*s.read_noise_e)
    sky = rng.uniform(*s.sky_adu)
    grad = (0.0, 0.0)
    if s.sky_gradient_max > 0:
        amp = rng.uniform(0.0, s.sky_gradient_max)
        if s.sky_gradient_2d:
            ang = rng.uniform(0.0, 2.0 * np.pi)
            grad = (0.5 * amp * np.cos(ang), 0.5 * amp * np.sin(ang))
        else:
            grad = (0.5 * amp * (1.0 if rng.uniform() < 0.5 else -1.0), 0.0)
    residual, plane = 0.0, (0.0, 0.0)
    if rng.uniform() < s.sky_residual_prob:
        sigma = np.sqrt(sky * s.gain_e_per_adu + read**2) / s.gain_e_per_adu
        residual = rng.uniform(-1.0, 1.0) * s.sky_residual_sigma * sigma
        amp = rng.uniform(0.0, s.sky_residual_sigma) * sigma
        ang = rng.uniform(0.0, 2.0 * np.pi)
        plane = (amp * np.cos(ang), amp * np.sin(ang))
    crs: list[CosmicRay] = []
    if rng.uniform() < s.cosmic_ray_prob:
        for _ in range(int(rng.integers(s.cosmic_ray_hits[0], s.cosmic_ray_hits[1] + 1))):
            crs.append(CosmicRay(rng.uniform(0, npix), rng.uniform(0, npix), rng.uniform(0, np.pi),
                                 int(rng.integers(s.cosmic_ray_track_pix[0], s.cosmic_ray_track_pix[1] + 1)),
                                 rng.uniform(*s.cosmic_ray_adu)))
    corr, corr_sigma = "none", float("nan")
    if rng.uniform() < s.correlated_noise_prob:
        corr = s.correlated_noise_kernel
        if corr == "gaussian":
            corr_sigma = rng.uniform(*s.correlated_noise_sigma_pix)
    cti_f, cti_t = 0.0, float("nan")
    if rng.uniform() < s.cti_prob:
        cti_f = rng.uniform(*s.cti_fraction)
        cti_t = rng.uniform(*s.cti_trail_pix)
    vig = rng.uniform(0.0, s.vignetting_max) if rng.uniform() < s.vignetting_prob else 0.0
    return DetectorParams(s.gain_e_per_adu, read, sky, s.prnu_sigma, grad, residual, plane, tuple(crs), corr,
                          corr_sigma, cti_f, cti_t, vig)


def correlation_kernel(kind: str, sigma_pix: float = float("nan")) -> np.ndarray:
    """Noise-correlation kernel with unit L2 norm (so white noise keeps its variance)."""
    if kind == "gaussian":
        if not sigma_pix > 0:
            raise ValueError(f"correlated-noise sigma_pix must be > 0, got {sigma_pix}")
        r = int(np.ceil(4.0 * sigma_pix))
        t = np.arange(-r, r + 1)
        g = np.exp(-0.5 * (t / sigma_pix) ** 2)
        k = np.outer(g, g)
    elif kind == "fixed":
        k = np.outer(FIXED_CORRELATION_TAPS, FIXED_CORRELATION_TAPS)
    else:
        raise ValueError(f"unknown correlation kernel {kind!r}")
    return k / np.sqrt(np.sum(k * k))


def periodic_convolve(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Circular convolution of a 2-D image with a centred odd kernel (no edge loss of variance)."""
    h, w = image.shape
    kh, kw = kernel.shape
    if kh > h or kw > w:
        raise ValueError(f"kernel {kernel.shape} larger than image {image.shape}")
    padded = np.zeros((h, w))
    padded[:kh, :kw] = kernel
    padded = np.roll(padded, (-(kh // 2), -(kw // 2)), axis=(0, 1))
    return np.fft.irfft2(np.fft.rfft2(image) * np.fft.rfft2(padded), s=(h, w))


def cti_trail(image_e: np.ndarray, fraction: float, trail_pix: float) -> np.ndarray:
    """Defer ``fraction`` of each pixel's charge into an exponential trail along +row."""
    r = np.exp(-1.0 / trail_pix)
    trail = lfilter([0.0, 1.0 - r], [1.0, -r], image_e, axis=0)
    return (1.0 - fraction) * image_e + fraction * trail


def sky_map_adu(d: DetectorParams, npix: int) -> np.ndarray:
    t = (np.arange(npix) + 0.5 - 0.5 * npix) / (0.5 * npix)  # -1..1 across the field
    gx, gy = d.sky_gradient
    return d.sky_adu * (1.0 + gx * t[None, :] + gy * t[:, None])


def cosmic_ray_image_adu(d: DetectorParams, npix: int) -> np.ndarray:
    out = np.zeros((npix, npix))
    for cr in d.cosmic_rays:
        steps = np.arange(cr.length_pix)
        rows = np.floor(cr.row + steps * np.sin(cr.angle_rad)).astype(int)
        cols = np.floor(cr.col + steps * np.cos(cr.angle_rad)).astype(int)
        ok = (rows >= 0) & (rows < npix) & (cols >= 0) & (cols < npix)
        out[rows[ok], cols[ok]] += cr.adu
    return out


def apply_detector(noiseless_adu: np.ndarray, d: DetectorParams, rng: np.random.Generator) -> np.ndarray:
    """Noisy, sky-subtracted observation [ADU] of a noiseless image [ADU] (see module docstring)."""
    npix = noiseless_adu.shape[-1]
    if noiseless_adu.shape != (npix, npix):
        raise ValueError(f"noiseless image must be square 2-D, got shape {noiseless_adu.shape}")
    response = np.ones((npix, npix))
    if d.prnu_sigma > 0:
        response = response + rng.normal(0.0, d.prnu_sigma, size=(npix, npix))
    if d.vignetting > 0:
        t = np.arange(npix) + 0.5 - 0.5 * npix
        r2 = (t[None, :] ** 2 + t[:, None] ** 2) / (0.5 * npix**2)
        response = response * (1.0 - d.vignetting * r2)
    expected_e = np.clip(d.gain_e_per_adu * (noiseless_adu + sky_map_adu(d, npix)) * response, 0.0, None)
    noise_e = rng.poisson(expected_e) - expected_e + rng.normal(0.0, d.read_noise_e, size=(npix, npix))
    if d.correlation != "none":
        noise_e = periodic_convolve(noise_e, correlation_kernel(d.correlation, d.correlation_sigma_pix))
    electrons = expected_e + noise_e
    if d.cosmic_rays:
        electrons = electrons + d.gain_e_per_adu * cosmic_ray_image_adu(d, npix)
    if d.cti_fraction > 0:
        electrons = cti_trail(electrons, d.cti_fraction, d.cti_trail_pix)
    observed = electrons / d.gain_e_per_adu - d.sky_adu
    if d.sky_residual_adu != 0.0 or d.sky_residual_plane != (0.0, 0.0):
        t = (np.arange(npix) + 0.5 - 0.5 * npix) / (0.5 * npix)
        px, py = d.sky_residual_plane
        observed = observed + d.sky_residual_adu + px * t[None, :] + py * t[:, None]
    return observed
