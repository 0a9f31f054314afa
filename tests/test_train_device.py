"""The training step's GPU-facing paths, checked on the CPU: no host synchronisation in the hot path,
bf16 autocast and fp16 + GradScaler, non-finite steps skipped on the device, device selection, TF32."""

import collections

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from astrorim.model import AstroRIM
from astrorim.train.config import TrainingConfig
from astrorim.train.optim import EMA, make_optimizer
from astrorim.train.step import Precision, StepSums, resolve_device, resolve_precision, set_tf32, train_step
from astrorim.train.testing import TINY_MODEL

CPU = torch.device("cpu")
# Operations that copy a value from the device to the host, or whose output size depends on the data, or that
# make a tensor from host data (torch.tensor / as_tensor of a Python number: on a GPU a copy from pageable
# memory): on a GPU each one waits for every kernel queued before it.
SYNC_OPS = {"aten::_local_scalar_dense", "aten::item", "aten::nonzero", "aten::masked_select",
            "aten::_assert_async", "aten::unique", "aten::_unique2", "aten::lift_fresh"}


class CountHostSyncs(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.counts = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func._schema.name in SYNC_OPS:
            self.counts[func._schema.name] += 1
        return func(*args, **(kwargs or {}))


def _model():
    torch.manual_seed(0)
    return AstroRIM({"npix": 32, **TINY_MODEL})


def _batch(seed=0, n=4):
    g = torch.Generator().manual_seed(seed)
    return {"observed": torch.rand(n, 32, 32, generator=g) + 0.1, "source": torch.rand(n, 32, 32, generator=g),
            "noise_sigma": torch.full((n,), 0.05), "params": torch.rand(n, 9, generator=g)}


def _step(model, opt, scaler, precision, batch):
    t = TrainingConfig()
    return train_step(model, batch, opt, scaler, precision, loss_cfg=t.loss, grad_clip=t.grad_clip, n_iter=None,
                      noise="truth", device=CPU)


def _snapshot(model, opt):
    params = {k: v.detach().clone() for k, v in model.state_dict().items()}
    moments = {id(p): {k: v.clone() for k, v in s.items()} for p, s in opt.state.items()}
    return params, moments


def _assert_unchanged(model, opt, snapshot):
    params, moments = snapshot
    for k, v in model.state_dict().items():
        assert torch.equal(v, params[k]), k
    for p, s in opt.state.items():
        for k, v in s.items():
            assert torch.equal(v, moments[id(p)][k]), k


@pytest.mark.skipif(not torch.optim.AdamW([torch.zeros(1, requires_grad=True)], fused=True).defaults["fused"],
                    reason="torch < 2.4 has no fused AdamW on the CPU")
def test_training_step_and_its_bookkeeping_never_wait_for_the_device():
    """The hot path (step, EMA, running sums) issues no operation that reads a value back to the host; before
    the fix a step made 68 such reads (one per loss term, the finiteness tests, the gradient norm, `w > 0` per
    RIM iterate, and 56 of the foreach AdamW's step counters)."""
    model = _model()
    opt = make_optimizer(model, 1e-3, 1e-3, 0.01)
    assert opt.defaults["fused"]
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    ema = EMA(model, 0.999)
    sums = StepSums(CPU)
    precision = resolve_precision(CPU, "auto")
    for seed in range(2):  # the first step creates the optimiser state
        with CountHostSyncs() as counter:
            r = _step(model, opt, scaler, precision, _batch(seed))
            ema.update(model, applied=1.0 - r["skipped"])
            sums.add(r, 4)
        # the first step may make its one-off device constants from host data (StepSums' weights per batch size)
        counts = {k: v for k, v in counter.counts.items() if seed > 0 or k != "aten::lift_fresh"}
        assert counts == {}, f"host synchronisations in step {seed + 1}: {dict(counter.counts)}"
    window = sums.read("window")
    assert window["n"] == 8 and window["batches"] == 2 and window["skipped"] == 0.0
    assert window["total"] > 0 and torch.isfinite(torch.tensor(window["total"]))


@pytest.mark.parametrize("precision", [Precision("cpu", torch.bfloat16, False), Precision("cpu", torch.float16, True)],
                         ids=["bf16", "fp16+GradScaler"])
def test_autocast_training_step_tracks_float32(precision):
    """Under bf16 autocast, and fp16 with a GradScaler, the step trains: finite loss close to float32's, the
    weights move, and the physics in float32 keeps the forward term within a few per cent of float32's."""
    reference = _model()
    ref_opt = make_optimizer(reference, 1e-3, 1e-3, 0.01)
    ref = _step(reference, ref_opt, torch.amp.GradScaler("cpu", enabled=False), Precision("cpu", None, False),
                _batch())
    model = _model()
    opt = make_optimizer(model, 1e-3, 1e-3, 0.01)
    # A small initial scale, so the fp16 step is not lost to the scaler's usual first overflows.
    scaler = torch.amp.GradScaler("cpu", init_scale=8.0, enabled=precision.use_scaler)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    r = _step(model, opt, scaler, precision, _batch())
    assert float(r["skipped"]) == 0.0
    for key in ("total", "recon", "fwd", "mse"):
        assert float(r[key]) == pytest.approx(float(ref[key]), rel=0.1), key
    assert float(r["grad_norm"]) == pytest.approx(float(ref["grad_norm"]), rel=0.1)
    moved = [k for k, v in model.state_dict().items() if v.is_floating_point() and not torch.equal(v, before[k])]
    assert len(moved) > 10
    for k, v in model.state_dict().items():
        assert v.dtype == before[k].dtype and torch.isfinite(v).all(), k  # master weights stay float32


def test_fp16_overflow_is_skipped_and_the_scale_backs_off():
    model = _model()
    opt = make_optimizer(model, 1e-3, 1e-3, 0.01)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 24, enabled=True)  # certain to overflow fp16
    _step(model, opt, scaler, Precision("cpu", torch.float16, True), _batch())  # creates the optimiser state
    snapshot = _snapshot(model, opt)
    r = _step(model, opt, scaler, Precision("cpu", torch.float16, True), _batch(1))
    assert float(r["skipped"]) == 1.0 and scaler.get_scale() == 2.0 ** 22
    _assert_unchanged(model, opt, snapshot)


