"""PSF: Moffat FWHM, FFT vs direct vs scipy convolution, exact transpose, smoothness penalty."""

import numpy as np
import pytest
import torch
from astropy.convolution import Moffat2DKernel
from scipy.signal import convolve2d

from astrorim.model.psf import (LearnedPSF, convolve_same, correlate_same, moffat_kernel,
                                moffat_profile, moffat_alpha)


@pytest.mark.parametrize("fwhm,beta", [(2.5, 4.0), (3.0, 4.5), (6.0, 2.5)])
def test_moffat_profile_half_maximum_at_half_fwhm(fwhm, beta):
    r = torch.tensor([0.0, fwhm / 2], dtype=torch.float64)
    p = moffat_profile(r, fwhm, beta)
    assert float(p[0]) == 1.0
    assert abs(float(p[1]) - 0.5) < 1e-12


def test_moffat_kernel_measured_fwhm():
    # wide kernel so the half-maximum crossing is resolved; measure it on the sampled stamp
    fwhm, beta = 9.0, 3.5
    k = moffat_kernel(fwhm, beta, 61, dtype=torch.float64).numpy()
    row = k[30, 30:] / k[30, 30]
    i = np.argmax(row < 0.5)
    r_half = (i - 1) + (row[i - 1] - 0.5) / (row[i - 1] - row[i])
    assert abs(2 * r_half - fwhm) / fwhm < 0.01


def test_moffat_kernel_matches_astropy():
    fwhm, beta, size = 2.5, 4.0, 21
    ref = Moffat2DKernel(gamma=moffat_alpha(fwhm, beta), alpha=beta, x_size=size, y_size=size,
                         mode="center").array
    ref = ref / ref.sum()
    ours = moffat_kernel(fwhm, beta, size, dtype=torch.float64).numpy()
    assert np.allclose(ours, ref, atol=1e-12)
    assert abs(ours.sum() - 1) < 1e-12


@pytest.mark.parametrize("shared", [True, False])
def test_fft_direct_and_scipy_agree(shared):
    g = torch.Generator().manual_seed(0)
    img = torch.rand(3, 40, 33, generator=g, dtype=torch.float64)
    ker = torch.rand(7, 7, generator=g, dtype=torch.float64) if shared else \
        torch.rand(3, 7, 7, generator=g, dtype=torch.float64)
    a = convolve_same(img, ker, "fft")
    b = convolve_same(img, ker, "direct")
    assert torch.allclose(a, b, atol=1e-12)
    for i in range(3):
        k = ker if shared else ker[i]
        ref = convolve2d(img[i].numpy(), k.numpy(), mode="same", boundary="fill")
        assert np.allclose(a[i].numpy(), ref, atol=1e-12)


def test_auto_method_switches_at_64_and_agrees_in_float32():
    g = torch.Generator().manual_seed(1)
    ker = moffat_kernel(2.5, 4.0, 21)
    for n in (48, 96):
        img = torch.rand(2, n, n, generator=g)
        a = convolve_same(img, ker, "auto")
        b = convolve_same(img, ker, "direct")
        assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("method", ["fft", "direct"])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_correlation_is_exact_transpose(method, dtype, tol):
    g = torch.Generator().manual_seed(2)
    ker = torch.rand(4, 9, 9, generator=g, dtype=dtype)
    x = torch.randn(4, 30, 30, generator=g, dtype=dtype)
    r = torch.randn(4, 30, 30, generator=g, dtype=dtype)
    fx = convolve_same(x, ker, method)
    lhs = (fx * r).sum(dim=(1, 2))
    rhs = (x * correlate_same(r, ker, method)).sum(dim=(1, 2))
    bound = tol * fx.flatten(1).norm(dim=1) * r.flatten(1).norm(dim=1)
    assert torch.all((lhs - rhs).abs() <= bound)


def test_point_source_conserves_flux_and_centres():
    psf = LearnedPSF()
    img = torch.zeros(1, 96, 96)
    img[0, 40, 50] = 1.0
    with torch.no_grad():
        out = psf(img)
    assert abs(float(out.sum()) - 1) < 1e-5
    assert int(out[0].argmax()) == 40 * 96 + 50


def test_learned_psf_init_and_penalty():
    psf = LearnedPSF(fwhm_pix=2.5, beta=4.0, kernel_size=21)
    assert abs(psf.fwhm_pix.item() - 2.5) < 1e-6 and abs(psf.beta.item() - 4.0) < 1e-6
    assert psf.smoothness_penalty().item() == 0.0
    k = psf.kernel()
    assert torch.allclose(k, moffat_kernel(2.5, 4.0, 21), atol=1e-7)
    with torch.no_grad():
        psf.residual[10, 10] = 0.1
    # one spike: 4 neighbour differences of 0.1^2
    assert abs(psf.smoothness_penalty().item() - 4 * 0.01) < 1e-7
    assert abs(psf.kernel().sum().item() - 1) < 1e-6
    # gradients reach FWHM, beta and the residual
    psf(torch.rand(1, 32, 32)).pow(2).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in psf.parameters())


def test_bad_kernels_rejected():
    with pytest.raises(ValueError, match="odd"):
        moffat_kernel(2.5, 4.0, 20)
    with pytest.raises(ValueError, match="odd K"):
        convolve_same(torch.zeros(1, 8, 8), torch.zeros(4, 4))
    with pytest.raises(ValueError, match="batch"):
        convolve_same(torch.zeros(2, 8, 8), torch.zeros(3, 5, 5))
