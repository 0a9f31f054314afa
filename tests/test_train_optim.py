"""Optimiser groups, warm-up + plateau schedule, EMA, and the validation metrics."""

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from astrorim.model import AstroRIM
from astrorim.train.metrics import image_metrics
from astrorim.train.optim import EMA, WarmupPlateau, component_lrs, make_optimizer
from astrorim.train.testing import TINY_MODEL


@pytest.fixture
def model():
    torch.manual_seed(0)
    return AstroRIM({"npix": 32, **TINY_MODEL})


def test_groups_cover_every_parameter_once_with_the_right_rate(model):
    opt = make_optimizer(model, 5e-5, 5e-6, 0.01)
    seen = [id(p) for g in opt.param_groups for p in g["params"]]
    assert sorted(seen) == sorted(id(p) for p in model.parameters()) and len(seen) == len(set(seen))
    names = {n: g for g in opt.param_groups for n in g["names"]}
    conv = next(n for n, p in model.named_parameters() if n.startswith("rim.") and p.ndim == 4)
    assert names[conv]["lr"] == 5e-5 and names[conv]["weight_decay"] == 0.01
    assert names["encoder.mean_head.weight"]["lr"] == 5e-6
    assert names["forward_operator.psf.log_fwhm_pix"]["lr"] == 5e-6
    assert names["forward_operator.psf.log_fwhm_pix"]["weight_decay"] == 0.0  # physical scalar: no decay
    assert names["encoder.backbone.1.weight"]["weight_decay"] == 0.0  # GroupNorm gain


def test_warmup_then_plateau(model):
    opt = make_optimizer(model, 1.0, 0.1, 0.0)
    sched = WarmupPlateau(opt, warmup_steps=4, patience=2, factor=0.5, warmup_epochs=2)
    lrs = []
    for _ in range(6):
        lrs.append(component_lrs(opt)["rim"])
        sched.step_batch()
    assert lrs == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0])
    assert component_lrs(opt)["forward"] == pytest.approx(0.1)
    # epochs 0-1 are warm-up: ignored even if the loss gets worse
    assert not sched.step_epoch(0, 10.0) and not sched.step_epoch(1, 20.0)
    assert not sched.step_epoch(2, 5.0)                     # best
    assert not sched.step_epoch(3, 5.0) and not sched.step_epoch(4, 5.0)  # 2 bad epochs = patience
    assert sched.step_epoch(5, 5.0)                         # the third bad epoch halves the rates
    assert component_lrs(opt) == pytest.approx({"rim": 0.5, "forward": 0.05})
    state = sched.state_dict()
    other = WarmupPlateau(make_optimizer(model, 1.0, 0.1, 0.0), 4, 2, 0.5, warmup_epochs=2)
    other.load_state_dict(state)
    assert component_lrs(other.optimizer) == component_lrs(opt) and other.reductions == [5]


def test_ema_follows_the_formula(model):
    ema = EMA(model, decay=0.9, warmup=False)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update(model)
    for k, v in ema.model.state_dict().items():
        if v.dtype.is_floating_point and k in dict(model.named_parameters()):
            assert torch.allclose(v, start[k] + 0.1, atol=1e-6), k
    warm = EMA(model, decay=0.999, warmup=True)
    assert warm.current_decay() == pytest.approx(0.1)
    warm.updates = 10000
    assert warm.current_decay() == 0.999
    assert not any(p.requires_grad for p in ema.model.parameters())


def test_validation_metrics_are_the_evaluation_protocol():
    """Peak normalisation by the truth, no clipping, 11x11 Gaussian SSIM: the numbers evaluation reports."""
    rng = np.random.default_rng(0)
    target = rng.random((3, 32, 32)) * 50.0
    pred = target + 5.0 * rng.standard_normal((3, 32, 32))
    m = image_metrics(pred, target)
    for i in range(3):
        s = target[i].max()
        ref_ssim = structural_similarity(target[i] / s, pred[i] / s, data_range=1.0, gaussian_weights=True,
                                         sigma=1.5, use_sample_covariance=False)
        assert m["ssim"][i] == pytest.approx(ref_ssim)
        assert m["mse01"][i] == pytest.approx(np.mean((pred[i] / s - target[i] / s) ** 2))
        default = structural_similarity(target[i] / s, pred[i] / s, data_range=1.0)
        assert m["ssim"][i] != pytest.approx(default)  # not skimage's 7x7 uniform default
    scaled = image_metrics(pred * 3.0, target * 3.0)  # linear normalisation: units do not matter
    assert np.allclose(scaled["mse01"], m["mse01"]) and np.allclose(scaled["ssim"], m["ssim"])
    perfect = image_metrics(target, target)
    assert np.allclose(perfect["ssim"], 1.0) and np.allclose(perfect["mse01"], 0.0)
    overshoot = image_metrics(2 * target, target)  # not clipped: an overshoot is charged
    assert np.all(overshoot["mse01"] > 0.1)
