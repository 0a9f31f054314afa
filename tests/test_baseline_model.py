"""The Pyro model: every prior site with its support, the truncated normal, the lens/source/forward pieces."""

import math

import numpy as np
import pyro
import pytest
import torch
from pyro.distributions import constraints

from astrorim.baseline.distributions import TruncatedNormal
from astrorim.baseline.forward import LensingForward
from astrorim.baseline.latent_prior import LatentPrior
from astrorim.baseline.lens_model import ImageGrid, deflection, gaussian_psf_kernel
from astrorim.baseline.priors import LATENT_SITE, PRIORS, SCALAR_PARAMS
from astrorim.baseline.pyro_model import OBS_SITE, LensingModel, log_joint
from astrorim.baseline.source_model import evaluate_source


class BlobDecoder(torch.nn.Module):
    """Stand-in decoder: a Gaussian blob whose width and offset depend on z[:, 0] and z[:, 1]."""

    latent_dim = 64

    def forward(self, z):
        c = (torch.arange(64, dtype=torch.float32) - 31.5) / 32.0
        yy, xx = torch.meshgrid(c, c, indexing="ij")
        w = 0.25 * torch.exp(0.2 * z[:, 0])[:, None, None]
        x0 = 0.1 * z[:, 1][:, None, None]
        return torch.exp(-0.5 * (((xx - x0) / w) ** 2 + (yy / (0.7 * w)) ** 2))


def small_model(npix=48, fov=6.0, sigma=0.05):
    fwd = LensingForward(BlobDecoder(), ImageGrid(npix, fov), psf_sigma_arcsec=0.1)
    prior = LatentPrior(torch.zeros(64), torch.eye(64), 9.0)
    return LensingModel(fwd, prior, sigma)


def test_trace_has_every_prior_site_with_the_right_support():
    model = small_model()
    obs = torch.zeros(48, 48)
    trace = pyro.poutine.trace(model).get_trace(obs, 3)
    sites = {n: s for n, s in trace.nodes.items() if s["type"] == "sample" and not n == "starts"}
    assert set(SCALAR_PARAMS) | {LATENT_SITE, "z", OBS_SITE} == set(sites)
    for name, spec in PRIORS.items():
        site = sites[name]
        assert site["value"].shape == (3,)
        support = site["fn"].support
        if spec.low is None:
            assert support is constraints.real
        else:
            assert isinstance(support, constraints.interval)
            assert float(support.lower_bound.flatten()[0]) == pytest.approx(spec.low)
            assert float(support.upper_bound.flatten()[0]) == pytest.approx(spec.high)
            assert spec.low <= float(site["value"].min()) and float(site["value"].max()) <= spec.high
        assert float(site["fn"].loc.flatten()[0]) == pytest.approx(spec.loc)
        assert float(site["fn"].scale.flatten()[0]) == pytest.approx(spec.scale)
    assert sites[LATENT_SITE]["value"].shape == (3, 64) and sites[LATENT_SITE]["fn"].event_shape == (64,)
    assert sites[OBS_SITE]["is_observed"] and sites[OBS_SITE]["fn"].event_shape == (48, 48)
    assert float(sites[OBS_SITE]["fn"].base_dist.scale.flatten()[0]) == pytest.approx(0.05)


def test_paper_prior_values():
    assert (PRIORS["r_ein"].loc, PRIORS["r_ein"].scale) == (1.5, 0.5)      # eq. 21
    assert (PRIORS["slope"].loc, PRIORS["slope"].scale) == (2.0, 0.5)      # eq. 22
    assert (PRIORS["q"].loc, PRIORS["q"].scale) == (0.5, 0.5)              # eq. 20
    assert (PRIORS["scale"].loc, PRIORS["scale"].scale) == (5.0, 1.0)      # eq. 15
    assert (PRIORS["iota"].loc, PRIORS["iota"].scale) == (1.0, 0.5)        # eq. 16
    assert (PRIORS["x_src"].loc, PRIORS["x_src"].scale) == (0.0, 0.1)      # eq. 14
    assert PRIORS["q"].low > 0 and PRIORS["scale"].low > 0 and PRIORS["iota"].low >= 0


