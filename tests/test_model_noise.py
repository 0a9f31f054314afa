"""Opt-in noise of the forward operator: moments, determinism, identity at zero noise, refusals."""

import math

import pytest
import torch

from astrorim.model.forward import ConditionalForwardOperator, add_noise, noise_variance

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _image(dtype=torch.float64, device="cpu"):
    """(2, 6, 6) noiseless images spanning negative (sky-subtracted), zero, faint and bright pixels."""
    g = torch.Generator().manual_seed(1)
    y = torch.rand(2, 6, 6, generator=g, dtype=dtype) * 40.0 - 2.0
    y[:, 0, :3] = torch.tensor([0.0, -1.0, 0.05], dtype=dtype)
    return y.to(device)


def _chi2_bound(k: int) -> float:
    # About 5 sigma above the chi-square mean for k degrees of freedom: a deterministic seed
    # makes the test reproducible, the margin keeps it from depending on that seed.
    return k + 5.0 * math.sqrt(2.0 * k)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sample_moments_match_noise_variance(device, dtype):
    y = _image(dtype, device)
    gain = torch.tensor([4.0, 0.5], dtype=dtype, device=device).view(2, 1, 1)  # e- per unit, per example
    read = 0.3
    n = 4000
    g = torch.Generator(device=device).manual_seed(123)
    draws = add_noise(y.expand(n, *y.shape), gain, read, g).double()
    var = noise_variance(y, gain, read).double()
    k = y.numel()

    mean = draws.mean(0)
    z_mean = (mean - y.double()) / torch.sqrt(var / n)
    assert float((z_mean**2).sum()) < _chi2_bound(k)
    assert float(z_mean.abs().max()) < 5.0

    centred = draws - mean
    s2 = centred.pow(2).sum(0) / (n - 1)
    # Var(s^2) ~ (mu4 - sigma^4) / n, with the fourth moment measured: Poisson at low rate is
    # far from Gaussian, so the Gaussian 2 sigma^4 / n would be wrong.
    se_s2 = torch.sqrt((centred.pow(4).mean(0) - s2**2) / n)
    z_var = (s2 - var) / se_s2
    assert float((z_var**2).sum()) < _chi2_bound(k)
    assert float(z_var.abs().max()) < 5.0


def test_noise_variance_formula():
    y = _image()
    var = noise_variance(y, 2.0, 0.5)
    assert torch.allclose(var, y.clamp(min=0) / 2.0 + 0.25)
    assert torch.all(var[y <= 0] == 0.25)
    assert torch.equal(noise_variance(y, math.inf, 0.0), torch.zeros_like(y))


@pytest.mark.parametrize("device", DEVICES)
def test_deterministic_given_generator(device):
    y = _image(torch.float32, device)
    draw = lambda seed: add_noise(y, 3.0, 0.2, torch.Generator(device=device).manual_seed(seed))  # noqa: E731
    a, b, c = draw(7), draw(7), draw(8)
    assert a.device == y.device and a.dtype == y.dtype and a.shape == y.shape
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_zero_noise_returns_input_unchanged():
    y = _image()
    g = torch.Generator().manual_seed(0)
    assert torch.equal(add_noise(y, math.inf, 0.0, g), y)
    # No read noise: only non-negative pixels move, and they land on multiples of 1 / gain.
    out = add_noise(y, 4.0, 0.0, g)
    assert torch.equal(out[y < 0], y[y < 0])
    assert torch.allclose(out[y >= 0] * 4.0, torch.round(out[y >= 0] * 4.0))


def test_noise_is_opt_in_and_gradient_passes_through():
    op = ConditionalForwardOperator(npix=16, background=0.1)
    p = {n: torch.full((2,), v) for n, v in dict(b=0.5, q=0.8, phi=0.3, x0=0.0, y0=0.0, gamma=0.05,
                                                  gamma_phi=0.1, kappa_s=0.0, r_s=1.0).items()}
    x = torch.rand(2, 16, 16, generator=torch.Generator().manual_seed(0), requires_grad=True)
    bound = op.bind(p)
    assert torch.equal(bound(x), bound(x))  # the default operator is noiseless
    g = torch.Generator().manual_seed(0)
    assert torch.equal(bound.noisy_forward(x, math.inf, 0.0, g), bound(x))
    noisy = bound.noisy_forward(x, 50.0, 0.01, g)
    assert not torch.equal(noisy, bound(x))
    noisy.sum().backward()
    assert torch.allclose(x.grad, bound.adjoint(torch.ones(2, 16, 16)))


@pytest.mark.parametrize("gain, read, name", [(-1.0, 0.1, "gain_e_per_unit"), (0.0, 0.1, "gain_e_per_unit"),
                                              (math.nan, 0.1, "gain_e_per_unit"),
                                              (torch.tensor([2.0, -2.0]).view(2, 1, 1), 0.1, "gain_e_per_unit"),
                                              (2.0, -0.1, "read_sigma"), (2.0, math.inf, "read_sigma"),
                                              (2.0, math.nan, "read_sigma")])
def test_bad_noise_parameters_raise(gain, read, name):
    y = _image()
    with pytest.raises(ValueError, match=name):
        add_noise(y, gain, read, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=name):
        noise_variance(y, gain, read)


def test_bad_image_or_generator_raise():
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="y must"):
        add_noise(torch.ones(2, 4, 4, dtype=torch.int64), 1.0, 0.1, g)
    with pytest.raises(ValueError, match="generator"):
        add_noise(_image(), 1.0, 0.1, 0)
