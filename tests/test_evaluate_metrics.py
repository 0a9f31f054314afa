"""Evaluation metrics: hand-computed cases, the two SSIM settings, normalisation and the published protocol."""

import numpy as np
import pytest
from scipy import ndimage

from astrorim.evaluate import metrics as M


def blob(n=48, x0=0.0, y0=0.0, sigma=4.0):
    yy, xx = np.mgrid[:n, :n] - (n - 1) / 2
    g = np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * sigma ** 2))
    return g / g.max()  # peak exactly 1


def structured(n=64, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:n, :n]
    base = 0.5 + 0.4 * np.sin(xx / 2.0) * np.cos(yy / 3.0)
    return base, np.clip(base + rng.normal(0, 0.08, base.shape), 0, None)


def wang_ssim(a, b, data_range=1.0, sigma=1.5, k1=0.01, k2=0.03):
    """Independent Wang et al. (2004) SSIM: Gaussian weights (11 taps), population covariance,
    mean over the positions where the 11 x 11 window fits (as scikit-image crops)."""
    f = lambda z: ndimage.gaussian_filter(z, sigma, truncate=3.5, mode="reflect")  # noqa: E731
    mx, my = f(a), f(b)
    vx, vy, cxy = f(a * a) - mx * mx, f(b * b) - my * my, f(a * b) - mx * my
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    return s[5:-5, 5:-5].mean()


def test_identical_images_give_ssim_one_and_mse_zero():
    t = blob() * 37.0  # arbitrary flux units
    m = M.example_metrics(t, t.copy(), observed=t * 2)
    assert m.ssim == pytest.approx(1.0, abs=1e-12)
    assert m.ssim_default == pytest.approx(1.0, abs=1e-12)
    assert m.ssim_source == pytest.approx(1.0, abs=1e-12)
    assert m.mse == 0.0
    assert m.norm_scale == pytest.approx(37.0)
    assert m.recon_max_n == pytest.approx(1.0)


def test_flat_images_match_the_ssim_formula_by_hand():
    """Constant images: sigma terms vanish, SSIM = (2ab + C1) / (a^2 + b^2 + C1) with C1 = (0.01 * 1)^2."""
    t = np.ones((32, 32)) * 5.0
    r = np.ones((32, 32)) * 2.5  # normalised: a = 1, b = 0.5
    expected = (2 * 1.0 * 0.5 + 1e-4) / (1.0 + 0.25 + 1e-4)
    m = M.example_metrics(t, r)
    assert m.ssim == pytest.approx(expected, rel=1e-9)
    assert m.ssim_default == pytest.approx(expected, rel=1e-9)
    assert m.mse == pytest.approx(0.25)


def test_known_shift_mse_equals_direct_sum():
    t = blob(sigma=3.0)
    r = np.roll(t, 2, axis=1)
    m = M.example_metrics(t, r)
    assert m.mse == pytest.approx(np.sum((r - t) ** 2) / t.size, rel=1e-12)
    assert 0.0 < m.ssim < 1.0


def test_paper_ssim_is_wang_et_al_gaussian_window():
    truth, noisy = structured()
    t, r, _ = M.normalise(truth, noisy)
    assert M.ssim_paper(t, r) == pytest.approx(wang_ssim(t, r), abs=1e-10)


def test_the_two_ssim_settings_differ_on_a_structured_image():
    truth, noisy = structured()
    m = M.example_metrics(truth, noisy)
    assert abs(m.ssim - m.ssim_default) > 0.01, (m.ssim, m.ssim_default)
    # the default (7x7 uniform, sample covariance) is *not* the Wang et al. computation
    t, r, _ = M.normalise(truth, noisy)
    assert abs(M.ssim_default(t, r) - wang_ssim(t, r)) > 0.01


def test_normalisation_is_by_truth_peak_and_never_clips():
    t = blob()
    r = 2.0 * t - 0.3  # overshoots the peak and goes negative
    for k in (1.0, 1e-3, 250.0):
        m = M.example_metrics(k * t, k * r)
        assert m.recon_max_n == pytest.approx(1.7)
        assert m.recon_min_n == pytest.approx(2.0 * t.min() - 0.3)
        assert m.mse == pytest.approx(np.mean((r - t) ** 2), rel=1e-10)  # scale-invariant, unclipped


def test_published_protocol_divides_by_max_of_observed_and_clips():
    t = blob()
    r = 1.5 * t - 0.2
    observed = 4.0 * t
    ssim_pub, mse_pub = M.published_protocol_metrics(t, r, observed)
    s = 4.0
    expected = np.mean((np.clip(r / s, 0, 1) - t / s) ** 2)
    assert mse_pub == pytest.approx(expected, rel=1e-12)
    assert mse_pub != pytest.approx(M.example_metrics(t, r).mse)
    assert ssim_pub == pytest.approx(M.ssim_default(t / s, np.clip(r / s, 0, 1)))


def test_source_region_ssim_ignores_the_empty_sky():
    t = blob(n=96, sigma=3.0)
    r = t.copy()
    r[40:56, 40:56] += 0.3  # damage only the source
    m = M.example_metrics(t, r)
    assert m.ssim_source < m.ssim - 0.05


def test_bad_inputs_are_named():
    t = blob()
    with pytest.raises(M.NormalisationError, match="positive peak"):
        M.example_metrics(np.zeros_like(t), t)
    bad = t.copy()
    bad[3, 3] = np.nan
    with pytest.raises(ValueError, match="shard-00000.h5#7"):
        M.batch_metrics(t[None], bad[None], labels=["shard-00000.h5#7"])
    with pytest.raises(ValueError, match="shape"):
        M.example_metrics(t, t[:-1])