def test_truncated_normal_density_integrates_to_one_and_samples_in_support():
    d = TruncatedNormal(torch.tensor(0.5), torch.tensor(0.5), torch.tensor(0.2), torch.tensor(1.0))
    x = torch.linspace(0.2, 1.0, 20001, dtype=torch.float64)
    dens = d.log_prob(x.float()).double().exp()
    assert float(torch.trapezoid(dens, x)) == pytest.approx(1.0, abs=1e-4)
    s = d.sample((20000,))
    assert float(s.min()) >= 0.2 and float(s.max()) <= 1.0
    assert float(s.mean()) == pytest.approx(float(d.mean), abs=0.01)
    # inside the support the shape is the paper's normal (log-density differences agree)
    normal = torch.distributions.Normal(0.5, 0.5)
    a, b = torch.tensor(0.3), torch.tensor(0.9)
    assert float(d.log_prob(a) - d.log_prob(b)) == pytest.approx(float(normal.log_prob(a) - normal.log_prob(b)))
    with pytest.raises(ValueError, match="low < high"):
        TruncatedNormal(0.0, 1.0, 1.0, 0.0)


def test_log_joint_sums_prior_and_likelihood():
    model = small_model()
    values = {k: torch.tensor([spec.clip(spec.loc)]) for k, spec in PRIORS.items()}
    values[LATENT_SITE] = torch.zeros(1, 64)
    pred = model.forward(values, torch.zeros(1, 64))[0]
    obs = pred + 0.05
    lp = log_joint(model, obs, values)
    expected_lik = float(torch.distributions.Normal(pred, 0.05).log_prob(obs).sum())
    expected_prior = sum(float(PRIORS[k].distribution().log_prob(values[k])) for k in PRIORS)
    expected_prior += float(torch.distributions.Normal(0.0, 1.0).log_prob(torch.zeros(64)).sum())
    assert float(lp[0]) == pytest.approx(expected_lik + expected_prior, rel=1e-5)


def test_sis_deflection_and_shear_of_the_lens_model():
    x = torch.tensor([[1.0, 0.0, -2.0]])
    y = torch.tensor([[0.0, 3.0, 0.0]])
    p = {"r_ein": torch.tensor([1.3]), "slope": torch.tensor([2.0]), "q": torch.tensor([1.0]),
         "phi": torch.tensor([0.3]), "x_lens": torch.tensor([0.0]), "y_lens": torch.tensor([0.0]),
         "gamma1": torch.tensor([0.0]), "gamma2": torch.tensor([0.0])}
    ax, ay = deflection(x, y, p)  # SIS: |alpha| = theta_E towards the centre
    assert torch.allclose(torch.hypot(ax, ay), torch.full_like(ax, 1.3), atol=1e-5)
    p.update(r_ein=torch.tensor([1e-6]), gamma1=torch.tensor([0.1]), gamma2=torch.tensor([0.05]))
    ax, ay = deflection(x, y, p)  # eq. 13: alpha = [[g1, g2], [g2, -g1]] theta
    assert torch.allclose(ax, 0.1 * x + 0.05 * y, atol=1e-5)
    assert torch.allclose(ay, 0.05 * x - 0.1 * y, atol=1e-5)


def test_source_placement_eq17():
    stamp = torch.zeros(1, 64, 64)
    stamp[0, 40, 20] = 1.0  # row 40 (y), column 20 (x)
    p = {"x_src": torch.tensor([0.2]), "y_src": torch.tensor([-0.1]), "scale": torch.tensor([6.0]),
         "iota": torch.tensor([2.0])}
    half = 0.5 * 6.0 * (2 / 3)  # 2" half width
    pix = 2 * half / 64
    bx = torch.tensor([[[0.2 + (20 + 0.5) * pix - half]]])
    by = torch.tensor([[[-0.1 + (40 + 0.5) * pix - half]]])
    assert float(evaluate_source(stamp, bx, by, p)) == pytest.approx(2.0, rel=1e-5)
    assert float(evaluate_source(stamp, bx + 5.0, by, p)) == 0.0  # outside the stamp: zero


