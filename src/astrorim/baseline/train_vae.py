"""Training the source VAE by maximising the ELBO with Adam (paper 003 §2.2), in plain torch.

Minibatches of ``batch_size`` images; Adam with the paper's (lr, beta1, beta2) = (1e-6, 0.5, 0.999)
unless configured otherwise, at a constant rate (the paper's) or, with ``lr_final_factor`` < 1, annealed
on a cosine from ``lr`` to ``lr * lr_final_factor`` over ``max_epochs`` (a CPU-scale run needs a rate
far above the paper's to train in tens of epochs, and then the validation ELBO jitters by several
hundred nats unless the rate comes down).  With ``augment='dihedral'`` every training image is shown
in a random one of its 8 right-angle rotations and reflections each epoch: exact (no resampling), it
multiplies the scarce real-morphology images and keeps the prior from preferring orientations, which a
lens fit would otherwise read as lens orientation.  The mean validation ELBO is monitored after every
epoch and training stops when it has not improved for ``patience`` epochs (the paper stops "when it
starts increasing", at ~450 epochs).  The returned model holds the weights of the best validation epoch.

With ``grad_clip`` > 0 the total gradient norm of a minibatch is clipped to it (the paper does not clip; at
the high rates of CPU-scale runs the encoder's sigma = exp(.) can run away, and one exploding gradient then
wrecks Adam's second moments).  A minibatch whose loss or gradient is not finite is skipped without an update,
as the AstroRIM trainer does; ``MAX_CONSECUTIVE_SKIPS`` in a row stop the training with an error.  Skipped and
clipped minibatches are counted per epoch in the history.

With ``resume_path``, the whole training state (weights, best weights, Adam, schedule, random streams,
history) is written there atomically after every epoch, and a restarted run continues from it: bit for
bit the run it would have been, so an interrupted paper-scale training (hours) loses at most one epoch.
A state written with another architecture, training configuration or data set is refused.

``device`` ('cpu', 'cuda[:N]' or 'auto') is where the training runs; the returned model is on the CPU.  The
random streams stay on the CPU generator, so a CPU run is bit-identical to one before the option existed;
a CUDA run is deterministic up to cuDNN's kernels.  The device is not part of the resumable state's
setup: a state written on a GPU continues on the CPU and vice versa.
"""

from __future__ import annotations

import copy
import hashlib
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from astrorim.baseline.vae import VAE, VAEConfig, elbo
from astrorim.io.atomic import atomic_path
from astrorim.train.config import config_hash
from astrorim.train.state import capture_rng_state, check_config, restore_rng_state
from astrorim.train.step import resolve_device


AUGMENTATIONS = ("none", "dihedral")
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:[0-9]+)?")
RESUME_FORMAT = "astrorim-baseline-vae-training-state-v2"
MAX_CONSECUTIVE_SKIPS = 20


