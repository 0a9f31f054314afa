"""Validation metrics (paper §3.5): MSE and SSIM exactly as the evaluation stage computes them.

The functions of :mod:`astrorim.evaluate.metrics` are used as they are, so that a checkpoint's validation
numbers and the evaluation tables mean the same thing: per example, both images are divided by the
truth's peak s = max(truth) (the reconstruction is not clipped), MSE is the pixel mean (eq. 52), SSIM
is scikit-image's with an 11 x 11 Gaussian window of sigma 1.5 (``gaussian_weights=True, sigma=1.5``),
the population covariance and ``data_range=1`` (Wang et al. 2004).

``image_metrics_torch`` computes the same two numbers batched on the tensors' device (validation on a GPU
would otherwise wait for the CPU's per-example scikit-image calls); it reproduces scikit-image to ~1e-12 in
float64 (tests/test_train_metrics.py).  The evaluation stage keeps scikit-image.

The normalisation is linear, so these numbers do not depend on the model's own flux normalisation
(both truth and reconstruction may be given in normalised or in ADU units).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from astrorim.evaluate.metrics import PAPER_SSIM_KWARGS, mse, normalise, ssim_paper

# scikit-image's Gaussian SSIM window: sigma 1.5 truncated at 3.5 sigma, i.e. radius int(3.5 * 1.5 + 0.5) = 5.
SSIM_SIGMA = PAPER_SSIM_KWARGS["sigma"]
SSIM_TRUNCATE = 3.5
SSIM_RADIUS = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)


def image_metrics(pred: np.ndarray, target: np.ndarray) -> dict[str, np.ndarray]:
    """Per-example 'mse01' and 'ssim' of (B, H, W) stacks on peak-normalised images."""
    pred = np.asarray(pred, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if pred.shape != target.shape or pred.ndim != 3:
        raise ValueError(f"pred and target must both be (B, H, W); got {pred.shape} and {target.shape}")
    out = {"mse01": np.empty(len(pred)), "ssim": np.empty(len(pred))}
    for i, (p, t) in enumerate(zip(pred, target)):
        t_n, p_n, _ = normalise(t, p)
        out["mse01"][i] = mse(t_n, p_n)
        out["ssim"][i] = ssim_paper(t_n, p_n)
    return out


def _gaussian_window_1d(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """scipy.ndimage's Gaussian kernel as scikit-image's SSIM uses it: sigma 1.5, radius 5, sum 1."""
    x = torch.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=torch.float64)
    w = torch.exp(-0.5 * (x / SSIM_SIGMA) ** 2)
    return (w / w.sum()).to(dtype=dtype, device=device)


def _filter_valid(images: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter (N, 1, H, W) -> (N, 1, H - 10, W - 10) at the window positions that lie
    wholly inside the image: exactly the pixels scikit-image averages over (it crops the filter's border)."""
    k = window.numel()
    out = F.conv2d(images, window.view(1, 1, 1, k))
    return F.conv2d(out, window.view(1, 1, k, 1))


def ssim_gaussian_torch(truth_n: torch.Tensor, recon_n: torch.Tensor) -> torch.Tensor:
    """Per-example SSIM (B,) of (B, H, W) images already in [0, 1] units: the paper's settings
    (Wang et al. 2004: 11 x 11 Gaussian window, sigma 1.5, population covariance, data_range 1,
    K1 0.01, K2 0.03), computed like ``skimage.metrics.structural_similarity``."""
    if truth_n.shape != recon_n.shape or truth_n.ndim != 3:
        raise ValueError(f"images must both be (B, H, W); got {tuple(truth_n.shape)} and {tuple(recon_n.shape)}")
    if min(truth_n.shape[1:]) < 2 * SSIM_RADIUS + 1:
        raise ValueError(f"images of {tuple(truth_n.shape[1:])} px are smaller than the 11 x 11 SSIM window")
    x, y = truth_n.unsqueeze(1), recon_n.unsqueeze(1)
    b = x.shape[0]
    window = _gaussian_window_1d(x.dtype, x.device)
    moments = _filter_valid(torch.cat([x, y, x * x, y * y, x * y]), window)
    ux, uy, uxx, uyy, uxy = moments.split(b)
    vx, vy, vxy = uxx - ux * ux, uyy - uy * uy, uxy - ux * uy
    data_range = PAPER_SSIM_KWARGS["data_range"]
    c1 = (PAPER_SSIM_KWARGS["K1"] * data_range) ** 2
    c2 = (PAPER_SSIM_KWARGS["K2"] * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.mean(dim=(1, 2, 3))


def image_metrics_torch(pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """``image_metrics`` batched on the tensors' device, in float64: per-example 'mse01' and 'ssim' (B,)
    and 'bad_peak' (B,), 1.0 where the truth has no finite positive peak (those examples' metrics are NaN;
    the caller raises, as :func:`astrorim.evaluate.metrics.normalise` would)."""
    if pred.shape != target.shape or pred.ndim != 3:
        raise ValueError(f"pred and target must both be (B, H, W); got {tuple(pred.shape)} and {tuple(target.shape)}")
    t = target.detach().to(torch.float64)
    p = pred.detach().to(torch.float64)
    peak = t.amax(dim=(1, 2))
    bad = ~(torch.isfinite(peak) & (peak > 0))
    scale = torch.where(bad, torch.full_like(peak, math.nan), peak).view(-1, 1, 1)
    t_n, p_n = t / scale, p / scale
    return {"mse01": (p_n - t_n).pow(2).mean(dim=(1, 2)), "ssim": ssim_gaussian_torch(t_n, p_n),
            "bad_peak": bad.to(torch.float64)}
