"""Noise and detector effects have the requested statistics."""

import numpy as np
import pytest

from astrorim.sim.noise import (
    CosmicRay,
    DetectorParams,
    apply_detector,
    correlation_kernel,
    cti_trail,
    periodic_convolve,
)

N = 256


def _rng(k=0):
    return np.random.default_rng(k)


def test_read_noise_only_has_requested_std():
    d = DetectorParams(gain_e_per_adu=2.0, read_noise_e=3.0, sky_adu=0.0)
    obs = apply_detector(np.zeros((N, N)), d, _rng())
    assert obs.mean() == pytest.approx(0.0, abs=0.03)
    assert obs.std() == pytest.approx(1.5, rel=0.02)  # 3 e- / 2 e-/ADU
    assert d.background_sigma_adu == pytest.approx(1.5)


def test_sky_and_read_noise_match_noise_sigma_and_sky_is_subtracted():
    d = DetectorParams(gain_e_per_adu=2.0, read_noise_e=1.5, sky_adu=40.0)
    obs = apply_detector(np.zeros((N, N)), d, _rng(1))
    want = np.sqrt(40.0 * 2.0 + 1.5**2) / 2.0
    assert d.background_sigma_adu == pytest.approx(want)
    assert obs.std() == pytest.approx(want, rel=0.02)
    assert obs.mean() == pytest.approx(0.0, abs=0.05)


def test_poisson_variance_scales_with_signal():
    d = DetectorParams(gain_e_per_adu=2.0, read_noise_e=0.0, sky_adu=0.0)
    signal = np.full((N, N), 500.0)
    obs = apply_detector(signal, d, _rng(2))
    assert obs.mean() == pytest.approx(500.0, rel=2e-3)
    assert obs.var() == pytest.approx(500.0 / 2.0, rel=0.03)


def test_prnu_adds_multiplicative_scatter():
    d = DetectorParams(gain_e_per_adu=1.0, read_noise_e=0.0, sky_adu=0.0, prnu_sigma=0.01)
    obs = apply_detector(np.full((N, N), 1e6), d, _rng(3))
    # Poisson 1e3 and PRNU 1e4 add in quadrature.
    assert obs.std() == pytest.approx(np.sqrt(1e6 + 1e8), rel=0.03)


@pytest.mark.parametrize("kind, sigma", [("gaussian", 0.8), ("gaussian", 3.0), ("fixed", np.nan)])
def test_correlated_noise_preserves_variance_and_correlates_neighbours(kind, sigma):
    base = DetectorParams(gain_e_per_adu=1.0, read_noise_e=4.0, sky_adu=0.0)
    corr = DetectorParams(gain_e_per_adu=1.0, read_noise_e=4.0, sky_adu=0.0, correlation=kind,
                          correlation_sigma_pix=sigma)
    white = apply_detector(np.zeros((N, N)), base, _rng(4))
    red = apply_detector(np.zeros((N, N)), corr, _rng(4))
    assert red.std() == pytest.approx(4.0, rel=0.05)

    def rho(a):
        return np.mean(a[:, 1:] * a[:, :-1]) / a.var()

    assert abs(rho(white)) < 0.02
    k = correlation_kernel(kind, sigma)
    want = np.sum(k[:, 1:] * k[:, :-1])  # unit-norm kernel: lag-1 autocorrelation
    assert rho(red) == pytest.approx(want, abs=0.03)
    assert want > 0.25


def test_periodic_convolve_is_circular():
    img = np.zeros((8, 8))
    img[0, 0] = 1.0
    k = np.zeros((3, 3))
    k[1, 2] = 1.0  # (k * img)[i, j] = img[i, j - 1]: the mass moves one column right
    out = periodic_convolve(img, k)
    assert out[0, 1] == pytest.approx(1.0)
    k2 = np.zeros((3, 3))
    k2[0, 1] = 1.0  # moves one row down, wrapping to the last row
    out2 = periodic_convolve(img, k2)
    assert out2[7, 0] == pytest.approx(1.0)
    assert out.sum() == pytest.approx(1.0) and out2.sum() == pytest.approx(1.0)


def test_cti_trails_along_rows_and_conserves_charge():
    img = np.zeros((120, 5))
    img[10, 2] = 1000.0
    out = cti_trail(img, fraction=0.02, trail_pix=3.0)
    assert out.sum() == pytest.approx(1000.0, rel=1e-9)
    assert out[10, 2] == pytest.approx(980.0)
    assert out[11:, 2].sum() == pytest.approx(20.0, rel=1e-9)
    assert np.all(out[11:20, 2] > 0) and np.all(np.diff(out[11:40, 2]) <= 0)
    assert out[12, 2] / out[11, 2] == pytest.approx(np.exp(-1 / 3.0))
    assert np.all(out[:10] == 0) and np.all(out[:, [0, 1, 3, 4]] == 0)


def test_cosmic_rays_are_added():
    crs = (CosmicRay(10.2, 20.7, 0.0, 1, 300.0), CosmicRay(50.5, 50.5, np.pi / 2, 6, 100.0))
    d = DetectorParams(gain_e_per_adu=2.0, read_noise_e=0.0, sky_adu=0.0, cosmic_rays=crs)
    obs = apply_detector(np.zeros((64, 64)), d, _rng(5))
    assert obs[10, 20] == pytest.approx(300.0)
    np.testing.assert_allclose(obs[50:56, 50], 100.0)
    assert obs.sum() == pytest.approx(900.0)


def test_vignetting_darkens_corners():
    d = DetectorParams(gain_e_per_adu=1.0, read_noise_e=0.0, sky_adu=0.0, vignetting=0.08)
    obs = apply_detector(np.full((64, 64), 1e5), d, _rng(6))
    assert obs[0, 0] / obs[32, 32] == pytest.approx(0.92, abs=0.01)


def test_bad_image_shape():
    with pytest.raises(ValueError, match="square"):
        apply_detector(np.zeros((4, 5)), DetectorParams(1.0, 1.0, 0.0), _rng())


def test_sky_residual_offset_and_plane():
    d = DetectorParams(gain_e_per_adu=1.0, read_noise_e=0.0, sky_adu=0.0, sky_residual_adu=0.3,
                       sky_residual_plane=(0.2, -0.1))
    obs = apply_detector(np.zeros((64, 64)), d, _rng(7))
    t = (np.arange(64) + 0.5 - 32) / 32
    np.testing.assert_allclose(obs, 0.3 + 0.2 * t[None, :] - 0.1 * t[:, None], atol=1e-12)


def test_sky_gradient_is_left_after_subtraction():
    d = DetectorParams(gain_e_per_adu=1.0, read_noise_e=0.0, sky_adu=1e6, sky_gradient=(0.01, 0.0))
    obs = apply_detector(np.zeros((64, 64)), d, _rng(8))
    left, right = obs[:, :8].mean(), obs[:, -8:].mean()
    # +-1 % of 1e6 at the edges (columns centred at -0.875 and +0.875 of the half field).
    assert right - left == pytest.approx(2 * 0.01 * 1e6 * 0.875, rel=0.02)
