"""Loss terms (paper eq. 43-49) and the optional supervised parameter loss."""

import math

import pytest
import torch

from astrorim.model import AstroRIM
from astrorim.params import PARAMETER_NAMES
from astrorim.train.config import LossConfig, TrainingConfig, TrainingConfigError
from astrorim.train.loss import (compute_loss, iterate_weights, parameter_errors, parameter_penalty,
                                 reconstruction_loss, supervised_parameter_loss)
from astrorim.train.testing import TINY_MODEL


def _params(batch=3, **overrides):
    base = {"b": 0.5, "q": 0.7, "phi": 0.3, "x0": 0.0, "y0": 0.0, "gamma": 0.05, "gamma_phi": -0.2,
            "kappa_s": 0.01, "r_s": 5.0}
    base.update(overrides)
    return {k: torch.full((batch,), float(v), dtype=torch.float32) for k, v in base.items()}


def test_iterate_weights():
    w = iterate_weights(10, "linear")
    assert torch.allclose(w.sum(), torch.tensor(1.0))
    assert w[-1] == pytest.approx(10 / 55) and w[0] == pytest.approx(1 / 55)
    assert torch.allclose(iterate_weights(4, "uniform"), torch.full((4,), 0.25))
    assert iterate_weights(3, "last").tolist() == [0.0, 0.0, 1.0]
    with pytest.raises(ValueError):
        iterate_weights(3, "exponential")


def test_reconstruction_loss_is_weighted_sum_of_squared_norms():
    target = torch.zeros(2, 4, 4)
    iterates = [torch.full((2, 4, 4), 1.0), torch.full((2, 4, 4), 2.0)]
    # per-example ||x_t||^2 = 16 and 64; linear weights 1/3, 2/3
    assert reconstruction_loss(iterates, target, "linear").item() == pytest.approx(16 / 3 + 64 * 2 / 3)
    assert reconstruction_loss(iterates, target, "last").item() == pytest.approx(64)


def test_parameter_penalty_zero_at_the_translated_prior_and_formula():
    cfg = LossConfig()
    assert parameter_penalty(_params(), cfg).item() == pytest.approx(0.0, abs=1e-12)
    # b above b_max = 1.0 adds both the range and the prior term; a centre offset adds x0^2
    p = _params(b=1.2, x0=0.1)
    expected = 0.2 ** 2 + 0.1 ** 2 + (1.2 - 0.5) ** 2
    assert parameter_penalty(p, cfg).item() == pytest.approx(expected, rel=1e-5)
    assert parameter_penalty(_params(b=-0.1), cfg).item() == pytest.approx(0.1 ** 2 + 0.6 ** 2, rel=1e-5)


def test_supervised_loss_angles_are_pi_periodic_and_nan_r_s_is_masked():
    truth = torch.tensor([[0.5, 0.7, 0.3, 0.0, 0.0, 0.05, -0.2, 0.0, float("nan")]] * 3)
    pred = _params(phi=0.3 + math.pi, gamma_phi=-0.2 - math.pi, kappa_s=0.0, r_s=3.0)
    pred = {k: v.clone().requires_grad_(True) for k, v in pred.items()}
    errors, mask = parameter_errors(pred, truth)
    assert not mask[:, PARAMETER_NAMES.index("r_s")].any()
    loss = supervised_parameter_loss(pred, truth)
    assert loss.item() == pytest.approx(0.0, abs=1e-10)
    loss.backward()
    assert all(torch.isfinite(v.grad).all() for v in pred.values())
    assert pred["r_s"].grad.abs().sum() == 0
    # a quarter turn is the largest orientation error
    quarter = supervised_parameter_loss(_params(phi=0.3 + math.pi / 2, kappa_s=0.0), truth)
    assert quarter.item() == pytest.approx(1.0 / 8, rel=1e-5)  # one of 8 valid entries has error 1


def test_forward_fidelity_vanishes_for_a_self_consistent_observation():
    torch.manual_seed(0)
    model = AstroRIM({"npix": 32, **TINY_MODEL})
    x = torch.rand(2, 32, 32)
    out = model(torch.rand(2, 32, 32), torch.full((2,), 0.05))
    with torch.no_grad():
        y = model.forward_operator(x, out["params"])
    cfg = LossConfig()
    terms = compute_loss(model, out, y, x, None, cfg)
    assert terms["fwd"].item() < 1e-10
    noisy = compute_loss(model, out, y + 0.1, x, None, cfg)["fwd"].item()
    assert noisy == pytest.approx(0.01 * 32 * 32, rel=1e-4)  # per-example squared norm, batch mean
    expected = (terms["recon"] + 0.5 * terms["fwd"] + 1e-3 * terms["psf"] + 1e-3 * terms["param"])
    assert terms["total"].item() == pytest.approx(expected.item(), rel=1e-6)


def test_training_config_defaults_and_errors():
    t = TrainingConfig.from_dict({})
    assert (t.initial.lr_rim, t.initial.lr_forward, t.initial.warmup_epochs) == (5e-5, 5e-6, 5.0)
    assert (t.initial.plateau_patience, t.initial.plateau_factor, t.grad_clip, t.ema_decay) == (6, 0.5, 5.0, 0.999)
    assert (t.finetune.lr_rim, t.finetune.lr_forward, t.finetune.early_stopping_patience) == (5e-6, 5e-7, 5)
    assert t.loss.lambda_fwd == 0.5 and t.loss.lambda_supervised == 0.0
    ft = TrainingConfig.from_dict({"finetune": {"epochs": 3}}).finetune
    assert ft.epochs == 3 and ft.lr_rim == 5e-6  # finetune defaults kept under partial overrides
    with pytest.raises(TrainingConfigError, match=r"training.initial: unknown key\(s\) \['lr'\]"):
        TrainingConfig.from_dict({"initial": {"lr": 1e-3}})
    with pytest.raises(TrainingConfigError, match="ema_decay"):
        TrainingConfig.from_dict({"ema_decay": 1.5})
    with pytest.raises(TrainingConfigError, match="param_prior keys"):
        TrainingConfig.from_dict({"loss": {"param_prior": {"theta": 1.0}}})
