""""AstroRIM + fit" in the paper-003 comparison: the network's estimate refined by the exact lens fit (docs/fit.md).

``AstroRIMFitRunner(model)(image, noise_sigma, psf, pixel_scale)`` returns the fit's source on the model's image
grid (the fit's +-0.6 half-field source grid interpolated onto it, zero outside, as in the evaluation), the common
lens parameters of :func:`astrorim.baseline.compare.astrorim_lens_params`, the wall seconds of network + fit, and
the fit's chi^2/pixel and flag for the comparison table.

On the baseline's mocks the PSF is the mock's Gaussian (``lens.psf_sigma_arcsec``) sampled at the model's pixel
scale (:func:`astrorim.baseline.lens_model.gaussian_psf_kernel`; the rebinning's pixel-box blur is left out); on
the held-out test examples it is the shard's PSF.
"""

from __future__ import annotations

import time

import numpy as np


class AstroRIMFitRunner:
    """``reconstruct(..., refine=True)`` on one observation at a time, timed per lens (model already loaded)."""

    def __init__(self, model, device: str = "cpu"):
        self.model = model
        self.device = device
        self.npix = int(model.config.npix)

    def __call__(self, image: np.ndarray, noise_sigma: float, psf: np.ndarray, pixel_scale: float,
                 gain: float | None = None) -> tuple[np.ndarray, dict, float, dict]:
        """(fit source in the image's flux units on the image grid, common lens parameters, wall seconds,
        {"fit_chi2_per_pixel", "fit_flag"}); source and parameters None when the fit refuses the input."""
        from astrorim.baseline.compare import astrorim_lens_params
        from astrorim.evaluate.fit_rows import resample_fit_source
        from astrorim.fit import FitConfig
        from astrorim.inference import reconstruct

        config = FitConfig()
        t0 = time.perf_counter()
        try:
            result = reconstruct(np.asarray(image, np.float32), self.model, noise_sigma=float(noise_sigma), psf=psf,
                                 pixel_scale=float(pixel_scale), refine=True, gain=gain, fit_config=config,
                                 device=self.device)
        except ValueError as exc:  # the fit's input checks refuse it: a row that says so, no numbers
            return None, None, time.perf_counter() - t0, {"fit_chi2_per_pixel": float("nan"),
                                                          "fit_flag": f"refused: {exc}"}
        wall = time.perf_counter() - t0
        row = result.params.iloc[0]
        source = resample_fit_source(result.fit_source[None], config.source_radius, self.npix)[0]
        extra = {"fit_chi2_per_pixel": float(row["chi2_per_pixel"]), "fit_flag": str(row["flag"])}
        return source, astrorim_lens_params(row, self.npix, float(pixel_scale)), wall, extra


def mock_psf_kernel(psf_sigma_arcsec: float, pixel_scale_arcsec: float) -> np.ndarray:
    """The mock's Gaussian PSF on the model grid, at least 3 x 3 (the fit needs an odd kernel summing to 1)."""
    import torch

    from astrorim.baseline.lens_model import gaussian_psf_kernel

    kernel = gaussian_psf_kernel(psf_sigma_arcsec, pixel_scale_arcsec, dtype=torch.float64).numpy()
    if kernel.shape[0] < 3:
        kernel = np.pad(kernel, 1)
    return kernel / kernel.sum()
