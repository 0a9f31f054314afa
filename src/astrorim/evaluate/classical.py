"""Classical methods evaluated on the same test examples and with the same metrics as AstroRIM.

All three return source estimates in the simulator's flux units [ADU per pixel], so that the
evaluation's normalisation (divide by the truth's peak, see metrics.py) treats them exactly like
the model's reconstructions.

(a) / (b) Back-projection x0 = a F^T (y - b_bg): exactly the RIM's starting point
    (``astrorim.model.rim.RIM.initial_source``), the adjoint of the forward operator applied to the
    observation, with the one scalar a per example that best reproduces the data in least squares
    (a raw F^T y has no flux unit: a source pixel that n image pixels map onto collects n times its
    surface brightness; a uses only the data, never the truth).  (a) uses the encoder's parameters and
    the model's learned PSF and background -- "AstroRIM with zero RIM steps"; (b) the simulator's true
    parameters and true per-example PSF (no background term: the shards are sky-subtracted).  Both see
    the raw observation, lens light included, as the RIM does.

(c) Regularised linear inversion with the true lens and the true PSF:

        x = argmin ||F x - (y - L)||^2 + lam (||D x||^2 + eps ||x||^2)

    with D the forward-difference gradient (Neumann boundary) and eps = 1e-3 keeping the system
    positive definite; solved by batched Jacobi-preconditioned conjugate gradients on
    (F^T F + lam (D^T D + eps I)) x = F^T (y - L) with the project's exact adjoint, to a relative
    residual of 1e-5: the sky pixels, which only the regulariser constrains, converge slowly, and a
    looser 1e-3 moves the whole-image SSIM by up to 0.06 (1e-5: within 0.003 of a 1e-6 solve on
    v3/v6 examples).  L is the true
    lens light (noiseless observation minus noiseless lensed source, stored in the shards'
    diagnostics) when available -- a classical inversion models the lens light, and giving it the
    truth keeps the comparison about the source inversion; without diagnostics L = 0 and the result
    is labelled so.  ``lam`` is chosen per simulator version on validation examples
    (``tune_lambda``): the value of a fixed logarithmic grid that maximises the mean SSIM (paper
    settings) there.  No clipping, no positivity constraint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from scipy.fft import next_fast_len

from astrorim.evaluate.metrics import normalise, ssim_paper
from astrorim.model.forward import BoundForwardOperator, ConditionalForwardOperator
from astrorim.model.rim import RIM
from astrorim.params import PARAMETER_NAMES

TRUTH_PARAM_PREFIX = "norm_"
DEFAULT_LAMBDA_GRID = tuple(float(v) for v in np.logspace(-2, 1, 7))  # 0.01 ... 10, half decades
GRADIENT_EPS = 1e-3


def true_params(truth: pd.DataFrame, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """The nine normalised lens parameters from a shard's truth table (columns ``norm_<name>``)."""
    missing = [TRUTH_PARAM_PREFIX + n for n in PARAMETER_NAMES if TRUTH_PARAM_PREFIX + n not in truth.columns]
    if missing:
        raise KeyError(f"truth table lacks columns {missing}")
    return {n: torch.tensor(np.array(truth[TRUTH_PARAM_PREFIX + n], dtype=np.float64), dtype=dtype)
            for n in PARAMETER_NAMES}


def true_operator(truth: pd.DataFrame, psf: np.ndarray, npix: int) -> BoundForwardOperator:
    """F with the simulator's true lens parameters and true per-example PSF, no background."""
    op = ConditionalForwardOperator(npix=npix, background=0.0)
    with torch.no_grad():
        return op.bind(true_params(truth), psf_kernel=torch.as_tensor(np.asarray(psf, np.float32)))


