"""The forward flow of paper 003 (Fig. 5, eqs. 6-9, 17): parameters -> predicted noiseless image.

    I_pred = PSF * I_src(theta - alpha(theta))

with the lens model of :mod:`astrorim.baseline.lens_model`, the source model of
:mod:`astrorim.baseline.source_model` (stamp = VAE decoder output d(z) or a given image) and the
project's zero-padded 'same' convolution (:func:`astrorim.model.psf.convolve_same`).  Noise is added by
the caller (mocks) or enters the likelihood (Pyro model).  Surface brightness is in the units of the
stamp times iota (the stamps are peak-normalised, so iota is the peak brightness before lensing/PSF).

``device`` is where the rendering runs (decoder, ray tracing, source sampling, PSF); every method takes its
inputs from, and returns its result to, the caller's device, and autograd follows the moves.  So a Pyro model,
its priors and its optimiser can stay on the CPU while the image work, nearly all of a MAP step's cost at the
paper's decoder width, runs on a GPU.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from astrorim.baseline.lens_model import ImageGrid, gaussian_psf_kernel, ray_trace
from astrorim.baseline.source_model import DEFAULT_STAMP_WIDTH_PER_SCALE, evaluate_source
from astrorim.model.psf import convolve_same


class LensingForward:
    """Renders images on ``grid`` with a Gaussian PSF of ``psf_sigma_arcsec`` (or a given ``psf_kernel``).

    ``decoder`` (a :class:`astrorim.baseline.vae.Decoder`) is put in eval mode and frozen: inference never
    changes it and needs no gradients with respect to its weights.  On a ``device`` other than the CPU the
    forward works with a copy of it there, so the caller's module stays where it is.
    """

    def __init__(self, decoder: nn.Module | None, grid: ImageGrid = ImageGrid(), psf_sigma_arcsec: float = 0.05,
                 stamp_width_per_scale: float = DEFAULT_STAMP_WIDTH_PER_SCALE,
                 psf_kernel: torch.Tensor | None = None, conv_method: str = "auto",
                 device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        if decoder is not None and self.device.type != "cpu":
            decoder = copy.deepcopy(decoder).to(self.device)
        self.decoder = decoder
        if decoder is not None:
            decoder.eval()
            decoder.requires_grad_(False)
        self.grid = grid
        self.x, self.y = (c.to(self.device) for c in grid.coordinates(torch.float32))
        if psf_kernel is None:
            psf_kernel = gaussian_psf_kernel(psf_sigma_arcsec, grid.pixel_scale)
        self.psf_kernel = torch.as_tensor(psf_kernel, dtype=torch.float32).to(self.device)
        self.psf_sigma_arcsec = psf_sigma_arcsec
        self.stamp_width_per_scale = float(stamp_width_per_scale)
        self.conv_method = conv_method
        self.n_calls = 0  # forward evaluations, for timing per gradient in the benchmarks

    def _here(self, p: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: torch.as_tensor(v).to(self.device) for k, v in p.items()}

    def stamps(self, z: torch.Tensor) -> torch.Tensor:
        """Decoded source stamps d(z), (B, 64, 64)."""
        return self._decode(z).to(z.device)

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        if self.decoder is None:
            raise RuntimeError("this LensingForward has no decoder; pass stamps explicitly")
        return self.decoder(z.to(self.device))

    def lensed_source(self, stamps: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
        """I_lens = I_src(theta - alpha(theta)) (eq. 8) before the PSF, (B, H, W)."""
        return self._lensed_source(stamps.to(self.device), self._here(p)).to(stamps.device)

    def _lensed_source(self, stamps: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
        bx, by = ray_trace(self.x, self.y, p)
        return evaluate_source(stamps, bx, by, p, self.stamp_width_per_scale)

    def image_from_stamps(self, stamps: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
        """PSF * I_lens (eq. 9 without noise), (B, H, W)."""
        return self._image(stamps.to(self.device), self._here(p)).to(stamps.device)

    def _image(self, stamps: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
        self.n_calls += 1
        return convolve_same(self._lensed_source(stamps, p), self.psf_kernel, method=self.conv_method)

    def __call__(self, p: dict[str, torch.Tensor], z: torch.Tensor) -> torch.Tensor:
        return self._image(self._decode(z), self._here(p)).to(z.device)

    def source_on_grid(self, stamps: torch.Tensor, p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor
                       ) -> torch.Tensor:
        """The unlensed source I_src evaluated at source-plane points x, y (h, w) -> (B, h, w)."""
        b = stamps.shape[0]
        x, y, p = x.to(self.device), y.to(self.device), self._here(p)
        return evaluate_source(stamps.to(self.device), x.expand(b, *x.shape), y.expand(b, *y.shape), p,
                               self.stamp_width_per_scale).to(stamps.device)
