"""The regularised linear inversion for the source and the lens-light amplitudes at fixed lens.

Unknowns z = (s, a): the source s on the model's npix x npix grid (spanning the field, as in
:mod:`astrorim.model.forward`) and the amplitudes a of the lens-light basis (Sérsic n = 1, 4 after
the PSF, and a flat sky).  With A z = K * (W_lens s) + sum_i a_i G_i the data model, W the inverse
noise variance (0 on masked pixels) and R a gradient regulariser,

    H z = (A^T W A + lambda R) z = A^T W y,
    R = D^T D + eps I on the source (D: forward differences between row and column neighbours,
        none across the grid edge),  R = eps_a I on the amplitudes (a vague prior).

The source grid spans [-R, R] of the source plane (R = ``source_radius`` of
:class:`astrorim.fit.FitConfig`, 0.6 of the half field: pixels 0.6 x the image's) and is confined to
its inscribed disk (``support``): outside it s = 0 (those unknowns get the identity times lambda in H,
decoupled).  Without the disk a free-form source over the whole field absorbs the lens light and the
arcs alike at small b, and the evidence prefers "no lensing"; with image-sized source pixels a
compact source is under-resolved and the lens ellipticity and shear come out ~30 % too large on a
noiseless lenstronomy lens (tests/test_fit.py).

H is solved by Jacobi-preconditioned conjugate gradients, batched (one system per example) and
warm-started from the previous lens step.  A and A^T are the exact forward operator of
:class:`astrorim.model.forward.BoundForwardOperator` and its adjoint, so H is symmetric positive
definite.  The Jacobi diagonal drops the cross terms of the PSF (diag of M^T K^T W K M with
M the bilinear warp approximated by (M o M)^T (K o K) * W); it only preconditions.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

from astrorim.evaluate.classical import gradient_normal
from astrorim.model.psf import FFT_THRESHOLD_PIX, _fast_size, convolve_same, correlate_same
from astrorim.model.warp import BilinearWarp

# Relative ridge on the source (keeps R positive definite; the gradient prior leaves the mean free).
SOURCE_RIDGE = 1e-4
# Absolute ridge on the lens-light amplitudes relative to lambda (a very wide Gaussian prior).
AMPLITUDE_RIDGE = 1e-6


def gradient_penalty(s: torch.Tensor) -> torch.Tensor:
    """s^T D^T D s per example (B,)."""
    return ((s[..., :, 1:] - s[..., :, :-1]) ** 2).sum(dim=(-1, -2)) + \
        ((s[..., 1:, :] - s[..., :-1, :]) ** 2).sum(dim=(-1, -2))


def regulariser_diagonal(h: int, w: int, dtype, device) -> torch.Tensor:
    """diag(D^T D) (H, W): the number of neighbours of each pixel."""
    d = torch.full((h, w), 4.0, dtype=dtype, device=device)
    d[0, :] -= 1
    d[-1, :] -= 1
    d[:, 0] -= 1
    d[:, -1] -= 1
    return d


def source_support(npix: int, radius: float, dtype=torch.float64) -> torch.Tensor:
    """(npix, npix) 1/0 mask of source pixels whose centre lies within ``radius`` of the origin."""
    from astrorim.model.grid import normalised_grid
    x, y = normalised_grid(npix, dtype=dtype)
    return ((x * x + y * y) <= radius * radius).to(dtype)


@functools.lru_cache(maxsize=8)
def _log_det_supported_laplacian(npix: int, radius: float) -> float:
    """log det of (D^T D + eps I) restricted to the support (its principal submatrix), by sparse LU."""
    import numpy as np
    import scipy.sparse as sp
    from scipy.sparse.linalg import splu
    keep = source_support(npix, radius).numpy().astype(bool).ravel()
    path = sp.diags([-np.ones(npix - 1), 2 * np.ones(npix), -np.ones(npix - 1)], [-1, 0, 1]).tolil()
    path[0, 0] = path[-1, -1] = 1.0
    eye = sp.identity(npix)
    lap = (sp.kron(eye, path) + sp.kron(path, eye)).tocsc()
    sub = lap[keep][:, keep] + SOURCE_RIDGE * sp.identity(int(keep.sum()))
    lu = splu(sp.csc_matrix(sub))
    return float(np.log(np.abs(lu.U.diagonal())).sum() + np.log(np.abs(lu.L.diagonal())).sum())


def log_det_prior(npix: int, radius: float | None, lam: torch.Tensor, n_amp: int) -> torch.Tensor:
    """log det of the prior precision (B,) on the unknowns that the support leaves free (the
    masked ones are decoupled identically in H and in the prior, so they cancel in the evidence)."""
    if radius is None:
        return log_det_regulariser(npix, npix, lam, n_amp)
    n_free = int(source_support(npix, radius).sum())
    lam = lam.to(torch.float64)
    return _log_det_supported_laplacian(npix, float(radius)) + n_free * torch.log(lam) + \
        n_amp * torch.log(lam * AMPLITUDE_RIDGE)


def log_det_regulariser(h: int, w: int, lam: torch.Tensor, n_amp: int) -> torch.Tensor:
    """Exact log det(lambda R) (B,) of the full prior precision (source and amplitudes).

    D^T D is the Laplacian of the h x w grid graph, L_h (x) I + I (x) L_w, with path-graph
    eigenvalues 4 sin^2(pi k / 2n), k = 0..n-1, so its spectrum is known in closed form.
    """
    kh = torch.arange(h, dtype=torch.float64)
    kw = torch.arange(w, dtype=torch.float64)
    eig = (4 * torch.sin(math.pi * kh / (2 * h)) ** 2)[:, None] + (4 * torch.sin(math.pi * kw / (2 * w)) ** 2)[None]
    logdet_r = torch.log(eig + SOURCE_RIDGE).sum()
    lam = lam.to(torch.float64)
    return logdet_r + h * w * torch.log(lam) + n_amp * torch.log(lam * AMPLITUDE_RIDGE)


class CachedConvolution:
    """:func:`astrorim.model.psf.convolve_same` and its transpose with the kernel's spectrum computed
    once (the FFT path repeats the same arithmetic, so the results are bit-identical; the CG loop
    otherwise spends a third of its FFTs on the unchanging kernel)."""

    def __init__(self, kernel: torch.Tensor, shape: tuple[int, int]):
        self.kernel = kernel
        h, w = shape
        self.size = kernel.shape[-1]
        self.fft = max(h, w) > FFT_THRESHOLD_PIX
        if self.fft:
            self.padded = (_fast_size(h + self.size - 1), _fast_size(w + self.size - 1))
            self.spec = torch.fft.rfft2(kernel, s=self.padded)
            self.spec_flipped = torch.fft.rfft2(kernel.flip(-1, -2), s=self.padded)

    def _apply(self, images: torch.Tensor, spec: torch.Tensor) -> torch.Tensor:
        h, w = images.shape[-2:]
        full = torch.fft.irfft2(torch.fft.rfft2(images, s=self.padded) * spec, s=self.padded)
        c = self.size // 2
        return full[..., c:c + h, c:c + w]

    def convolve(self, images: torch.Tensor) -> torch.Tensor:
        if not self.fft:
            return convolve_same(images, self.kernel, "direct")
        return self._apply(images, self.spec)

    def correlate(self, images: torch.Tensor) -> torch.Tensor:
        if not self.fft:
            return correlate_same(images, self.kernel, "direct")
        return self._apply(images, self.spec_flipped)


@dataclass
class LinearSystem:
    """H = A^T W A + lambda R for one batch of lens models (see the module docstring)."""

    warp: BilinearWarp
    kernel: torch.Tensor          # (K, K) or (B, K, K)
    light: torch.Tensor           # (B, n_amp, H, W): PSF-convolved Sérsic images and the flat sky
    weight: torch.Tensor          # (B, H, W) inverse variance, 0 where masked
    lam: torch.Tensor             # (B,)
    support: torch.Tensor | None = None  # (H, W) 1/0: source pixels allowed to be non-zero

    def __post_init__(self):
        self.conv = CachedConvolution(self.kernel, (self.warp.height, self.warp.width))

    @property
    def shape(self) -> tuple[int, int]:
        return self.warp.source_shape

    @property
    def n_amp(self) -> int:
        return self.light.shape[1]

    @property
    def size(self) -> int:
        h, w = self.shape
        return h * w + self.n_amp

    def split(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, w = self.shape
        return z[:, :h * w].reshape(-1, h, w), z[:, h * w:]

    def join(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return torch.cat([s.reshape(s.shape[0], -1), a], dim=1)

    def lensed(self, s: torch.Tensor) -> torch.Tensor:
        return self.conv.convolve(self.warp.apply(s))

    def _masked(self, s: torch.Tensor) -> torch.Tensor:
        return s if self.support is None else s * self.support

    def apply_A(self, z: torch.Tensor) -> torch.Tensor:
        s, a = self.split(z)
        return self.lensed(self._masked(s)) + (a[:, :, None, None] * self.light).sum(dim=1)

    def apply_At(self, r: torch.Tensor) -> torch.Tensor:
        s = self._masked(self.warp.transpose(self.conv.correlate(r)))
        a = (self.light * r[:, None]).sum(dim=(-1, -2))
        return self.join(s, a)

    def prior_apply(self, z: torch.Tensor) -> torch.Tensor:
        s, a = self.split(z)
        lam = self.lam.view(-1, 1, 1)
        src = lam * (gradient_normal(self._masked(s)) + SOURCE_RIDGE * s)
        if self.support is not None:
            src = self.support * src + (1 - self.support) * lam * s
        return self.join(src,
                         self.lam.view(-1, 1) * AMPLITUDE_RIDGE * a)

    def matvec(self, z: torch.Tensor) -> torch.Tensor:
        return self.apply_At(self.weight * self.apply_A(z)) + self.prior_apply(z)

    def rhs(self, y: torch.Tensor) -> torch.Tensor:
        return self.apply_At(self.weight * y)

    def jacobi_diagonal(self) -> torch.Tensor:
        """Approximate diag(H) (B, N) for preconditioning."""
        h, w = self.shape
        wk = correlate_same(self.weight, self.kernel * self.kernel, "auto")
        vals = wk.reshape(wk.shape[0], 1, -1) * self.warp.weights ** 2
        src = torch.zeros(wk.shape[0], h * w, dtype=wk.dtype, device=wk.device)
        src = src.scatter_add(1, self.warp.index, vals.reshape(wk.shape[0], -1)).view(-1, h, w)
        reg = regulariser_diagonal(h, w, wk.dtype, wk.device) + SOURCE_RIDGE
        src = src + self.lam.view(-1, 1, 1) * reg
        if self.support is not None:
            src = self.support * src + (1 - self.support) * self.lam.view(-1, 1, 1)
        amp = (self.weight[:, None] * self.light ** 2).sum(dim=(-1, -2)) + \
            self.lam.view(-1, 1) * AMPLITUDE_RIDGE
        return self.join(src, amp)

    def penalty(self, z: torch.Tensor) -> torch.Tensor:
        """z^T (lambda R) z per example (B,)."""
        s, a = self.split(z)
        s = self._masked(s)
        return self.lam * (gradient_penalty(s) + SOURCE_RIDGE * (s * s).sum(dim=(-1, -2))
                           + AMPLITUDE_RIDGE * (a * a).sum(dim=1))


def conjugate_gradient(matvec, b: torch.Tensor, x0: torch.Tensor, diag: torch.Tensor,
                       max_iter: int, rtol: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched Jacobi-preconditioned CG for H x = b (rows of b are independent systems).

    Runs at most ``max_iter`` iterations; examples whose residual fell below rtol |b| stop
    updating.  Returns (x, relative residual norm (B,)).
    """
    inv_diag = 1.0 / diag
    x = x0.clone()
    r = b - matvec(x)
    z = inv_diag * r
    p = z.clone()
    rz = (r * z).sum(dim=1)
    bnorm = b.norm(dim=1).clamp_min(torch.finfo(b.dtype).tiny)
    for _ in range(max_iter):
        active = r.norm(dim=1) > rtol * bnorm
        if not bool(active.any()):
            break
        hp = matvec(p)
        php = (p * hp).sum(dim=1)
        alpha = torch.where(active & (php > 0), rz / torch.where(php > 0, php, torch.ones_like(php)),
                            torch.zeros_like(php))
        x = x + alpha[:, None] * p
        r = r - alpha[:, None] * hp
        z = inv_diag * r
        rz_new = (r * z).sum(dim=1)
        beta = torch.where(rz > 0, rz_new / torch.where(rz > 0, rz, torch.ones_like(rz)), torch.zeros_like(rz))
        p = z + beta[:, None] * p
        rz = rz_new
    return x, r.norm(dim=1) / bnorm
