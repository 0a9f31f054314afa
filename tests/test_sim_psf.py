"""The PSF kernels realise the FWHM asked for (the published Moffat and Airy kernels did not)."""

import numpy as np
import pytest
from astropy.modeling.functional_models import AiryDisk2D, Moffat2D
from scipy.special import erf

from astrorim.sim.psf import (
    AIRY_FIRST_ZERO_PER_LAMBDA_OVER_D,
    AIRY_FWHM_PER_LAMBDA_OVER_D,
    PsfParams,
    core_profile,
    measure_fwhm_pix,
    psf_kernels,
)

CASES = [
    PsfParams("gaussian", 0.10),
    PsfParams("moffat", 0.10, beta=2.5),
    PsfParams("moffat", 0.10, beta=3.5),
    PsfParams("moffat", 0.10, beta=4.8),
    PsfParams("airy", 0.10),
]


@pytest.mark.parametrize("p", CASES, ids=lambda p: f"{p.family}-{p.beta}")
def test_well_sampled_kernel_fwhm_within_2_percent(p):
    # 0.01"/pix: the FWHM spans 10 detector pixels, so sampling does not bias the measurement.
    k = psf_kernels(p, pixel_scale_arcsec=0.01, size_pix=41)
    fx, fy = measure_fwhm_pix(k.detector)
    assert fx * 0.01 == pytest.approx(0.10, rel=0.02)
    assert fy * 0.01 == pytest.approx(0.10, rel=0.02)
    fx, fy = measure_fwhm_pix(k.supersampled)
    assert fx * 0.0025 == pytest.approx(0.10, rel=0.02)


@pytest.mark.parametrize("family, beta", [("gaussian", np.nan), ("moffat", 3.0), ("airy", np.nan)])
@pytest.mark.parametrize("fwhm", [0.06, 0.10, 0.15])
def test_simulator_supersampled_kernel_fwhm_within_2_percent(family, beta, fwhm):
    """The kernel actually convolved (supersampled, 0.01"/pix for 0.04"/pix detectors)."""
    k = psf_kernels(PsfParams(family, fwhm, beta=beta), pixel_scale_arcsec=0.04, size_pix=25)
    fx, fy = measure_fwhm_pix(k.supersampled)
    assert np.sqrt(fx * fy) * 0.01 == pytest.approx(fwhm, rel=0.02)


def test_airy_constants_and_first_zero():
    assert AIRY_FWHM_PER_LAMBDA_OVER_D == pytest.approx(1.029, abs=1e-3)
    assert AIRY_FIRST_ZERO_PER_LAMBDA_OVER_D == pytest.approx(1.21967, abs=1e-4)
    fwhm = 0.1
    lam_d = fwhm / AIRY_FWHM_PER_LAMBDA_OVER_D
    assert core_profile("airy", 0.5 * fwhm, fwhm) == pytest.approx(0.5, abs=1e-9)
    assert core_profile("airy", AIRY_FIRST_ZERO_PER_LAMBDA_OVER_D * lam_d, fwhm) < 1e-12
    # Independent reference: astropy's AiryDisk2D is parametrised by its first-zero radius.
    ref = AiryDisk2D(amplitude=1.0, x_0=0.0, y_0=0.0, radius=AIRY_FIRST_ZERO_PER_LAMBDA_OVER_D * lam_d)
    r = np.linspace(0.001, 0.4, 200)
    np.testing.assert_allclose(core_profile("airy", r, fwhm), ref(r, 0.0), atol=1e-9)


@pytest.mark.parametrize("beta", [2.5, 3.3, 4.8])
def test_moffat_matches_astropy_fwhm_definition(beta):
    fwhm = 0.12
    alpha = fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))
    ref = Moffat2D(amplitude=1.0, x_0=0.0, y_0=0.0, gamma=alpha, alpha=beta)
    assert ref.fwhm == pytest.approx(fwhm, rel=1e-12)
    r = np.linspace(0.0, 0.5, 50)
    np.testing.assert_allclose(core_profile("moffat", r, fwhm, beta), ref(r, 0.0), rtol=1e-12)


def test_detector_kernel_is_pixel_integrated_gaussian():
    """Independent reference: the pixel integral of a Gaussian is a product of erf differences."""
    fwhm, ps, k = 0.08, 0.04, 25
    sigma = fwhm / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    edges = (np.arange(k + 1) - k / 2) * ps
    cdf = 0.5 * (1.0 + erf(edges / (np.sqrt(2.0) * sigma)))
    one_d = np.diff(cdf)
    want = np.outer(one_d, one_d)
    got = psf_kernels(PsfParams("gaussian", fwhm), ps, k).detector
    np.testing.assert_allclose(got, want / want.sum(), atol=2e-3 * want.max())


def test_elliptical_kernel_axes_and_normalisation():
    p = PsfParams("gaussian", 0.12, ellipticity=0.36, phi_rad=0.0)  # q = 0.64: axes x1.25, x0.8
    k = psf_kernels(p, 0.01, 41)
    fx, fy = measure_fwhm_pix(k.detector)
    assert fx * 0.01 == pytest.approx(0.12 / 0.8, rel=0.02)
    assert fy * 0.01 == pytest.approx(0.12 * 0.8, rel=0.02)
    assert k.detector.sum() == pytest.approx(1.0)
    assert k.supersampled.sum() == pytest.approx(1.0)
    assert k.detector.shape == (41, 41) and k.supersampled.shape == (165, 165)


def test_coma_kernel_is_asymmetric_but_centred():
    p = PsfParams("moffat", 0.10, beta=3.0, coma_weight=0.2, coma_phi_rad=0.7)
    k = psf_kernels(p, 0.04, 25).supersampled
    n = k.shape[0]
    t = np.arange(n) - n // 2
    cx = (k.sum(axis=0) * t).sum()
    cy = (k.sum(axis=1) * t).sum()
    assert abs(cx) < 0.1 and abs(cy) < 0.1  # supersampled pixels; FWHM is 10 of them
    assert np.abs(k - k[::-1, ::-1]).max() > 0.05 * k.max()


def test_bad_psf_parameters():
    with pytest.raises(ValueError, match="'lorentz'"):
        PsfParams("lorentz", 0.1)
    with pytest.raises(ValueError, match="fwhm_arcsec"):
        PsfParams("gaussian", -0.1)
    with pytest.raises(ValueError, match="beta"):
        PsfParams("moffat", 0.1)
    with pytest.raises(ValueError, match="odd"):
        psf_kernels(PsfParams("gaussian", 0.1), 0.04, 24)
