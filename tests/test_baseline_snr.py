"""S/N of paper 003 eqs. 24-25 on cases computed by hand."""

import numpy as np
import pytest

from astrorim.baseline.snr import signal_mask, signal_to_noise


def test_threshold_only_case():
    img = np.zeros((10, 10))
    img[2, 3], img[5, 5], img[7, 1], img[8, 8] = 1.0, 2.0, 3.0, 4.0
    img[0, 0] = 0.4  # below sigma: not in the mask
    res = signal_to_noise(img, noise_sigma=0.5, pixel_scale_arcsec=0.04, blur_sigma_arcsec=0.0)
    assert res.mask_pixels == 4
    assert res.snr == pytest.approx((1 + 2 + 3 + 4) / (0.5 * np.sqrt(4)))  # = 10


def test_uniform_image_with_blur():
    # A uniform image stays uniform under the normalised blur ('nearest' edges): every pixel passes,
    # S/N = N c / (sigma sqrt(N)) = c sqrt(N) / sigma.
    img = np.full((32, 32), 0.3)
    res = signal_to_noise(img, noise_sigma=0.1, pixel_scale_arcsec=0.04)
    assert res.mask_pixels == 32 * 32
    assert res.snr == pytest.approx(0.3 * 32 / 0.1)


def test_blur_mask_uses_the_paper_width():
    # A single bright pixel of value A: blurred peak = A / (2 pi s^2) with s = 0.16"/0.04" = 4 pixels.
    img = np.zeros((41, 41))
    img[20, 20] = 100.0
    peak = 100.0 / (2 * np.pi * 16)
    assert signal_mask(img, peak * 0.99, 0.04).sum() >= 1
    assert signal_mask(img, peak * 1.02, 0.04).sum() == 0


def test_empty_mask_and_bad_inputs():
    with pytest.raises(ValueError, match="undefined"):
        signal_to_noise(np.zeros((8, 8)), 0.1, 0.04)
    with pytest.raises(ValueError):
        signal_to_noise(np.zeros((8, 8)), -1.0, 0.04)
