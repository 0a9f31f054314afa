"""Flux-conserving area-weighted rebinning: totals, variances, PSF centring."""

import numpy as np
import pytest

from astrorim.real.resample import coverage_fraction, overlap_matrix, rebin_flux, rebin_psf, rebin_variance


@pytest.mark.parametrize("ratio", [2.0, 1.6, 1.25, 0.8, 0.5, 2.5 / 0.7])
def test_total_flux_preserved(ratio):
    rng = np.random.default_rng(1)
    img = rng.exponential(1.0, size=(57, 63))
    # An output field larger than the image in both axes, so every input pixel is inside it.
    n_out = int(np.ceil(max(img.shape) / ratio)) + 4
    out = rebin_flux(img, (28.3, 30.7), n_out, (ratio, ratio))
    assert out.sum() == pytest.approx(img.sum(), rel=1e-6)


def test_non_square_ratios_preserve_flux():
    rng = np.random.default_rng(2)
    img = rng.random((40, 50))
    out = rebin_flux(img, (19.5, 24.5), 40, (1.3, 2.1))
    assert out.sum() == pytest.approx(img.sum(), rel=1e-6)


def test_integer_block_sum_matches_reshape():
    rng = np.random.default_rng(3)
    img = rng.random((48, 48))
    # Centre on the corner between pixels 23 and 24: 2x2 blocks align with the input pixels.
    out = rebin_flux(img, (23.5, 23.5), 24, (2.0, 2.0))
    expected = img.reshape(24, 2, 24, 2).sum(axis=(1, 3))
    np.testing.assert_allclose(out, expected, rtol=1e-12)


def test_not_interpolation_of_surface_brightness():
    # A constant surface brightness of 1 per input pixel becomes ratio^2 per output pixel.
    img = np.ones((60, 60))
    out = rebin_flux(img, (29.5, 29.5), 10, (2.5, 2.5))
    np.testing.assert_allclose(out, 6.25, rtol=1e-12)


def test_variance_of_block_sum():
    var = np.full((20, 20), 0.3)
    out = rebin_variance(var, (9.5, 9.5), 10, (2.0, 2.0))
    np.testing.assert_allclose(out, 4 * 0.3, rtol=1e-12)


def test_variance_matches_monte_carlo():
    rng = np.random.default_rng(4)
    sigma = rng.uniform(0.5, 2.0, size=(12, 12))
    centre, ratio = (5.7, 6.2), (1.7, 1.7)
    analytic = rebin_variance(sigma ** 2, centre, 5, ratio)
    draws = np.array([rebin_flux(rng.normal(0, sigma), centre, 5, ratio) for _ in range(4000)])
    np.testing.assert_allclose(draws.var(axis=0), analytic, rtol=0.1)


def test_coverage_outside_image_is_zero():
    cover = coverage_fraction(np.ones((10, 10)), (4.5, 4.5), 20, (1.0, 1.0))
    assert cover[10, 10] == pytest.approx(1.0)
    assert cover[0, 0] == 0.0
    assert np.isclose(cover, 1.0).sum() == 100


def test_overlap_rows_sum_to_ratio_inside():
    o = overlap_matrix(30, 14.5, 8, 1.75)
    np.testing.assert_allclose(o.sum(axis=1), 1.75, rtol=1e-12)


def test_psf_rebin_stays_centred_and_normalised():
    y, x = np.mgrid[-30:31, -30:31]
    psf = np.exp(-0.5 * (x ** 2 + y ** 2) / 2.0 ** 2)
    out = rebin_psf(psf / psf.sum(), 2.0)
    assert out.shape[0] % 2 == 1
    assert out.sum() == pytest.approx(1.0)
    c = out.shape[0] // 2
    yy, xx = np.mgrid[:out.shape[0], :out.shape[1]]
    assert (out * xx).sum() == pytest.approx(c, abs=1e-9)
    assert (out * yy).sum() == pytest.approx(c, abs=1e-9)
    # Independent reference: split every input pixel into 10x10 sub-pixels of equal flux and give
    # each to the output pixel containing its centre.
    sub = (np.arange(10) + 0.5) / 10 - 0.5
    n_out = out.shape[0]
    ref = np.zeros((n_out, n_out))
    norm = psf / psf.sum()
    for i in range(psf.shape[0]):
        for j in range(psf.shape[1]):
            ys = (i + sub - 30.0) / 2.0 + n_out / 2.0
            xs = (j + sub - 30.0) / 2.0 + n_out / 2.0
            iy, ix = np.floor(ys).astype(int), np.floor(xs).astype(int)
            for a in iy:
                np.add.at(ref[a], ix, norm[i, j] / 100.0)
    np.testing.assert_allclose(out, ref / ref.sum(), atol=1e-12)


def test_nonfinite_input_refused():
    img = np.ones((5, 5))
    img[2, 2] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        rebin_flux(img, (2.0, 2.0), 3, (1.0, 1.0))
