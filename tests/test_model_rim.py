"""RIM, full AstroRIM model: shapes, budget, gradients, noise estimate, autocast, normalisation."""

import numpy as np
import pytest
import torch

from astrorim.model import AstroRIM, AstroRIMConfig, count_parameters, estimate_noise_sigma
from astrorim.model.normalisation import denormalise, normalise, observation_scale
from astrorim.model.rim import ConvGRUCell, RIM
from astrorim.params import PARAMETER_NAMES

SMALL = dict(npix=32, n_iter=3)


def test_parameter_budget_and_breakdown():
    counts = count_parameters(AstroRIM())
    assert counts["total"] <= 800_000
    assert counts["total"] == counts["encoder"] + counts["rim"] + counts["psf"] + counts["background"]
    assert counts["psf"] == 21 * 21 + 2 and counts["background"] == 1


def test_default_config_round_trip():
    cfg = AstroRIMConfig()
    assert AstroRIMConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown AstroRIM config keys"):
        AstroRIMConfig.from_dict({"npix": 96, "bogus": 1})
    with pytest.raises(ValueError, match="multiple of 16"):
        AstroRIMConfig(npix=90)


def test_rim_returns_every_iterate():
    torch.manual_seed(0)
    model = AstroRIM(SMALL)
    y = torch.rand(2, 32, 32)
    with torch.no_grad():
        out = model(y, noise_sigma=torch.tensor([0.01, 0.02]))
        out5 = model(y, n_iter=5)
    assert len(out["iterates"]) == 3 and len(out5["iterates"]) == 5
    assert all(x.shape == (2, 32, 32) and x.dtype == torch.float32 for x in out["iterates"])
    assert out["source"] is out["iterates"][-1]
    assert set(out["params"]) == set(PARAMETER_NAMES)
    # iterates actually change
    assert (out5["iterates"][-1] - out5["iterates"][0]).abs().max() > 0


def test_gradients_reach_every_component():
    torch.manual_seed(1)
    model = AstroRIM(SMALL)
    y, x_gt = torch.rand(2, 32, 32), torch.rand(2, 32, 32)
    out = model(y)
    fidelity = (model.forward_operator(x_gt, out["params"]) - y).pow(2).mean()
    loss = (out["source"] - x_gt).pow(2).mean() + 0.5 * fidelity
    loss.backward()
    # the component encoder's sigma heads are trained by the supervised NLL only (astrorim.train.loss)
    sigma_heads = {n for n, _ in model.named_parameters() if "log_sigma_head" in n}
    for name, p in model.named_parameters():
        if name in sigma_heads:
            assert p.grad is None, name
            continue
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    for component in (model.encoder, model.rim, model.forward_operator.psf):
        total = sum(p.grad.abs().sum() for p in component.parameters() if p.grad is not None)
        assert total > 0
    # every individual tensor of the encoder and RIM gets a non-zero gradient
    for name, p in list(model.encoder.named_parameters()) + list(model.rim.named_parameters()):
        if "log_sigma_head" not in name:
            assert p.grad.abs().sum() > 0, name
    assert model.forward_operator.background.grad.abs() > 0


def test_reconstruction_loss_alone_reaches_encoder_through_adjoint():
    torch.manual_seed(2)
    model = AstroRIM(SMALL)
    out = model(torch.rand(2, 32, 32))
    out["source"].pow(2).mean().backward()
    assert sum(p.grad.abs().sum() for p in model.encoder.parameters() if p.grad is not None) > 0


def test_initial_source_is_least_squares_scaled_backprojection():
    torch.manual_seed(3)
    model = AstroRIM(SMALL).double()
    params = {k: v.double() for k, v in model.encoder(torch.rand(1, 32, 32).double()).items()}
    op = model.forward_operator.bind(params)
    y = torch.rand(1, 32, 32, dtype=torch.float64)
    x0 = RIM.initial_source(y, op)
    resid = lambda a: (y - op.linear(a * x0)).pow(2).sum()  # noqa: E731
    assert resid(1.0) < resid(1.01) and resid(1.0) < resid(0.99)


def test_noise_estimate_from_border():
    g = torch.Generator().manual_seed(4)
    y = 0.05 * torch.randn(3, 96, 96, generator=g)
    y[:, 30:66, 30:66] += 5.0  # a bright central lens that must not bias the estimate
    sigma = estimate_noise_sigma(y)
    assert torch.allclose(sigma, torch.full((3,), 0.05), rtol=0.1)
    with pytest.raises(ValueError, match="border"):
        estimate_noise_sigma(y, border=48)


def test_known_noise_changes_the_solution():
    torch.manual_seed(5)
    model = AstroRIM(SMALL)
    y = torch.rand(1, 32, 32)
    with torch.no_grad():
        a = model(y, noise_sigma=torch.tensor([0.01]))["source"]
        b = model(y, noise_sigma=torch.tensor([0.1]))["source"]
    assert (a - b).abs().max() > 0
    with pytest.raises(ValueError, match="noise_sigma"):
        model(y, noise_sigma=torch.tensor([0.1, 0.2]))
    with pytest.raises(ValueError, match="observations must be"):
        model(torch.rand(1, 48, 48))


def test_autocast_bf16_runs_and_stays_close():
    torch.manual_seed(6)
    model = AstroRIM(SMALL).eval()
    y = torch.rand(2, 32, 32)
    with torch.no_grad():
        ref = model(y)["source"]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(y)
    assert out["source"].dtype == torch.float32
    assert torch.isfinite(out["source"]).all()
    rel = (out["source"] - ref).norm() / ref.norm()
    assert rel < 0.05, rel


def test_conv_gru_gates():
    cell = ConvGRUCell(2, 4)
    h = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        cell.gates.bias[:4].fill_(-1e4)  # update gate closed: state is kept exactly
    with torch.no_grad():
        assert torch.allclose(cell(torch.randn(1, 2, 8, 8), h), h)


def test_normalisation_is_linear_scalar_per_example():
    g = torch.Generator().manual_seed(7)
    y = torch.rand(3, 32, 32, generator=g)
    y[1] *= 100.0
    y[2, 0, 0] = 1e6  # one cosmic ray does not set the scale
    s = observation_scale(y)
    assert s.shape == (3,)
    assert torch.isclose(s[1] / s[0], torch.quantile(y[1].flatten(), 0.995) / torch.quantile(y[0].flatten(), 0.995))
    assert s[2] < 2.0
    assert torch.allclose(denormalise(normalise(y, s), s), y)
    assert np.allclose(observation_scale(y.numpy()), s.numpy())
    assert float(observation_scale(torch.zeros(1, 8, 8))[0]) == 1.0
    assert float(observation_scale(-torch.ones(1, 8, 8))[0]) == 1.0
    bad = y.clone()
    bad[0, 1, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        observation_scale(bad)