def test_non_finite_batch_skips_the_update_on_the_device():
    """A NaN observation: loss and gradient are NaN, AdamW (fused, found_inf) leaves weights, moments and its
    step counters alone, the EMA does not move, and the running sums ignore the NaN terms."""
    model = _model()
    opt = make_optimizer(model, 1e-3, 1e-3, 0.01)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    ema = EMA(model, 0.9, warmup=False)
    sums = StepSums(CPU)
    fp32 = Precision("cpu", None, False)
    sums.add(_step(model, opt, scaler, fp32, _batch()), 4)
    snapshot = _snapshot(model, opt)
    ema_before = {k: v.clone() for k, v in ema.model.state_dict().items()}
    bad = _batch(1)
    bad["observed"][0, 3, 3] = float("nan")
    r = _step(model, opt, scaler, fp32, bad)
    ema.update(model, applied=1.0 - r["skipped"])
    sums.add(r, 4)
    assert float(r["skipped"]) == 1.0 and not torch.isfinite(r["total"])
    _assert_unchanged(model, opt, snapshot)
    for k, v in ema.model.state_dict().items():
        assert torch.equal(v, ema_before[k]), k
    epoch = sums.read("epoch")
    assert epoch["skipped"] == 1.0 and epoch["batches"] == 2 and torch.isfinite(torch.tensor(epoch["total"]))
    assert float(sums.consecutive_skips) == 1.0
    sums.add(_step(model, opt, scaler, fp32, _batch(2)), 4)  # a good step again: updates and resets the count
    assert float(sums.consecutive_skips) == 0.0
    assert any(not torch.equal(v, snapshot[0][k]) for k, v in model.state_dict().items())


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_device_cuda_fails_loudly_without_cuda_and_auto_falls_back(caplog):
    with pytest.raises(RuntimeError, match="training.device is 'cuda' but .*refusing to fall back to the CPU"):
        resolve_device("cuda")
    with caplog.at_level("WARNING", logger="astrorim.train"):
        assert resolve_device("auto") == CPU
    assert "NO CUDA DEVICE" in caplog.text


def test_gpu_configuration_asks_for_cuda(repo_root):
    """The paper-scale (GPU) configuration names its device, so it cannot train on the CPU by accident."""
    import yaml

    config = yaml.safe_load((repo_root / "config" / "config.yaml").read_text())
    assert TrainingConfig.from_dict(config["training"]).device == "cuda"


def test_tf32_is_set_explicitly_and_recorded():
    assert set_tf32(True) == {"tf32_matmul": True, "tf32_cudnn": True}
    assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    assert Precision("cuda", None, False).apply_tf32() == {"tf32_matmul": False, "tf32_cudnn": False}
    assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    assert Precision("cuda", None, False).label == "fp32" and Precision("cuda", None, False, tf32=True).label == "tf32"
    assert resolve_precision(torch.device("cuda"), "off").tf32 is False
