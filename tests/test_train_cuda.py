"""The training stage on a CUDA GPU: resumption within tolerances, AMP, no host synchronisation, metrics.

Skipped where torch sees no CUDA device (every CPU machine, CI included); ``benchmarks/device_run.py`` runs
them on a GPU machine (``pytest -m cuda``).  On CUDA, resumption is not bit for bit: scatter/gather and
convolution-backward kernels accumulate with atomics in a run-dependent order, so two runs of the same
steps differ in the last bits and the differences grow with training.  The tolerances below allow that.
"""

import traceback
import warnings

import pandas as pd
import pytest
import torch

from astrorim.model import AstroRIM
from astrorim.model.checkpoint import read_checkpoint
from astrorim.train.config import TrainingConfig
from astrorim.train.metrics import image_metrics, image_metrics_torch
from astrorim.train.optim import EMA, make_optimizer
from astrorim.train.run import train_phase
from astrorim.train.step import Precision, StepSums, resolve_precision, train_step
from astrorim.train.testing import TINY_MODEL, make_tiny_dataset, tiny_config

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(),
                                 reason="needs a CUDA GPU (torch.cuda.is_available() is False); "
                                        "run on a GPU machine: benchmarks/device_run.py, docs/device-run.md"),
              pytest.mark.filterwarnings("ignore::UserWarning")]

CUDA = torch.device("cuda")
# Weights after 8 AdamW steps at lr 1e-3 of two runs that differ only in atomics' summation order.
WEIGHT_RTOL, WEIGHT_ATOL = 1e-3, 1e-4


def gauge_parameters(model: torch.nn.Module) -> set[str]:
    """Biases of convolutions followed by a GroupNorm with one channel per group: the normalisation removes
    them, so their true gradient is 0 and what the backward pass returns is rounding noise; AdamW's first
    steps move them by ~lr * sign(noise), which differs between devices and between runs on one GPU
    (seen on an H200: encoder.backbone.0.bias of the tiny model)."""
    names = set()
    for prefix, module in model.named_modules():
        children = list(module.named_children())
        for (name, layer), (_, following) in zip(children, children[1:]):
            if (isinstance(layer, torch.nn.Conv2d) and layer.bias is not None
                    and isinstance(following, torch.nn.GroupNorm) and following.num_groups == following.num_channels):
                names.add(f"{prefix}.{name}.bias" if prefix else f"{name}.bias")
    return names


def test_gauge_parameters_are_the_normalised_conv_biases():
    names = gauge_parameters(AstroRIM({"npix": 32, **TINY_MODEL}))
    assert "encoder.backbone.0.bias" in names
    assert all(n.endswith(".bias") for n in names)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    make_tiny_dataset(root)
    return root


def _config(data, out, **training):
    return tiny_config(data, out, **{"device": "cuda", "log_every_steps": 3, **training})


def _batch(seed=0, n=8):
    g = torch.Generator().manual_seed(seed)
    return {"observed": torch.rand(n, 32, 32, generator=g) + 0.1, "source": torch.rand(n, 32, 32, generator=g),
            "noise_sigma": torch.full((n,), 0.05), "params": torch.rand(n, 9, generator=g)}


def _step(model, opt, scaler, precision, batch, device):
    t = TrainingConfig()
    return train_step(model, batch, opt, scaler, precision, loss_cfg=t.loss, grad_clip=t.grad_clip, n_iter=None,
                      noise="truth", device=device)


def test_cuda_resume_matches_a_straight_run_within_tolerance(data, tmp_path):
    straight = tmp_path / "straight"
    summary = train_phase(_config(data, straight, amp="off"), "initial", progress=False)
    assert summary["device"] == "cuda" and summary["precision"] == "fp32" and summary["tf32_cudnn"] is False

    resumed = tmp_path / "resumed"
    config = _config(data, resumed, amp="off", checkpoint_every_batches=1)

    class Crash(RuntimeError):
        pass

    def crash(step, epoch, batch):
        if step == 6:
            raise Crash

    with pytest.raises(Crash):
        train_phase(config, "initial", on_step=crash, progress=False)
    train_phase(config, "initial", progress=False)
    a = read_checkpoint(straight / "models" / "initial" / "last.pt")
    b = read_checkpoint(resumed / "models" / "initial" / "last.pt")
    assert a["global_step"] == b["global_step"] == 8
    gauge = gauge_parameters(AstroRIM({"npix": 32, **TINY_MODEL}))
    for key in ("model_state", "ema_state"):
        for name, value in a[key].items():
            if name in gauge:
                continue
            torch.testing.assert_close(b[key][name], value, rtol=WEIGHT_RTOL, atol=WEIGHT_ATOL, msg=f"{key}[{name}]")
    ma = pd.read_csv(straight / "models" / "initial" / "metrics.csv")
    mb = pd.read_csv(resumed / "models" / "initial" / "metrics.csv")
    for column in ("train_total", "val_total", "val_mse", "val_ssim"):
        assert mb[column].tolist() == pytest.approx(ma[column].tolist(), rel=1e-3), column
    sa = pd.read_csv(straight / "models" / "initial" / "steps.csv")
    sb = pd.read_csv(resumed / "models" / "initial" / "steps.csv")
    assert sa["step"].tolist() == sb["step"].tolist() == [3, 4, 6, 8]


