"""PSF model of the forward operator: a global learnable Moffat core plus a learned residual kernel.

K = (M(FWHM, beta) + R) / sum(M + R), with M a point-sampled Moffat profile
[1 + (r / alpha)^2]^(-beta), alpha = FWHM / (2 sqrt(2^(1/beta) - 1)) (paper eq. 23), FWHM [pix] and
beta stored as logs (eq. 24-25) and R a (21, 21) residual initialised at zero (eq. 22).  The sum
normalisation keeps the PSF flux-conserving without clipping the residual (no ReLU).

Convolution is exact zero-padded 'same' convolution, done by FFT above 64 px (paper eq. 26) and
by conv2d below; both give the same numbers (tests/test_model_psf.py).  The transpose of a
'same' convolution with an odd kernel is the 'same' correlation, i.e. convolution with the
flipped kernel.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

FFT_THRESHOLD_PIX = 64


def physics_dtype(t: torch.Tensor) -> torch.dtype:
    """float64 stays float64 (for adjoint tests); everything else is computed in float32."""
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def moffat_alpha(fwhm_pix, beta):
    """Moffat core width alpha [pix] realising ``fwhm_pix`` for power index ``beta``."""
    if isinstance(fwhm_pix, torch.Tensor) or isinstance(beta, torch.Tensor):
        return fwhm_pix / (2.0 * torch.sqrt(torch.pow(2.0, 1.0 / beta) - 1.0))
    return fwhm_pix / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))


def moffat_profile(r_pix: torch.Tensor, fwhm_pix, beta) -> torch.Tensor:
    """Unnormalised Moffat profile [1 + (r/alpha)^2]^-beta (1 at r = 0, 0.5 at r = FWHM/2)."""
    alpha = moffat_alpha(fwhm_pix, beta)
    return torch.pow(1.0 + (r_pix / alpha) ** 2, -beta)


def moffat_kernel(fwhm_pix, beta, size: int, *, dtype: torch.dtype = torch.float32,
                  device: torch.device | str | None = None) -> torch.Tensor:
    """(size, size) Moffat kernel sampled at pixel centres, centred on the middle pixel, sum 1."""
    if size % 2 != 1 or size < 1:
        raise ValueError(f"PSF kernel size must be a positive odd integer, got {size}")
    c = torch.arange(size, dtype=dtype, device=device) - (size // 2)
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    k = moffat_profile(torch.sqrt(xx * xx + yy * yy), fwhm_pix, beta)
    return k / k.sum()


def _check_kernel(kernel: torch.Tensor, batch: int) -> None:
    if kernel.ndim not in (2, 3) or kernel.shape[-1] != kernel.shape[-2] or kernel.shape[-1] % 2 != 1:
        raise ValueError(f"PSF kernel must be (K, K) or (B, K, K) with odd K; got {tuple(kernel.shape)}")
    if kernel.ndim == 3 and kernel.shape[0] != batch:
        raise ValueError(f"per-example PSF kernels have batch {kernel.shape[0]}, images have {batch}")


def _fast_size(n: int) -> int:
    """Smallest integer >= n whose only prime factors are 2, 3 and 5 (fast FFT lengths)."""
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


def _convolve_direct(images: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    b, h, w = images.shape
    k = kernel.shape[-1]
    flipped = kernel.flip(-1, -2)  # conv2d correlates; flipping makes it a convolution
    if kernel.ndim == 2:
        out = F.conv2d(images.unsqueeze(1), flipped.view(1, 1, k, k), padding=k // 2)
        return out.squeeze(1)
    out = F.conv2d(images.unsqueeze(0), flipped.unsqueeze(1), padding=k // 2, groups=b)
    return out.squeeze(0)


def _convolve_fft(images: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    b, h, w = images.shape
    k = kernel.shape[-1]
    # Padding to >= H + K - 1 makes the circular convolution equal the linear one.
    ph, pw = _fast_size(h + k - 1), _fast_size(w + k - 1)
    fi = torch.fft.rfft2(images, s=(ph, pw))
    fk = torch.fft.rfft2(kernel, s=(ph, pw))
    full = torch.fft.irfft2(fi * fk, s=(ph, pw))
    c = k // 2
    return full[..., c:c + h, c:c + w]


def convolve_same(images: torch.Tensor, kernel: torch.Tensor, method: str = "auto") -> torch.Tensor:
    """Zero-padded 'same' convolution of (B, H, W) images with a (K, K) or (B, K, K) kernel.

    ``method``: 'fft', 'direct' or 'auto' (FFT when max(H, W) > 64).  Runs in float32 (float64
    if the images are float64) with autocast disabled, whatever the caller's autocast state.
    """
    if images.ndim != 3:
        raise ValueError(f"images must be (B, H, W), got {tuple(images.shape)}")
    _check_kernel(kernel, images.shape[0])
    if method == "auto":
        method = "fft" if max(images.shape[-2:]) > FFT_THRESHOLD_PIX else "direct"
    if method not in ("fft", "direct"):
        raise ValueError(f"method must be 'auto', 'fft' or 'direct', got {method!r}")
    dtype = physics_dtype(images)
    with torch.autocast(device_type=images.device.type, enabled=False):
        images = images.to(dtype)
        kernel = kernel.to(dtype)
        return _convolve_fft(images, kernel) if method == "fft" else _convolve_direct(images, kernel)


def correlate_same(images: torch.Tensor, kernel: torch.Tensor, method: str = "auto") -> torch.Tensor:
    """Transpose of :func:`convolve_same` (correlation = convolution with the flipped kernel)."""
    return convolve_same(images, kernel.flip(-1, -2), method=method)


class LearnedPSF(nn.Module):
    """Global PSF: learnable Moffat (FWHM [pix], beta) plus a learnable residual kernel.

    Parameters
    ----------
    fwhm_pix, beta:
        Initial Moffat FWHM in pixels and power index (both stored as logs).
    kernel_size:
        Odd size of the Moffat stamp and of the residual kernel.
    method:
        Convolution method, see :func:`convolve_same`.
    """

    def __init__(self, fwhm_pix: float = 2.5, beta: float = 4.0, kernel_size: int = 21,
                 method: str = "auto"):
        super().__init__()
        if fwhm_pix <= 0 or beta <= 0:
            raise ValueError(f"Moffat fwhm_pix and beta must be positive, got {fwhm_pix}, {beta}")
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.kernel_size = int(kernel_size)
        self.method = method
        self.log_fwhm_pix = nn.Parameter(torch.tensor(math.log(fwhm_pix)))
        self.log_beta = nn.Parameter(torch.tensor(math.log(beta)))
        self.residual = nn.Parameter(torch.zeros(kernel_size, kernel_size))

    @property
    def fwhm_pix(self) -> torch.Tensor:
        return self.log_fwhm_pix.exp()

    @property
    def beta(self) -> torch.Tensor:
        return self.log_beta.exp()

    def kernel(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The (K, K) PSF kernel, normalised to unit sum."""
        with torch.autocast(device_type=self.residual.device.type, enabled=False):
            m = moffat_kernel(self.fwhm_pix.to(dtype), self.beta.to(dtype), self.kernel_size,
                              dtype=dtype, device=self.residual.device)
            k = m + self.residual.to(dtype)
            return k / k.sum()

    def smoothness_penalty(self) -> torch.Tensor:
        """Paper eq. 46: sum of squared neighbour differences of the residual kernel."""
        r = self.residual
        return ((r[1:, :] - r[:-1, :]) ** 2).sum() + ((r[:, 1:] - r[:, :-1]) ** 2).sum()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Convolve (B, H, W) images with the learned kernel."""
        return convolve_same(images, self.kernel(physics_dtype(images)), self.method)
