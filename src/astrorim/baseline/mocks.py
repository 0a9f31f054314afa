"""Mock lensing systems 1 and 2 (paper 003 §5.1) and their noisy observations.

A mock source is a held-out (VAE test split) galaxy image, denoised with non-local means (as in the
paper; skipped for noise-free simulator sources), clipped at zero and renormalised to peak 1.  It is
placed in the source plane with eq. 17 (the same bilinear stamp model as the fit, but with the real
image instead of a decoder output), lensed by the EPL + shear model, convolved with the PSF, and
observed with Gaussian noise of each level in ``noise_levels`` (Table 1: 0.333, 0.1, 0.0333).

The paper's system 1 has "a fairly simple spiral morphology" and system 2 "a significant amount of
substructure"; their lens parameters were drawn from eqs. 18-23 but not published.  We fix both in the
configuration (truth values) and pick the sources from the test split by a substructure score
(:func:`substructure_score`): ``select: smooth`` takes the lowest score, ``select: clumpy`` the highest,
among images whose light is not too compact or too extended; or ``origin`` names an image directly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from skimage.restoration import denoise_nl_means

from astrorim.baseline.forward import LensingForward
from astrorim.baseline.priors import SCALAR_PARAMS


@dataclass
class MockSystem:
    name: str
    truth: dict[str, float]
    source: np.ndarray          # (64, 64) peak-normalised true source stamp
    source_origin: str
    noiseless: np.ndarray       # (npix, npix) PSF-convolved lensed image
    noise_levels: list[float]
    observations: np.ndarray    # (n_levels, npix, npix)
    seeds: list[int]


def substructure_score(image: np.ndarray, smooth_sigma_pix: float = 2.0) -> float:
    """Fraction of the image's squared flux in structure finer than ``smooth_sigma_pix`` (0 = smooth)."""
    img = np.clip(np.asarray(image, dtype=np.float64), 0, None)
    high = img - ndimage.gaussian_filter(img, smooth_sigma_pix)
    return float((high ** 2).sum() / max((img ** 2).sum(), 1e-30))


def light_radius(image: np.ndarray) -> float:
    """Flux-weighted rms radius of the positive light, in units of the stamp side."""
    img = np.clip(np.asarray(image, dtype=np.float64), 0, None)
    n = img.shape[0]
    c = (np.arange(n) + 0.5) / n - 0.5
    yy, xx = np.meshgrid(c, c, indexing="ij")
    w = img / max(img.sum(), 1e-30)
    xm, ym = (w * xx).sum(), (w * yy).sum()
    return float(np.sqrt((w * ((xx - xm) ** 2 + (yy - ym) ** 2)).sum()))


def pixel_noise(image: np.ndarray) -> float:
    """Robust white-noise sd: 1.4826 MAD of horizontal neighbour differences / sqrt(2)."""
    d = np.diff(np.asarray(image, dtype=np.float64), axis=1).ravel()
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2.0))


def needs_denoising(origin: str) -> bool:
    """Noisy inputs (HDF cutouts) are denoised; simulator sources are noise-free."""
    return not str(origin).startswith("sim/")


def denoise_source(image: np.ndarray, denoise: bool = True) -> np.ndarray:
    """Non-local-means denoising (Buades et al.; paper §5.1) when ``denoise``, then clipping at 0 and
    renormalisation to peak 1."""
    img = np.asarray(image, dtype=np.float64)
    sigma = pixel_noise(img) if denoise else 0.0
    if sigma > 0:
        img = denoise_nl_means(img, h=0.8 * sigma, sigma=sigma, patch_size=5, patch_distance=6, fast_mode=True)
    img = np.clip(img, 0, None)
    peak = img.max()
    if not peak > 0:
        raise ValueError("source image has no positive pixel after denoising")
    return (img / peak).astype(np.float32)


