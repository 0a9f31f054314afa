"""Validation metrics batched in torch (run on the training device) against the evaluation protocol's scikit-image."""

import numpy as np
import pytest
import torch

from astrorim.evaluate.metrics import normalise, ssim_paper
from astrorim.train.metrics import image_metrics, image_metrics_torch, ssim_gaussian_torch

# float64 throughout: the two implementations differ only by summation order.
TOLERANCE = 1e-12


def _images(seed, n=5, npix=96):
    """Lensed-source-like test images: a ring plus blobs on an empty sky, and noisy, shifted, scaled
    reconstructions of them (some negative, some overshooting the peak)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:npix, :npix] - (npix - 1) / 2
    truth, recon = [], []
    for i in range(n):
        ring = np.exp(-0.5 * ((np.hypot(xx - rng.normal(0, 3), yy) - rng.uniform(10, 25)) / 2.0) ** 2)
        blob = np.exp(-0.5 * ((xx - rng.normal(0, 10)) ** 2 + (yy - rng.normal(0, 10)) ** 2) / 9.0)
        t = rng.uniform(5, 500) * (ring + 0.5 * blob)
        r = rng.uniform(0.7, 1.3) * np.roll(t, rng.integers(-2, 3), axis=1) + rng.normal(0, 0.05 * t.max(), t.shape)
        truth.append(t)
        recon.append(r)
    return np.stack(recon), np.stack(truth)


@pytest.mark.parametrize("seed", [0, 1])
def test_torch_ssim_and_mse_match_scikit_image(seed):
    pred, target = _images(seed)
    ref = image_metrics(pred, target)
    got = image_metrics_torch(torch.from_numpy(pred), torch.from_numpy(target))
    assert np.abs(got["ssim"].numpy() - ref["ssim"]).max() < TOLERANCE
    assert np.abs(got["mse01"].numpy() - ref["mse01"]).max() < TOLERANCE
    assert not got["bad_peak"].any()
    for i in range(len(pred)):  # and directly against the evaluation stage's function
        t_n, p_n, _ = normalise(target[i], pred[i])
        assert abs(float(ssim_gaussian_torch(torch.from_numpy(t_n)[None], torch.from_numpy(p_n)[None])[0])
                   - ssim_paper(t_n, p_n)) < TOLERANCE


def test_float32_inputs_are_scored_in_float64():
    pred, target = _images(2, n=3, npix=32)
    ref = image_metrics(pred.astype(np.float32), target.astype(np.float32))
    got = image_metrics_torch(torch.from_numpy(pred.astype(np.float32)), torch.from_numpy(target.astype(np.float32)))
    assert got["ssim"].dtype == torch.float64
    assert np.abs(got["ssim"].numpy() - ref["ssim"]).max() < TOLERANCE


def test_identical_images_score_one_and_a_peakless_truth_is_flagged():
    _, target = _images(3, n=2, npix=32)
    t = torch.from_numpy(target)
    perfect = image_metrics_torch(t, t)
    assert torch.allclose(perfect["ssim"], torch.ones(2, dtype=torch.float64)) and perfect["mse01"].abs().max() == 0
    empty = t.clone()
    empty[1] = 0.0
    flagged = image_metrics_torch(t, empty)
    assert flagged["bad_peak"].tolist() == [0.0, 1.0] and torch.isnan(flagged["ssim"][1])
    with pytest.raises(ValueError, match="smaller than the 11 x 11 SSIM window"):
        ssim_gaussian_torch(torch.zeros(1, 8, 8), torch.zeros(1, 8, 8))
