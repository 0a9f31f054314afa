"""The ``training`` section of a workflow configuration, as frozen dataclasses with the paper's defaults.

Every key has a default (paper §3.3 values), so ``training: {}`` is a paper-faithful set-up; unknown keys
are errors naming the key.  See docs/training.md for the meaning of each key and the proposed schema.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

ITERATE_WEIGHT_SCHEMES = ("linear", "uniform", "last")

# Paper eq. 48-49 with the constants translated to our parameter units (docs/training.md, "Parameter
# penalties").  Our b is the Einstein radius in half-field units (typical b ~ 0.5), kappa_s = rho_s r_s /
# Sigma_crit and r_s in half-field units (the simulated group halos have r_s ~ 1-15).
DEFAULT_PARAM_PRIOR = {"b": 0.5, "q": 0.7, "kappa_s": 0.01, "r_s": 5.0}
DEFAULT_PARAM_RANGE = {"b_max": 1.0, "gamma_ref": 0.05}


class TrainingConfigError(ValueError):
    """The training section is invalid; the message names the key."""


def build_config_section(cls, values: dict | None, where: str):
    """``cls(**values)``; an unknown key, a wrong type or a failed check raises TrainingConfigError naming ``where``."""
    values = dict(values or {})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise TrainingConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise TrainingConfigError(f"{where}: {exc}") from exc


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass(frozen=True)
class AugmentConfig:
    flip_prob: float = 0.5        # each of the x- and y-mirror
    rot90_prob: float = 0.5       # a rotation by k x 90 deg, k ~ U{1,2,3}

    def __post_init__(self):
        for name in ("flip_prob", "rot90_prob"):
            _check(0.0 <= getattr(self, name) <= 1.0, f"{name} must be in [0, 1], got {getattr(self, name)}")


@dataclass(frozen=True)
class LossConfig:
    iterate_weights: str = "linear"   # w_t ∝ t over the T iterates (sum 1); 'uniform' or 'last' (eq. 44)
    lambda_fwd: float = 0.5           # eq. 45
    lambda_psf: float = 1.0e-3        # eq. 46
    lambda_param: float = 1.0e-3      # eq. 47-49
    lambda_supervised: float = 0.0    # optional supervised loss on the nine parameters (off by default)
    param_prior: dict = field(default_factory=lambda: dict(DEFAULT_PARAM_PRIOR))
    param_range: dict = field(default_factory=lambda: dict(DEFAULT_PARAM_RANGE))

    def __post_init__(self):
        _check(self.iterate_weights in ITERATE_WEIGHT_SCHEMES,
               f"iterate_weights must be one of {ITERATE_WEIGHT_SCHEMES}, got {self.iterate_weights!r}")
        for name in ("lambda_fwd", "lambda_psf", "lambda_param", "lambda_supervised"):
            _check(getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")
        prior = {**DEFAULT_PARAM_PRIOR, **self.param_prior}
        rng = {**DEFAULT_PARAM_RANGE, **self.param_range}
        _check(set(prior) == set(DEFAULT_PARAM_PRIOR),
               f"param_prior keys must be {sorted(DEFAULT_PARAM_PRIOR)}, got {sorted(self.param_prior)}")
        _check(set(rng) == set(DEFAULT_PARAM_RANGE),
               f"param_range keys must be {sorted(DEFAULT_PARAM_RANGE)}, got {sorted(self.param_range)}")
        object.__setattr__(self, "param_prior", {k: float(v) for k, v in prior.items()})
        object.__setattr__(self, "param_range", {k: float(v) for k, v in rng.items()})


@dataclass(frozen=True)
class PhaseConfig:
    """Schedule of one training phase (initial training or finetuning)."""

    epochs: int = 30
    lr_rim: float = 5.0e-5
    lr_forward: float = 5.0e-6          # encoder + PSF + background
    warmup_epochs: float = 5.0          # linear warm-up from 0, per optimiser step
    plateau_patience: int = 6           # ReduceLROnPlateau on the validation loss (after warm-up)
    plateau_factor: float = 0.5
    plateau_threshold: float = 1.0e-4   # relative improvement that counts (torch's default)
    early_stopping_patience: int = 0    # epochs without val-MSE improvement before stopping; 0 = off

    def __post_init__(self):
        _check(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        _check(self.lr_rim > 0 and self.lr_forward > 0, "learning rates must be > 0")
        _check(self.warmup_epochs >= 0, f"warmup_epochs must be >= 0, got {self.warmup_epochs}")
        _check(self.plateau_patience >= 0, "plateau_patience must be >= 0")
        _check(0 < self.plateau_factor < 1, f"plateau_factor must be in (0, 1), got {self.plateau_factor}")
        _check(self.early_stopping_patience >= 0, "early_stopping_patience must be >= 0")


DEFAULT_FINETUNE = {"epochs": 30, "lr_rim": 5.0e-6, "lr_forward": 5.0e-7, "warmup_epochs": 0.0,
                    "early_stopping_patience": 5}


@dataclass(frozen=True)
class TrainingConfig:
    seed: int = 0
    batch_size: int = 8                 # paper §3.4
    val_batch_size: int = 0             # 0: same as batch_size
    num_workers: int = 2
    torch_threads: int = 0              # torch intra-op threads; 0 = the rule's `threads` (see docs/training.md)
    device: str = "auto"                # auto | cpu | cuda | cuda:N
    amp: str = "auto"                   # auto (CUDA: bf16 if supported, else fp16 + GradScaler) | off
    n_iter: int = 0                     # RIM iterations while training; 0 = the model's n_iter
    grad_clip: float = 5.0              # global gradient-norm clip (eq. 50)
    ema_decay: float = 0.999            # eq. 51
    ema_warmup: bool = True             # decay_t = min(ema_decay, (1 + t) / (10 + t))
    weight_decay: float = 0.01          # AdamW (torch default; not stated in the paper)
    checkpoint_every_s: float = 600.0   # mid-epoch resumable checkpoints (0 = only at epoch ends)
    checkpoint_every_batches: int = 0   # also every this many batches (0 = off)
    log_every_steps: int = 50           # a row of steps.csv every this many optimiser steps (and at epoch ends)
    warm_start: str = ""                # model checkpoint whose PSF/RIM weights the initial phase starts from
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    initial: PhaseConfig = field(default_factory=PhaseConfig)
    finetune: PhaseConfig = field(default_factory=lambda: PhaseConfig(**DEFAULT_FINETUNE))

    def __post_init__(self):
        if isinstance(self.amp, bool):  # YAML 1.1 reads a bare `off` as false
            object.__setattr__(self, "amp", "auto" if self.amp else "off")
        _check(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        _check(self.val_batch_size >= 0, "val_batch_size must be >= 0")
        _check(self.num_workers >= 0, "num_workers must be >= 0")
        _check(self.torch_threads >= 0, "torch_threads must be >= 0")
        _check(self.amp in ("auto", "off"), f"amp must be 'auto' or 'off', got {self.amp!r}")
        _check(self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"),
               f"device must be auto, cpu or cuda[:N], got {self.device!r}")
        _check(self.n_iter >= 0, "n_iter must be >= 0")
        _check(self.grad_clip > 0, "grad_clip must be > 0")
        _check(0 <= self.ema_decay < 1, f"ema_decay must be in [0, 1), got {self.ema_decay}")
        _check(self.checkpoint_every_s >= 0 and self.checkpoint_every_batches >= 0,
               "checkpoint intervals must be >= 0")
        _check(self.log_every_steps >= 1, f"log_every_steps must be >= 1, got {self.log_every_steps}")

    def phase(self, name: str) -> PhaseConfig:
        if name not in ("initial", "finetune"):
            raise ValueError(f"unknown training phase {name!r}; expected 'initial' or 'finetune'")
        return getattr(self, name)

    @property
    def eval_batch_size(self) -> int:
        return self.val_batch_size or self.batch_size

    @classmethod
    def from_dict(cls, section: dict | None, where: str = "training") -> "TrainingConfig":
        section = dict(section or {})
        nested = {"augment": AugmentConfig, "loss": LossConfig, "initial": PhaseConfig}
        for key, sub in nested.items():
            if key in section:
                section[key] = build_config_section(sub, section[key], f"{where}.{key}")
        if "finetune" in section:
            section["finetune"] = build_config_section(PhaseConfig, {**DEFAULT_FINETUNE, **(section["finetune"] or {})},
                                         f"{where}.finetune")
        return build_config_section(cls, section, where)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# Keys that change how a run executes but not what it computes: excluded from the configuration hash,
# so that a run may resume on another device or with more epochs.
OPERATIONAL_KEYS = ("num_workers", "torch_threads", "device", "checkpoint_every_s", "checkpoint_every_batches",
                    "log_every_steps", "epochs")


def _strip(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _strip(v) for k, v in d.items() if k not in OPERATIONAL_KEYS}
    return d


def hashed_training_config(model_config: dict, training: TrainingConfig, phase: str,
                           data_streams: list[dict], npix: int, init: dict | None = None) -> dict:
    """The configuration a checkpoint's hash covers (everything that changes what training computes)."""
    t = _strip(training.to_dict())
    t = {k: v for k, v in t.items() if k not in ("initial", "finetune")}
    t["schedule"] = _strip(dataclasses.asdict(training.phase(phase)))
    streams = [{k: s[k] for k in ("role", "phase", "version", "split", "seed", "start_index", "n")}
               for s in data_streams]
    out = {"phase": phase, "npix": int(npix), "model": model_config, "training": t, "data": streams}
    if init is not None:
        out["init"] = init
    return out


def config_hash(hashed: dict) -> str:
    """sha256 (first 16 hex digits) of the canonical JSON of a hashed configuration."""
    text = json.dumps(hashed, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """{'a.b.c': value} of nested dicts; lists are indexed ('data[3].seed')."""
    out: dict[str, Any] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(d, (list, tuple)) and d and all(isinstance(v, dict) for v in d):
        for i, v in enumerate(d):
            out.update(flatten(v, f"{prefix}[{i}]"))
        out[f"{prefix}.length"] = len(d)
    else:
        out[prefix] = d
    return out


def config_differences(saved: dict, current: dict) -> list[str]:
    """Human-readable 'key: saved -> current' lines for every differing flattened key."""
    a, b = flatten(saved), flatten(current)
    lines = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key, "<absent>"), b.get(key, "<absent>")
        if va != vb:
            lines.append(f"{key}: {va!r} -> {vb!r}")
    return lines
