"""Optimisation (paper §3.3.4): AdamW with two learning rates, warm-up + plateau schedule, EMA weights.

Parameter groups: the RIM (eta_RIM) and the forward operator — encoder, PSF, background — (eta_forward).
Weight decay applies to convolution and linear weights only (not to biases, GroupNorm gains, or the
physical scalars of the PSF and background, which decay would pull towards exp(0) = 1 pixel).

Schedule (:class:`WarmupPlateau`): lr = base_lr x warm-up factor x plateau factor.  The warm-up
factor rises linearly per optimiser step, (step + 1) / warmup_steps, to 1 over ``warmup_epochs``.
The plateau factor starts at 1 and is halved (``factor``) when the validation loss has not improved
by a relative ``threshold`` for ``patience`` epochs (torch's ReduceLROnPlateau rule, 'rel' mode),
counted only after the warm-up.

EMA (eq. 51): a shadow copy of every floating-point parameter and buffer,
phi_EMA <- d phi_EMA + (1 - d) phi after each optimiser step.  With ``warmup`` the decay is
d_t = min(decay, (1 + t) / (10 + t)) (t = updates so far), so that short runs are not dominated by the
random initialisation (at decay 0.999 the plain EMA would still hold 37 % of the initial weights after
1000 steps); it reaches 0.999 after ~9000 steps.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

NO_DECAY_MODULES = (nn.GroupNorm, nn.LayerNorm, nn.BatchNorm2d)


def parameter_groups(model: nn.Module, lr_rim: float, lr_forward: float, weight_decay: float) -> list[dict]:
    """AdamW groups: (rim | forward) x (decay | no decay); every trainable parameter exactly once."""
    no_decay_ids = set()
    for module in model.modules():
        if isinstance(module, NO_DECAY_MODULES):
            no_decay_ids.update(id(p) for p in module.parameters(recurse=False))
    groups = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        component = "rim" if name.startswith("rim.") else "forward"
        if not (name.startswith("rim.") or name.startswith("encoder.") or name.startswith("forward_operator.")):
            raise ValueError(f"parameter {name!r} belongs to neither the RIM nor the forward operator")
        decay = p.ndim >= 2 and id(p) not in no_decay_ids and name.endswith("weight")
        key = (component, decay)
        if key not in groups:
            groups[key] = {"params": [], "names": [], "component": component,
                           "lr": lr_rim if component == "rim" else lr_forward,
                           "weight_decay": weight_decay if decay else 0.0}
        groups[key]["params"].append(p)
        groups[key]["names"].append(name)
    ordered = [groups[k] for k in sorted(groups)]
    for g in ordered:
        g["base_lr"] = g["lr"]
    return ordered


def fused_adamw_supported(device: torch.device | str) -> bool:
    """torch's fused AdamW runs on CUDA (torch >= 2.0) and on the CPU from torch 2.4 on."""
    device = torch.device(device)
    if device.type == "cuda":
        return True
    return device.type == "cpu" and torch.torch_version.TorchVersion(torch.__version__) >= (2, 4)


