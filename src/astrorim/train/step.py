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
from astrorim.train.metrics import image_metrics_torch
from astrorim.train.optim import step_unless_non_finite

log = logging.getLogger("astrorim.train")

LOSS_TERMS = ("total", "recon", "fwd", "psf", "param", "sup", "mse")


@dataclass(frozen=True)
class Precision:
    """Autocast set-up: ``dtype`` None means float32 throughout.

    ``tf32``: whether CUDA float32 matrix products and cuDNN convolutions may round their inputs to TF32
    (10-bit mantissa).  torch's own defaults differ between the two (matmul off, convolutions on), which
    made "fp32" CUDA results differ from the CPU's by ~1e-3; :meth:`apply_tf32` sets both explicitly.
    Off unless asked for (only benchmarks ask): "fp32" means IEEE float32, and under AMP the float32 parts
    (the physics: warp, PSF, deflections) stay IEEE too.
    """

    device_type: str
    dtype: torch.dtype | None
    use_scaler: bool
    tf32: bool = False

    @property
    def label(self) -> str:
        if self.dtype is None:
            return "tf32" if self.tf32 else "fp32"
        return {torch.bfloat16: "bf16", torch.float16: "fp16+GradScaler"}[self.dtype]

    def apply_tf32(self) -> dict:
        """Set torch's TF32 switches (process-wide) to ``tf32``; returns them as recorded in checkpoints."""
        return set_tf32(self.tf32)

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)


def set_tf32(enabled: bool) -> dict:
    """TF32 for CUDA float32 matmuls and cuDNN convolutions, both set explicitly; returns the settings."""
    # The legacy switches: torch >= 2.9 also has ``fp32_precision``, but a process that sets the new ones
    # makes every later read of ``allow_tf32`` (by any library) raise, so only the legacy ones are used.
    torch.backends.cuda.matmul.allow_tf32 = bool(enabled)
    torch.backends.cudnn.allow_tf32 = bool(enabled)
    return {"tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
            "tf32_cudnn": bool(torch.backends.cudnn.allow_tf32)}


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
        build = torch.version.cuda
        why = (f"torch {torch.__version__} is a CPU-only build" if build is None
               else f"torch {torch.__version__} (CUDA {build}) finds no usable GPU")
        raise RuntimeError(f"{key} is {name!r} but {why}; refusing to fall back to the CPU. Install torch's "
                           f"CUDA build on a GPU machine, or set {key}: auto (or cpu) to train on the CPU")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise RuntimeError(f"{key} is {name!r} but torch sees {torch.cuda.device_count()} CUDA device(s)")
    return device


def resolve_precision(device: torch.device, amp: str) -> Precision:
    """CUDA + amp 'auto': bf16 when supported, else fp16 with a GradScaler; CPU or 'off': fp32."""
    if device.type != "cuda" or amp == "off":
        return Precision(device.type, None, False)
    if torch.cuda.is_bf16_supported():
        return Precision("cuda", torch.bfloat16, False)
    return Precision("cuda", torch.float16, True)


def prepare_batch(batch: dict, device: torch.device, noise: str = "truth", *, check_finite: bool = True):
    """(y, target, noise_sigma or None, truth params) normalised per example on ``device``.

    ``check_finite`` refuses non-finite observations (a host synchronisation); the training step skips the
    check, as a non-finite batch gives a non-finite loss and the update is skipped anyway."""
    batch = batch_to_device(batch, device)
    y = batch["observed"].float()
    scale = observation_scale(y, check_finite=check_finite)
    sigma = normalise(batch["noise_sigma"].float(), scale) if noise == "truth" else None
    return normalise(y, scale), normalise(batch["source"].float(), scale), sigma, batch["params"].float()


class StepResult(dict):
    """Detached 0-d tensors on the training device: the loss terms plus 'grad_norm' (before clipping),
    'clipped' and 'skipped' (1.0 or 0.0).  Reading one (``float``) waits for the device: do it at log points."""


def train_step(model, batch: dict, optimizer, scaler, precision: Precision, *, loss_cfg, grad_clip: float,
               n_iter: int | None, noise: str, device: torch.device) -> StepResult:
    """Forward, loss, backward, clip, optimiser step; a non-finite loss or gradient skips the update.

    Nothing here waits for the device: the skip is decided on it (:func:`step_unless_non_finite`, or the
    GradScaler's own check with fp16), and the loss terms come back as device tensors.
    """
    y, target, sigma, truth = prepare_batch(batch, device, noise, check_finite=False)
    model.train()
    with precision.autocast():
        out = model(y, sigma, n_iter=n_iter)
        terms = compute_loss(model, out, y, target, truth, loss_cfg)
    loss = terms["total"]
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip).detach()
    non_finite = (~(torch.isfinite(loss.detach()) & torch.isfinite(grad_norm))).float()
    if scaler.is_enabled():
        scaler.step(optimizer)  # skips a non-finite step itself (on the device with a fused optimiser)
        scaler.update()
    else:
        step_unless_non_finite(optimizer, non_finite)
    result = StepResult({k: v.detach() for k, v in terms.items()})
    result.update(grad_norm=grad_norm, clipped=(grad_norm > grad_clip).float() * (1.0 - non_finite),
                  skipped=non_finite)
    return result