def random_dihedral(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each (..., H, W) image of the batch in a random element of the dihedral group D4 (a reflection
    about the vertical axis or not, then 0-3 quarter turns), drawn independently per image."""
    n = images.shape[0]
    flip = torch.randint(0, 2, (n,), generator=generator).bool().to(images.device)
    quarter_turns = torch.randint(0, 4, (n,), generator=generator).to(images.device)
    out = torch.where(flip.view(-1, *([1] * (images.ndim - 1))), images.flip(-1), images)
    for turns in (1, 2, 3):
        chosen = quarter_turns == turns
        out[chosen] = torch.rot90(out[chosen], turns, dims=(-2, -1))
    return out


@dataclass(frozen=True)
class TrainConfig:
    lr: float = 1e-6
    lr_final_factor: float = 1.0
    augment: str = "none"
    betas: tuple[float, float] = (0.5, 0.999)
    batch_size: int = 32
    max_epochs: int = 450
    patience: int = 10
    particles: int = 1
    grad_clip: float = 0.0   # max total gradient norm of the loss [nats per image]; 0 = no clipping
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self):
        if (self.lr <= 0 or self.batch_size < 1 or self.max_epochs < 1 or self.patience < 1 or self.particles < 1
                or self.grad_clip < 0):
            raise ValueError(f"invalid VAE training configuration {self}")
        if not 0 < self.lr_final_factor <= 1:
            raise ValueError(f"lr_final_factor must be in (0, 1], got {self.lr_final_factor}")
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"augment must be one of {AUGMENTATIONS}, got {self.augment!r}")
        if not DEVICE_PATTERN.fullmatch(self.device):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {self.device!r}")

    def to_dict(self) -> dict:
        return {**asdict(self), "betas": list(self.betas)}


@dataclass
class TrainHistory:
    """Per-epoch mean ELBO [nats per image] on the training minibatches and on the validation set, the
    learning rate each epoch ran at, the minibatches it skipped for a non-finite loss or gradient and those whose
    gradient it clipped; and the device the (last part of the) training ran on, which 'auto' leaves open."""

    train_elbo: list[float] = field(default_factory=list)
    val_elbo: list[float] = field(default_factory=list)
    learning_rate: list[float] = field(default_factory=list)
    skipped_batches: list[int] = field(default_factory=list)
    clipped_batches: list[int] = field(default_factory=list)
    best_epoch: int = -1
    wall_s: float = 0.0
    device: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def mean_elbo(vae: VAE, images: torch.Tensor, batch_size: int = 256, seed: int = 0) -> float:
    """Mean ELBO [nats per image] of ``images`` (N, 64, 64) in eval mode, with a fixed noise seed."""
    was_training = vae.training
    vae.eval()
    gen = torch.Generator().manual_seed(seed)
    total = 0.0
    for start in range(0, len(images), batch_size):
        total += float(elbo(vae, images[start:start + batch_size], generator=gen).sum())
    vae.train(was_training)
    return total / max(len(images), 1)


def train_vae(train_images: np.ndarray | torch.Tensor, val_images: np.ndarray | torch.Tensor,
              vae_config: VAEConfig, train_config: TrainConfig, progress: bool = True,
              resume_path: str | os.PathLike | None = None) -> tuple[VAE, TrainHistory]:
    """Train a VAE on (N, 64, 64) images (already normalised); deterministic given ``train_config.seed``.

    ``resume_path``: where to keep the resumable training state (module docstring); None keeps none."""
    train = torch.as_tensor(np.asarray(train_images, dtype=np.float32))
    val = torch.as_tensor(np.asarray(val_images, dtype=np.float32))
    for name, arr in (("train", train), ("val", val)):
        if arr.ndim != 3 or arr.shape[1:] != (64, 64):
            raise ValueError(f"{name} images must be (N, 64, 64), got {tuple(arr.shape)}")
        if len(arr) == 0:
            raise ValueError(f"{name} set is empty")
    device = resolve_device(train_config.device, key="baseline.vae.device")
    torch.manual_seed(train_config.seed)
    vae = VAE(vae_config).to(device)  # before the optimiser, so that a resumed Adam state lands on the device
    opt = torch.optim.Adam(vae.parameters(), lr=train_config.lr, betas=tuple(train_config.betas))
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
        opt, T_max=train_config.max_epochs, eta_min=train_config.lr * train_config.lr_final_factor)
    gen = torch.Generator().manual_seed(train_config.seed + 1)
    state = _LoopState(history=TrainHistory())
    hashed = _hashed_setup(vae_config, train_config, train, val)
    if resume_path is not None and Path(resume_path).exists():
        state = _load_resume_state(Path(resume_path), hashed, vae, opt, schedule, gen)
    train, val = train.to(device), val.to(device)
    state.history.device = str(device)
    t0 = time.perf_counter() - state.history.wall_s
    bar = tqdm(range(state.next_epoch, train_config.max_epochs), desc="VAE epochs", disable=not progress,
               initial=state.next_epoch, total=train_config.max_epochs)
    for epoch in bar:
        if state.epochs_since_best >= train_config.patience:
            break
        vae.train()
        order = torch.randperm(len(train), generator=gen)
        epoch_sum, seen, skipped, clipped = 0.0, 0, 0, 0
        for start in range(0, len(train), train_config.batch_size):
            batch = train[order[start:start + train_config.batch_size]]
            if len(batch) < 2:  # BatchNorm needs more than one example in train mode
                continue
            if train_config.augment == "dihedral":
                batch = random_dihedral(batch, gen)
            running_stats = {name: buf.clone() for name, buf in vae.named_buffers()}  # BatchNorm's
            loss = -elbo(vae, batch, particles=train_config.particles, generator=gen).mean()
            grad_norm = loss.detach()
            if torch.isfinite(loss):
                opt.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(vae.parameters(), train_config.grad_clip or float("inf"))
            if not torch.isfinite(grad_norm):  # leave no trace: the forward pass updated the running statistics
                with torch.no_grad():
                    for name, buf in vae.named_buffers():
                        buf.copy_(running_stats[name])
                skipped, state.consecutive_skips = skipped + 1, state.consecutive_skips + 1
                if state.consecutive_skips >= MAX_CONSECUTIVE_SKIPS:
                    raise FloatingPointError(
                        f"VAE loss or gradient was not finite in {state.consecutive_skips} minibatches in a row "
                        f"(epoch {epoch}, loss {float(loss.detach())}); lower the learning rate (now "
                        f"{opt.param_groups[0]['lr']:.3g}) or set grad_clip")
                continue
            state.consecutive_skips = 0
            clipped += int(0 < train_config.grad_clip < float(grad_norm))
            opt.step()
            epoch_sum += -float(loss.detach()) * len(batch)
            seen += len(batch)
        history = state.history
        history.train_elbo.append(epoch_sum / max(seen, 1))
        history.skipped_batches.append(skipped)
        history.clipped_batches.append(clipped)
        history.learning_rate.append(opt.param_groups[0]["lr"])
        schedule.step()
        val_elbo = mean_elbo(vae, val, seed=train_config.seed + 2)
        history.val_elbo.append(val_elbo)
        bar.set_postfix(train=f"{history.train_elbo[-1]:.4g}", val=f"{val_elbo:.4g}")
        if val_elbo > state.best_val:
            state.best_weights, history.best_epoch = copy.deepcopy(vae.state_dict()), epoch
        history.wall_s = time.perf_counter() - t0
        if resume_path is not None:
            _save_resume_state(Path(resume_path), hashed, state, vae, opt, schedule, gen)
    vae.load_state_dict(state.best_weights)
    vae.to("cpu").eval()
    return vae, state.history


@dataclass
class _LoopState:
    """What the epoch loop carries besides the model, optimiser, schedule and generator; the epoch counters
    follow from the history."""

    history: TrainHistory
    best_weights: dict | None = None
    consecutive_skips: int = 0

    @property
    def next_epoch(self) -> int:
        return len(self.history.val_elbo)

    @property
    def best_val(self) -> float:
        return self.history.val_elbo[self.history.best_epoch] if self.history.best_epoch >= 0 else -float("inf")

    @property
    def epochs_since_best(self) -> int:
        return self.next_epoch - 1 - self.history.best_epoch


def _hashed_setup(vae_config: VAEConfig, train_config: TrainConfig, train: torch.Tensor, val: torch.Tensor) -> dict:
    """What a resumed run must share with the run that wrote the state: architecture, training configuration
    (but not the device: a run may move between a GPU and the CPU) and the exact training and validation images."""
    data = hashlib.sha256()
    for arr in (train, val):
        data.update(str(tuple(arr.shape)).encode())
        data.update(arr.numpy().tobytes())
    train_setup = {k: v for k, v in train_config.to_dict().items() if k != "device"}
    return {"vae": vae_config.to_dict(), "train": train_setup, "data_sha256": data.hexdigest()}


def _save_resume_state(path: Path, hashed: dict, state: _LoopState, vae: VAE, opt, schedule, gen) -> None:
    payload = {"format": RESUME_FORMAT, "config_hash": config_hash(hashed),
               "training_state": {"hashed_config": hashed},  # the layout check_config reads
               "consecutive_skips": state.consecutive_skips, "history": state.history.to_dict(),
               "model_state": vae.state_dict(),
               "best_weights": state.best_weights, "optimizer_state": opt.state_dict(),
               "scheduler_state": schedule.state_dict(), "generator_state": gen.get_state(),
               "rng_state": capture_rng_state()}
    with atomic_path(path, suffix=".pt.partial") as tmp:
        torch.save(payload, tmp)


def _load_resume_state(path: Path, hashed: dict, vae: VAE, opt, schedule, gen) -> _LoopState:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # a truncated file cannot come from the atomic writer, but a copied one can
        raise ValueError(f"{path}: unreadable VAE training state ({err}); delete it to start over") from err
    if not isinstance(payload, dict) or payload.get("format") != RESUME_FORMAT:
        raise ValueError(f"{path}: not a VAE training state ({RESUME_FORMAT}); delete it to start over")
    check_config(path, payload, config_hash(hashed), hashed)
    vae.load_state_dict(payload["model_state"])
    opt.load_state_dict(payload["optimizer_state"])
    schedule.load_state_dict(payload["scheduler_state"])
    gen.set_state(payload["generator_state"])
    restore_rng_state(payload["rng_state"])
    return _LoopState(history=TrainHistory(**payload["history"]), best_weights=payload["best_weights"],
                      consecutive_skips=int(payload["consecutive_skips"]))