def make_optimizer(model: nn.Module, lr_rim: float, lr_forward: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over :func:`parameter_groups`, fused where torch supports it on the model's device.

    The fused kernel matters on a GPU: it can skip a step on the device (:func:`step_unless_non_finite`),
    so a step never waits for the GPU to say whether the loss was finite, and it reads its step counters
    on the device (the foreach AdamW reads each group's counter back to the host every step).
    """
    groups = parameter_groups(model, lr_rim, lr_forward, weight_decay)
    device = next(model.parameters()).device
    return torch.optim.AdamW(groups, lr=lr_rim, weight_decay=weight_decay,
                             fused=fused_adamw_supported(device) or None)


def step_unless_non_finite(optimizer: torch.optim.Optimizer, non_finite: torch.Tensor) -> None:
    """``optimizer.step()`` unless ``non_finite`` (a 0-d float tensor, 1.0 or 0.0) is set.

    A fused AdamW takes the flag as its ``found_inf`` (the GradScaler's mechanism) and skips the update,
    step counters included, on the device: no host synchronisation.  Any other optimiser needs the flag on
    the host (one synchronisation).
    """
    if optimizer.defaults.get("fused"):
        optimizer.found_inf = non_finite.to(torch.float32)
        try:
            optimizer.step()
        finally:
            del optimizer.found_inf
    elif not bool(non_finite):
        optimizer.step()


def component_lrs(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """Current learning rate of the 'rim' and 'forward' groups."""
    return {g["component"]: g["lr"] for g in optimizer.param_groups}


class WarmupPlateau:
    """Linear warm-up per step, then ReduceLROnPlateau per epoch; state_dict-able."""

    def __init__(self, optimizer: torch.optim.Optimizer, warmup_steps: int, patience: int, factor: float,
                 threshold: float = 1e-4, warmup_epochs: float = 0.0):
        self.optimizer = optimizer
        self.warmup_steps = int(warmup_steps)
        self.warmup_epochs = float(warmup_epochs)
        self.patience = int(patience)
        self.factor = float(factor)
        self.threshold = float(threshold)
        self.step_count = 0
        self.plateau_scale = 1.0
        self.best = math.inf
        self.bad_epochs = 0
        self.reductions: list[int] = []
        self._apply()

    def warmup_factor(self) -> float:
        if self.warmup_steps <= 0:
            return 1.0
        return min(1.0, (self.step_count + 1) / self.warmup_steps)

    def _apply(self) -> None:
        f = self.warmup_factor() * self.plateau_scale
        for g in self.optimizer.param_groups:
            g["lr"] = g["base_lr"] * f

    def step_batch(self) -> None:
        """Call after each optimiser step."""
        self.step_count += 1
        self._apply()

    def step_epoch(self, epoch: int, val_loss: float) -> bool:
        """Call after validating epoch ``epoch`` (0-based); returns True when the rates were reduced."""
        if epoch + 1 <= self.warmup_epochs or not math.isfinite(val_loss):
            return False
        if val_loss < self.best * (1.0 - self.threshold):
            self.best = val_loss
            self.bad_epochs = 0
            return False
        self.bad_epochs += 1
        if self.bad_epochs > self.patience:
            self.plateau_scale *= self.factor
            self.bad_epochs = 0
            self.reductions.append(int(epoch))
            self._apply()
            return True
        return False

    def state_dict(self) -> dict:
        return {"step_count": self.step_count, "plateau_scale": self.plateau_scale, "best": self.best,
                "bad_epochs": self.bad_epochs, "reductions": list(self.reductions),
                "warmup_steps": self.warmup_steps}

    def load_state_dict(self, state: dict) -> None:
        self.step_count = int(state["step_count"])
        self.plateau_scale = float(state["plateau_scale"])
        self.best = float(state["best"])
        self.bad_epochs = int(state["bad_epochs"])
        self.reductions = list(state["reductions"])
        self.warmup_steps = int(state["warmup_steps"])
        self._apply()


class EMA:
    """Exponential moving average of a model's floating-point state (parameters and buffers)."""

    def __init__(self, model: nn.Module, decay: float, warmup: bool = True):
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.updates = 0
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    def current_decay(self) -> float:
        if self.warmup:
            return min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        return self.decay

    @torch.no_grad()
    def update(self, model: nn.Module, applied: torch.Tensor | None = None) -> None:
        """One EMA step towards ``model``.  ``applied`` (a 0-d tensor, 1.0 or 0.0) scales the step on the
        device: 0 after a skipped optimiser step leaves the shadow weights as they are without a host
        synchronisation (the warm-up counter still advances)."""
        d = self.current_decay()
        ema_state = self.model.state_dict()
        shadow, live = [], []
        for name, value in model.state_dict().items():
            target = ema_state[name]
            if target.dtype.is_floating_point:
                shadow.append(target)
                live.append(value.detach().to(target.dtype))
            elif applied is None:
                target.copy_(value)
            else:
                target.copy_(torch.where(applied > 0, value, target))
        if shadow:
            if applied is None:
                torch._foreach_lerp_(shadow, live, 1.0 - d)
            else:
                step = torch._foreach_sub(live, shadow)
                torch._foreach_mul_(step, (1.0 - d) * applied.to(shadow[0].device, torch.float32))
                torch._foreach_add_(shadow, step)
        self.updates += 1

    def state_dict(self) -> dict:
        return {"updates": self.updates, "decay": self.decay, "warmup": self.warmup}

    def load_state_dict(self, state: dict, weights: dict) -> None:
        self.updates = int(state["updates"])
        self.model.load_state_dict(weights)