def test_psf_kernel_is_normalised_with_the_right_width():
    k = gaussian_psf_kernel(0.05, 10.0 / 256).double()
    assert float(k.sum()) == pytest.approx(1.0)
    c = torch.arange(k.shape[0], dtype=torch.float64) - k.shape[0] // 2
    var = float((k.sum(0) * c ** 2).sum())
    assert math.sqrt(var) * 10.0 / 256 == pytest.approx(0.05, rel=0.01)


def test_forward_conserves_flux_away_from_the_edges():
    fwd = LensingForward(BlobDecoder(), ImageGrid(64, 8.0), psf_sigma_arcsec=0.1)
    p = {k: torch.tensor([v]) for k, v in dict(gamma1=0.0, gamma2=0.0, phi=0.0, q=1.0, r_ein=1e-6, slope=2.0,
                                               x_lens=0.0, y_lens=0.0, x_src=0.0, y_src=0.0, scale=3.0,
                                               iota=1.0).items()}
    stamps = fwd.stamps(torch.zeros(1, 64))
    before = fwd.lensed_source(stamps, p)
    after = fwd.image_from_stamps(stamps, p)
    assert float(after.sum()) == pytest.approx(float(before.sum()), rel=1e-4)
    assert np.isfinite(after.numpy()).all()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_rendering_on_a_gpu_matches_the_cpu_and_returns_to_the_callers_device():
    """``LensingForward(device='cuda')``: the image and its gradients with respect to the lens parameters and
    the latent are the CPU's (float32 rounding), come back on the CPU, and the caller's decoder stays there."""
    from astrorim.baseline.vae import VAE, VAEConfig
    from astrorim.train.step import set_tf32

    # cuDNN's convolutions default to TF32 (10-bit mantissa), which on an H200 put the GPU image 5e-4 of its
    # peak away from the CPU's; the comparison is of IEEE float32
    previous = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    set_tf32(False)
    try:
        _compare_rendering_on_cpu_and_gpu(VAE, VAEConfig)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = previous


def _compare_rendering_on_cpu_and_gpu(VAE, VAEConfig):
    torch.manual_seed(0)
    decoder = VAE(VAEConfig(width=8)).decoder
    grid = ImageGrid(64, 8.0)
    results = []
    for device in ("cpu", "cuda"):
        forward = LensingForward(decoder, grid, psf_sigma_arcsec=0.1, device=device)
        p = {k: torch.tensor([v], requires_grad=True) for k, v in dict(
            r_ein=1.2, slope=2.1, q=0.7, phi=0.4, x_lens=0.05, y_lens=-0.1, gamma1=0.02, gamma2=-0.01,
            x_src=0.1, y_src=0.05, scale=5.0, iota=1.0).items()}
        z = (0.3 * torch.randn(1, 64, generator=torch.Generator().manual_seed(1))).requires_grad_(True)
        image = forward(p, z)
        assert image.device.type == "cpu"
        (image ** 2).sum().backward()
        results.append((image.detach(), {k: v.grad for k, v in p.items()}, z.grad))
    assert next(decoder.parameters()).device.type == "cpu"
    (cpu_image, cpu_grads, cpu_zgrad), (gpu_image, gpu_grads, gpu_zgrad) = results
    torch.testing.assert_close(gpu_image, cpu_image, rtol=1e-4, atol=1e-5 * float(cpu_image.abs().max()))
    for k in cpu_grads:
        torch.testing.assert_close(gpu_grads[k], cpu_grads[k], rtol=2e-3, atol=1e-4 * float(cpu_grads[k].abs().max()))
    torch.testing.assert_close(gpu_zgrad, cpu_zgrad, rtol=2e-3, atol=1e-4 * float(cpu_zgrad.abs().max()))