class StepSums:
    """Running sums of :class:`StepResult` values on the device, for the epoch and for the current log window.

    Per step one stacked add; :meth:`read` brings them to the host (one synchronisation).  Loss terms are
    summed weighted by the batch size, skipping non-finite values (a skipped step's loss may be NaN);
    'grad_norm' (finite ones), 'clipped' and 'skipped' per batch.  'n' (examples) and 'batches' are counted
    on the host.
    """

    def __init__(self, device: torch.device, keys: tuple[str, ...] = LOSS_TERMS):
        self.terms = tuple(keys)
        self.keys = self.terms + ("grad_norm", "clipped", "skipped")
        self.device = device
        self.sums = torch.zeros(2, len(self.keys), dtype=torch.float64, device=device)  # row 0 epoch, 1 window
        self.counts = {"epoch": {"n": 0, "batches": 0}, "window": {"n": 0, "batches": 0}}
        # Consecutive skipped steps, on the device (the loop checks it at log points).
        self.consecutive_skips = torch.zeros((), dtype=torch.float64, device=device)
        self._weights: dict[int, torch.Tensor] = {}

    def add(self, result: StepResult, n: int) -> None:
        values = torch.stack([result[k].to(torch.float64) for k in self.keys])
        weights = self._weights.get(n)
        if weights is None:  # made once per batch size: no host-to-device copy per step
            weights = torch.tensor([float(n)] * len(self.terms) + [1.0, 1.0, 1.0], dtype=torch.float64,
                                   device=self.device)
            self._weights[n] = weights
        values = torch.where(torch.isfinite(values), values, torch.zeros_like(values))
        self.sums += values * weights
        skipped = result["skipped"].to(torch.float64)
        self.consecutive_skips = (self.consecutive_skips + 1.0) * skipped
        for c in self.counts.values():
            c["n"] += n
            c["batches"] += 1

    def read(self, which: str) -> dict[str, float]:
        """Host copy of the 'epoch' or 'window' sums (with 'n' and 'batches'): one synchronisation."""
        row = self.sums[0 if which == "epoch" else 1].tolist()
        return {**dict(zip(self.keys, row)), **self.counts[which]}

    def reset_window(self) -> None:
        self.sums[1].zero_()
        self.counts["window"] = {"n": 0, "batches": 0}

    def state(self) -> dict:
        """Both rows as python floats (saved with a mid-epoch checkpoint)."""
        return {"epoch": self.read("epoch"), "window": self.read("window")}

    def load(self, state: dict) -> None:
        if state and "epoch" not in state:  # a mid-epoch checkpoint of an earlier version: epoch sums only
            state = {"epoch": state}
        for i, which in enumerate(("epoch", "window")):
            saved = state.get(which) or {}
            row = [float(saved.get(k, 0.0)) for k in self.keys]
            self.sums[i] = torch.tensor(row, dtype=torch.float64, device=self.device)
            self.counts[which] = {"n": int(saved.get("n", 0)), "batches": int(saved.get("batches", 0))}


@torch.no_grad()
def validate(model, loader, precision: Precision, *, loss_cfg, n_iter: int | None, noise: str,
             device: torch.device, reference_sources: bool = False, progress=None) -> dict[str, float]:
    """Mean loss terms and metrics over a loader (model in eval mode).

    Keys: loss terms (per-batch means weighted by batch size), 'mse' ([0, 1] images, paper metric),
    'ssim', 'mse_model' (normalised flux units); with ``reference_sources`` also the same for the adjoint
    back-projection F^T y ('adjoint_*'), the RIM's flux-scaled start x_0 ('x0_*') and an all-zero
    source ('zero_*').  Everything is computed and summed on ``device`` (SSIM by
    :func:`astrorim.train.metrics.image_metrics_torch`, the evaluation protocol's settings) and read back
    once at the end.
    """
    model.eval()
    sums: dict[str, torch.Tensor] = {}
    n = 0

    def add(key, values):
        total = values.detach().to(torch.float64).sum()
        sums[key] = sums[key] + total if key in sums else total

    for batch in loader:
        y, target, sigma, truth = prepare_batch(batch, device, noise, check_finite=False)
        b = y.shape[0]
        with precision.autocast():
            out = model(y, sigma, n_iter=n_iter)
            terms = compute_loss(model, out, y, target, truth, loss_cfg)
        for k, v in terms.items():
            if k != "mse":
                add(k, v * b)
        candidates = {"": out["source"]}
        if reference_sources:
            op = model.forward_operator.bind(out["params"])
            candidates["adjoint_"] = op.adjoint(y)
            candidates["x0_"] = model.rim.initial_source(y, op)
            candidates["zero_"] = torch.zeros_like(target)
        t = target.float()
        for prefix, pred in candidates.items():
            p = pred.float()
            add(prefix + "mse_model", (p - t).pow(2).mean(dim=(1, 2)))
            m = image_metrics_torch(p, t)
            add(prefix + "mse", m["mse01"])
            add(prefix + "ssim", m["ssim"])
            add("_bad_peaks", m["bad_peak"])
        n += b
        if progress is not None:
            progress.update(1)
    if n == 0:
        raise ValueError("validation loader yielded no examples")
    values = dict(zip(sums, torch.stack(list(sums.values())).tolist()))
    if values.pop("_bad_peaks"):
        raise ValueError("validation: a target source has no positive, finite peak; the [0, 1] normalisation "
                         "of the evaluation protocol needs one (astrorim.evaluate.metrics.normalise)")
    return {k: v / n for k, v in values.items()}