def select_source(images: np.ndarray, origins: np.ndarray, select: str | None = None, origin: str | None = None,
                  prefix: str = "", radius_range: tuple[float, float] = (0.08, 0.2)) -> int:
    """Index of the chosen source among ``images`` (see module docstring)."""
    if origin is not None:
        hits = np.flatnonzero(np.asarray(origins).astype(str) == origin)
        if len(hits) == 0:
            raise KeyError(f"source {origin!r} is not in the test split")
        return int(hits[0])
    if select not in ("smooth", "clumpy"):
        raise ValueError(f"select must be 'smooth' or 'clumpy' (or give origin), got {select!r}")
    cands = [i for i, o in enumerate(np.asarray(origins).astype(str)) if o.startswith(prefix)
             and radius_range[0] <= light_radius(images[i]) <= radius_range[1]]
    if not cands:
        raise ValueError(f"no test image with prefix {prefix!r} and light radius in {radius_range}")
    scores = [substructure_score(denoise_source(images[i], needs_denoising(origins[i]))) for i in cands]
    return int(cands[int(np.argmin(scores) if select == "smooth" else np.argmax(scores))])


def truth_tensors(truth: dict[str, float]) -> dict[str, torch.Tensor]:
    missing = [k for k in SCALAR_PARAMS if k not in truth]
    if missing:
        raise KeyError(f"truth is missing {missing}")
    return {k: torch.tensor([float(truth[k])], dtype=torch.float32) for k in SCALAR_PARAMS}


@torch.no_grad()
def render(forward: LensingForward, source: np.ndarray, truth: dict[str, float]) -> np.ndarray:
    """Noiseless PSF-convolved image of ``source`` (64, 64) placed and lensed with ``truth``."""
    stamp = torch.as_tensor(np.asarray(source, dtype=np.float32))[None]
    return forward.image_from_stamps(stamp, truth_tensors(truth))[0].numpy()


def observe(noiseless: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """noiseless + N(0, sigma^2) per pixel, from ``numpy.random.default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    return (noiseless + sigma * rng.standard_normal(noiseless.shape)).astype(np.float32)


def make_system(name: str, forward: LensingForward, source: np.ndarray, source_origin: str, truth: dict[str, float],
                noise_levels: list[float], seed: int) -> MockSystem:
    """Render and observe one system; the noise seed of level k is ``seed + k``."""
    noiseless = render(forward, source, truth)
    seeds = [int(seed) + k for k in range(len(noise_levels))]
    obs = np.stack([observe(noiseless, s, sd) for s, sd in zip(noise_levels, seeds)])
    return MockSystem(name, {k: float(truth[k]) for k in SCALAR_PARAMS}, np.asarray(source, np.float32),
                      source_origin, noiseless, [float(s) for s in noise_levels], obs, seeds)


def calibrate_iota(forward: LensingForward, source: np.ndarray, truth: dict[str, float], sigma: float,
                   target_snr: float, seed: int, low: float = 1e-3, high: float = 10.0, iters: int = 60) -> float:
    """The intensity iota at which the observation with noise ``sigma`` and noise seed ``seed`` has
    S/N (eqs. 24-25) = ``target_snr``.  The noiseless image is linear in iota, so one rendering at
    iota = 1 suffices; bisection assumes S/N grows with iota (true in practice; checked at the ends)."""
    from astrorim.baseline.snr import signal_to_noise

    unit = render(forward, source, {**truth, "iota": 1.0})
    noise = observe(np.zeros_like(unit), sigma, seed)
    ps = forward.grid.pixel_scale

    def snr(iota: float) -> float:
        try:
            return signal_to_noise(iota * unit + noise, sigma, ps).snr
        except ValueError:  # empty mask
            return 0.0

    if not snr(low) < target_snr < snr(high):
        raise ValueError(f"target S/N {target_snr} is outside [{snr(low):.3g}, {snr(high):.3g}] for iota in "
                         f"[{low}, {high}]")
    for _ in range(iters):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if snr(mid) < target_snr else (low, mid)
    return 0.5 * (low + high)
