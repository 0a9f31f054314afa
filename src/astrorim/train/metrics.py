"""Validation metrics (paper §3.5): MSE and SSIM exactly as the evaluation stage computes them.

The functions of :mod:`astrorim.evaluate.metrics` are used as they are, so that a checkpoint's validation
numbers and the evaluation tables mean the same thing: per example, both images are divided by the
truth's peak s = max(truth) (the reconstruction is not clipped), MSE is the pixel mean (eq. 52), SSIM
is scikit-image's with an 11 x 11 Gaussian window of sigma 1.5 (``gaussian_weights=True, sigma=1.5``),
the population covariance and ``data_range=1`` (Wang et al. 2004).

The normalisation is linear, so these numbers do not depend on the model's own flux normalisation
(both truth and reconstruction may be given in normalised or in ADU units).
"""

from __future__ import annotations

import numpy as np

from astrorim.evaluate.metrics import mse, normalise, ssim_paper


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