class CachedFFTOperator:
    """The linear part of a bound operator with the PSF's Fourier transforms computed once.

    Same numbers as ``BoundForwardOperator.linear`` / ``.adjoint`` (zero-padded 'same' FFT
    convolution, as ``astrorim.model.psf._convolve_fft``; checked in tests), but an iterative solver
    that applies F^T F hundreds of times saves two of the six FFTs per application.
    """

    def __init__(self, operator: BoundForwardOperator, shape: tuple[int, int]):
        self.warp = operator.warp
        self.dtype = operator.dtype
        kernel = operator.kernel.to(self.dtype)
        h, w = shape
        k = kernel.shape[-1]
        self.crop = (k // 2, h, w)
        # any length >= H + K - 1 makes the circular convolution equal the linear one
        self.size = (next_fast_len(h + k - 1, real=True), next_fast_len(w + k - 1, real=True))
        self.k_hat = torch.fft.rfft2(kernel, s=self.size)
        self.k_flip_hat = torch.fft.rfft2(kernel.flip(-1, -2), s=self.size)

    def _conv(self, x: torch.Tensor, k_hat: torch.Tensor) -> torch.Tensor:
        c, h, w = self.crop
        full = torch.fft.irfft2(torch.fft.rfft2(x, s=self.size) * k_hat, s=self.size)
        return full[..., c:c + h, c:c + w]

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv(self.warp.apply(x.to(self.dtype)), self.k_hat)

    def adjoint(self, r: torch.Tensor) -> torch.Tensor:
        return self.warp.transpose(self._conv(r.to(self.dtype), self.k_flip_hat))


def backprojection(operator: BoundForwardOperator, y: torch.Tensor) -> torch.Tensor:
    """x0 = a F^T (y - b_bg) with a least-squares a per example (the RIM's x0, see the module docstring)."""
    with torch.no_grad():
        return RIM.initial_source(y.to(operator.dtype), operator)


def gradient_normal(x: torch.Tensor) -> torch.Tensor:
    """D^T D x for the forward-difference gradient with Neumann boundary (a graph Laplacian)."""
    out = torch.zeros_like(x)
    dh = x[..., :, 1:] - x[..., :, :-1]
    dv = x[..., 1:, :] - x[..., :-1, :]
    out[..., :, 1:] += dh
    out[..., :, :-1] -= dh
    out[..., 1:, :] += dv
    out[..., :-1, :] -= dv
    return out


@dataclass
class CGResult:
    x: torch.Tensor
    iterations: int
    relative_residual: torch.Tensor  # (B,) ||b - A x|| / ||b|| at the end


def conjugate_gradient(apply_a: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor,
                       x0: torch.Tensor | None = None, max_iter: int = 400, tol: float = 1e-5,
                       preconditioner: torch.Tensor | None = None) -> CGResult:
    """Batched (preconditioned) CG for symmetric positive definite A; each example stops at ||r|| <= tol ||b||.

    ``preconditioner``: elementwise inverse of a positive diagonal approximation of A (Jacobi), or None.
    """
    minv = torch.ones_like(b) if preconditioner is None else preconditioner
    x = torch.zeros_like(b) if x0 is None else x0.clone()
    r = b - apply_a(x)
    z = minv * r
    p = z.clone()
    rz = (r * z).flatten(1).sum(1)
    bnorm = b.flatten(1).norm(dim=1).clamp_min(1e-30)
    it = 0
    for it in range(1, max_iter + 1):
        active = r.flatten(1).norm(dim=1) > tol * bnorm
        if not bool(active.any()):
            it -= 1
            break
        ap = apply_a(p)
        pap = (p * ap).flatten(1).sum(1)
        alpha = torch.where(active & (pap > 0), rz / pap.clamp_min(1e-30), torch.zeros_like(rz))
        x = x + alpha.view(-1, 1, 1) * p
        r = r - alpha.view(-1, 1, 1) * ap
        z = minv * r
        rz_new = (r * z).flatten(1).sum(1)
        beta = torch.where(active, rz_new / rz.clamp_min(1e-30), torch.zeros_like(rz))
        p = z + beta.view(-1, 1, 1) * p
        rz = rz_new
    return CGResult(x=x, iterations=it, relative_residual=r.flatten(1).norm(dim=1) / bnorm)


def _neighbour_count(shape: tuple[int, int], dtype: torch.dtype) -> torch.Tensor:
    """Diagonal of D^T D: the number of 4-neighbours of each pixel (2 in corners, 3 on edges, 4 inside)."""
    d = torch.full(shape, 4.0, dtype=dtype)
    d[0, :] -= 1
    d[-1, :] -= 1
    d[:, 0] -= 1
    d[:, -1] -= 1
    return d


def tikhonov(operator: BoundForwardOperator, y: torch.Tensor, lam: float | torch.Tensor,
             eps: float = GRADIENT_EPS, max_iter: int = 400, tol: float = 1e-5,
             x0: torch.Tensor | None = None) -> CGResult:
    """Solve (F^T F + lam (D^T D + eps I)) x = F^T y by Jacobi-preconditioned CG; ``lam`` scalar or (B,).

    Preconditioner: 1 / (F^T F 1 + lam (diag D^T D + eps)) -- the row sums of the non-negative F^T F
    (a bound on its diagonal) plus the exact diagonal of the regulariser; it changes the iterations
    needed, not the solution.
    """
    with torch.no_grad():
        y = y.to(operator.dtype)
        operator = CachedFFTOperator(operator, tuple(y.shape[-2:]))
        lam_t = torch.as_tensor(lam, dtype=y.dtype).reshape(-1, 1, 1)
        if lam_t.shape[0] not in (1, y.shape[0]):
            raise ValueError(f"lam has {lam_t.shape[0]} values for a batch of {y.shape[0]}")

        def apply_a(x):
            return operator.adjoint(operator.linear(x)) + lam_t * (gradient_normal(x) + eps * x)

        row_sums = operator.adjoint(operator.linear(torch.ones_like(y))).clamp_min(0)
        diag = row_sums + lam_t * (_neighbour_count(tuple(y.shape[-2:]), y.dtype) + eps)
        return conjugate_gradient(apply_a, operator.adjoint(y), x0=x0, max_iter=max_iter, tol=tol,
                                  preconditioner=1.0 / diag)


def lens_light(diagnostics: dict[str, np.ndarray]) -> np.ndarray | None:
    """True lens light = noiseless observation - noiseless lensed source, or None without diagnostics."""
    if "noiseless" in diagnostics and "lensed_source_noiseless" in diagnostics:
        return np.asarray(diagnostics["noiseless"], np.float64) - np.asarray(diagnostics["lensed_source_noiseless"],
                                                                              np.float64)
    return None


def tune_lambda(examples: Sequence[tuple[BoundForwardOperator, np.ndarray, np.ndarray]],
                grid: Sequence[float] = DEFAULT_LAMBDA_GRID, max_iter: int = 400, tol: float = 1e-5,
                progress: Callable | None = None) -> tuple[float, pd.DataFrame]:
    """Pick lam from ``grid`` maximising the mean paper SSIM on validation ``examples``.

    ``examples``: (true operator, data y - L, truth source) per validation batch.  The grid is solved
    from the largest lam down, each solve warm-started from the previous solution (continuation; it
    changes iterations, not solutions).  Returns the chosen lam and the scan (lam, mean SSIM, n,
    mean CG iterations), in increasing lam; ties go to the larger lam.
    """
    if not examples:
        raise ValueError("tune_lambda needs at least one validation batch")
    grid = sorted({float(v) for v in grid}, reverse=True)
    if not grid or min(grid) <= 0:
        raise ValueError(f"lam grid must hold positive values, got {grid}")
    scores: dict[float, list[float]] = {lam: [] for lam in grid}
    iterations: dict[float, list[int]] = {lam: [] for lam in grid}
    for op, data, truth in progress(examples) if progress else examples:
        x = None
        for lam in grid:
            res = tikhonov(op, torch.as_tensor(data), lam, max_iter=max_iter, tol=tol, x0=x)
            x = res.x
            est = x.double().numpy()
            iterations[lam].append(res.iterations)
            for i in range(len(truth)):
                t, r, _ = normalise(truth[i], est[i])
                scores[lam].append(ssim_paper(t, r))
    scan = pd.DataFrame([{"lam": lam, "ssim_mean": float(np.mean(scores[lam])), "n": len(scores[lam]),
                          "cg_iterations_mean": float(np.mean(iterations[lam]))} for lam in sorted(grid)])
    best = scan["ssim_mean"].max()
    chosen = float(scan.loc[np.isclose(scan["ssim_mean"], best, rtol=0, atol=1e-12), "lam"].max())
    return chosen, scan


def finite_or_raise(x: np.ndarray, what: str) -> np.ndarray:
    if not np.all(np.isfinite(x)):
        bad = int((~np.isfinite(x)).reshape(len(x), -1).any(1).sum())
        raise FloatingPointError(f"{what}: {bad} of {len(x)} estimates contain NaN or inf")
    return x


__all__ = ["true_params", "true_operator", "backprojection", "gradient_normal", "conjugate_gradient",
           "tikhonov", "lens_light", "tune_lambda", "DEFAULT_LAMBDA_GRID", "CGResult"]
