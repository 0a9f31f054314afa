"""One optimisation step and one validation pass, on whatever device the model lives.

Batches are normalised on the device with the model's normalisation module
(:mod:`astrorim.model.normalisation`): s = q_0.995(y) per example, and y, the target source and the
noise level are all divided by s, so every loss and metric here is in those normalised flux units.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass

import numpy as np
import torch

from astrorim.model.normalisation import normalise, observation_scale
from astrorim.train.data import batch_to_device
from astrorim.train.loss import compute_loss
from astrorim.train.metrics import image_metrics

log = logging.getLogger("astrorim.train")

LOSS_TERMS = ("total", "recon", "fwd", "psf", "param", "sup", "mse")


@dataclass(frozen=True)
class Precision:
    """Autocast set-up: ``dtype`` None means float32 throughout."""

    device_type: str
    dtype: torch.dtype | None
    use_scaler: bool

    @property
    def label(self) -> str:
        if self.dtype is None:
            return "fp32"
        return {torch.bfloat16: "bf16", torch.float16: "fp16+GradScaler"}[self.dtype]

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)


def resolve_device(name: str, key: str = "training.device") -> torch.device:
    """'auto' -> CUDA when available, else CPU (logged loudly); 'cuda' without a GPU is an error naming the
    configuration ``key`` that asked for it."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
        if name == "cpu":
            log.warning("=" * 78 + "\nNO CUDA DEVICE: training on the CPU in float32 (no AMP). This is a CPU "
                        "fallback, orders of magnitude slower than the paper's GPU set-up.\n" + "=" * 78)
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"{key} is {name!r} but torch sees no CUDA device")
    return device


def resolve_precision(device: torch.device, amp: str) -> Precision:
    """CUDA + amp 'auto': bf16 when supported, else fp16 with a GradScaler; CPU or 'off': fp32."""
    if device.type != "cuda" or amp == "off":
        return Precision(device.type, None, False)
    if torch.cuda.is_bf16_supported():
        return Precision("cuda", torch.bfloat16, False)
    return Precision("cuda", torch.float16, True)


def prepare_batch(batch: dict, device: torch.device, noise: str = "truth"):
    """(y, target, noise_sigma or None, truth params) normalised per example on ``device``."""
    batch = batch_to_device(batch, device)
    y = batch["observed"].float()
    scale = observation_scale(y)
    sigma = normalise(batch["noise_sigma"].float(), scale) if noise == "truth" else None
    return normalise(y, scale), normalise(batch["source"].float(), scale), sigma, batch["params"].float()


class StepResult(dict):
    """Loss terms (python floats) plus 'grad_norm', 'clipped', 'skipped'."""


def train_step(model, batch: dict, optimizer, scaler, precision: Precision, *, loss_cfg, grad_clip: float,
               n_iter: int | None, noise: str, device: torch.device) -> StepResult:
    """Forward, loss, backward, clip, optimiser step; a non-finite loss or gradient skips the update."""
    y, target, sigma, truth = prepare_batch(batch, device, noise)
    model.train()
    with precision.autocast():
        out = model(y, sigma, n_iter=n_iter)
        terms = compute_loss(model, out, y, target, truth, loss_cfg)
    loss = terms["total"]
    optimizer.zero_grad(set_to_none=True)
    result = StepResult({k: float(v.detach()) for k, v in terms.items()})
    if not torch.isfinite(loss):
        result.update(grad_norm=math.nan, clipped=0.0, skipped=1.0)
        return result
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip))
    if not math.isfinite(grad_norm) and not scaler.is_enabled():
        optimizer.zero_grad(set_to_none=True)
        result.update(grad_norm=grad_norm, clipped=0.0, skipped=1.0)
        return result
    scale_before = scaler.get_scale() if scaler.is_enabled() else 1.0
    scaler.step(optimizer)
    scaler.update()
    skipped = float(scaler.is_enabled() and scaler.get_scale() < scale_before)  # fp16 overflow: step skipped
    result.update(grad_norm=grad_norm, clipped=float(grad_norm > grad_clip), skipped=skipped)
    return result


@torch.no_grad()
def validate(model, loader, precision: Precision, *, loss_cfg, n_iter: int | None, noise: str,
             device: torch.device, baselines: bool = False, progress=None) -> dict[str, float]:
    """Mean loss terms and metrics over a loader (model in eval mode).

    Keys: loss terms (per-batch means weighted by batch size), 'mse' ([0, 1] images, paper metric),
    'ssim', 'mse_model' (normalised flux units); with ``baselines`` also the same for the adjoint
    back-projection F^T y ('adjoint_*'), the RIM's flux-scaled start x_0 ('x0_*') and an all-zero
    source ('zero_*').
    """
    model.eval()
    sums: dict[str, float] = {}
    n = 0

    def add(key, values):
        sums[key] = sums.get(key, 0.0) + float(np.sum(values))

    for batch in loader:
        y, target, sigma, truth = prepare_batch(batch, device, noise)
        b = y.shape[0]
        with precision.autocast():
            out = model(y, sigma, n_iter=n_iter)
            terms = compute_loss(model, out, y, target, truth, loss_cfg)
        for k, v in terms.items():
            if k != "mse":
                add(k, float(v) * b)
        candidates = {"": out["source"]}
        if baselines:
            op = model.forward_operator.bind(out["params"])
            candidates["adjoint_"] = op.adjoint(y)
            candidates["x0_"] = model.rim.initial_source(y, op)
            candidates["zero_"] = torch.zeros_like(target)
        t_np = target.float().cpu().numpy()
        for prefix, pred in candidates.items():
            p_np = pred.float().cpu().numpy()
            add(prefix + "mse_model", ((p_np - t_np) ** 2).mean(axis=(1, 2)))
            m = image_metrics(p_np, t_np)
            add(prefix + "mse", m["mse01"])
            add(prefix + "ssim", m["ssim"])
        n += b
        if progress is not None:
            progress.update(1)
    if n == 0:
        raise ValueError("validation loader yielded no examples")
    return {k: v / n for k, v in sums.items()}