@pytest.mark.parametrize("amp", ["auto", "fp16"])
def test_cuda_amp_training_phase(data, tmp_path, amp, monkeypatch):
    """A whole phase under AMP: bf16 where the GPU has it (amp: auto), and the fp16 + GradScaler path forced."""
    if amp == "fp16":
        import astrorim.train.loop as loop

        monkeypatch.setattr(loop, "resolve_precision", lambda device, mode: Precision("cuda", torch.float16, True))
    summary = train_phase(_config(data, tmp_path), "initial", progress=False)
    expected = "fp16+GradScaler" if amp == "fp16" else ("bf16" if torch.cuda.is_bf16_supported() else "fp16+GradScaler")
    assert summary["precision"] == expected
    for key in ("mse", "ssim", "total", "adjoint_mse"):
        assert summary["val"][key] is not None and torch.isfinite(torch.tensor(summary["val"][key])), key
    ckpt = read_checkpoint(tmp_path / "models" / "initial" / "last.pt")
    if amp == "fp16":
        assert ckpt["scaler_state"]["scale"] > 0  # the scaler's state is checkpointed
    assert all(torch.isfinite(v).all() for v in ckpt["ema_state"].values() if v.is_floating_point())


def test_cuda_fp32_step_matches_the_cpu():
    """With TF32 off, one float32 step on the GPU gives the CPU's loss and weights to float32 rounding."""
    results = {}
    for device in (torch.device("cpu"), CUDA):
        torch.manual_seed(0)
        model = AstroRIM({"npix": 32, **TINY_MODEL}).to(device)
        precision = resolve_precision(device, "off")
        precision.apply_tf32()
        opt = make_optimizer(model, 1e-3, 1e-3, 0.01)
        r = _step(model, opt, torch.amp.GradScaler(device.type, enabled=False), precision, _batch(), device)
        results[device.type] = ({k: float(v) for k, v in r.items()},
                                {k: v.detach().cpu() for k, v in model.state_dict().items()})
    (loss_cpu, w_cpu), (loss_gpu, w_gpu) = results["cpu"], results["cuda"]
    for key in ("total", "recon", "fwd", "param", "mse", "grad_norm"):
        assert loss_gpu[key] == pytest.approx(loss_cpu[key], rel=1e-4), key
    gauge = gauge_parameters(model)
    for name, value in w_cpu.items():
        if name not in gauge:
            torch.testing.assert_close(w_gpu[name], value, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cuda_training_step_does_not_synchronise(precision):
    """torch's CUDA sync debug mode reports every operation in the step that waits for the GPU."""
    model = AstroRIM({"npix": 32, **TINY_MODEL}).to(CUDA)
    prec = Precision("cuda", None if precision == "fp32" else torch.bfloat16, False)
    opt = make_optimizer(model, 1e-3, 1e-3, 0.01)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    ema = EMA(model, 0.999)
    sums = StepSums(CUDA)
    batches = [{k: v.pin_memory() for k, v in _batch(seed).items()} for seed in range(3)]
    r = _step(model, opt, scaler, prec, batches[0], CUDA)  # creates the optimiser state, selects kernels
    sums.add(r, 8)
    torch.cuda.synchronize()
    caught = []

    def record(message, category, filename, lineno, file=None, line=None):
        # where in the project the synchronising call was made, so a failure names the line to fix
        frames = [f for f in traceback.extract_stack()[:-1] if "/astrorim/" in f.filename]
        where = f"{frames[-1].filename.rsplit('/astrorim/', 1)[-1]}:{frames[-1].lineno}" if frames else "?"
        caught.append((str(message), where))

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = record
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for batch in batches[1:]:
                r = _step(model, opt, scaler, prec, batch, CUDA)
                ema.update(model, applied=1.0 - r["skipped"])
                sums.add(r, 8)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [where for message, where in caught
             if "synchron" in message.lower() and "prototype feature" not in message]
    assert not syncs, f"{len(syncs)} synchronising operation(s) in the step, at: {syncs}"
    assert sums.read("epoch")["skipped"] == 0.0


def test_cuda_validation_metrics_match_scikit_image():
    g = torch.Generator().manual_seed(1)
    target = torch.rand(6, 96, 96, generator=g, dtype=torch.float64) * 40
    pred = target + 4 * torch.randn(6, 96, 96, generator=g, dtype=torch.float64)
    ref = image_metrics(pred.numpy(), target.numpy())
    got = image_metrics_torch(pred.to(CUDA), target.to(CUDA))
    assert (got["ssim"].cpu().numpy() - ref["ssim"]).__abs__().max() < 1e-10
    assert (got["mse01"].cpu().numpy() - ref["mse01"]).__abs__().max() < 1e-12
