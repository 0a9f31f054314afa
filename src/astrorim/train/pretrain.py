"""Supervised pre-training of the lens-parameter encoder on the simulator's truth (issue 23, docs/training.md).

The component encoder (:class:`astrorim.model.encoder.ComponentEncoder`) is trained alone, on the observations
of the training shards, against the true lens components (log b, e1, e2, x0, y0, gamma1, gamma2, kappa_s,
log r_s; :func:`astrorim.model.encoder.components_from_nine`), with the label-consistent D4 augmentation of
:mod:`astrorim.train.augment` (the nine parameters are transformed with the image, then converted) and a
heteroscedastic Gaussian negative log-likelihood: every component has a predicted 1-sigma, whose calibration
is reported as the fraction of validation truths inside the predicted 68 % interval (``coverage68_<name>``).

Observations are normalised exactly as in joint training (per-example scale q_0.995, linear), so the
pretrained encoder drops into the AstroRIM model unchanged.  The whole AstroRIM model is built and saved (the
RIM and PSF at their seeded initial values) so that the output is an ordinary model checkpoint which the joint
``train`` rule starts from, and the resumable state reuses :mod:`astrorim.train.state`:

    out_dir/resume/last.pt       resumable state (every ``checkpoint_every_s`` and at every epoch end)
    out_dir/encoder.pt           the published model checkpoint (EMA weights; meta phase 'pretrain_encoder')
    out_dir/metrics.csv          one row per epoch: train NLL, val NLL, coverage, theta_E / |de| / centre errors
    out_dir/summary.json         final validation metrics

The data stream is a pure function of (seed, epoch, position) (:class:`astrorim.train.data.EpochSampler`), the
learning-rate schedule a pure function of the step, and all states are restored on resume, so an interrupted
run continues bit-identically.  A ``deadline_s`` stops a run early with its state kept: the outputs are then
published from where it stopped (``stop_reason: deadline``) and a rerun with the same configuration continues.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from astrorim import __version__
from astrorim.io.atomic import atomic_path, write_text_atomic
from astrorim.model import AstroRIM, AstroRIMConfig
from astrorim.model.encoder import COMPONENT_NAMES, components_from_nine
from astrorim.model.normalisation import normalise, observation_scale
from astrorim.params import PARAMETER_NAMES
from astrorim.train.config import build_config_section, config_hash
from astrorim.train.data import EpochSampler, ShardDataset, make_loader
from astrorim.train.loss import gaussian_nll
from astrorim.train.optim import EMA
from astrorim.train.state import (check_config, read_training_checkpoint, restore_training_state,
                                  save_training_checkpoint)

log = logging.getLogger("astrorim.train")

PRETRAIN_STREAM = 2   # EpochSampler stream (initial training uses 0, finetuning 1)
OPERATIONAL = ("checkpoint_every_s", "deadline_s")   # epochs sets the schedule: hashed


@dataclass(frozen=True)
class PretrainConfig:
    """The ``pretrain`` section of a workflow configuration (config/schema.yaml)."""

    epochs: float = 4.0                 # passes over the training pairs (fractional: the schedule's length)
    batch_size: int = 32
    lr: float = 1.0e-3                  # AdamW, linear warm-up then cosine decay to lr_final_fraction x lr
    lr_final_fraction: float = 0.02
    warmup_steps: int = 200
    weight_decay: float = 1.0e-4
    grad_clip: float = 5.0
    ema_decay: float = 0.999
    seed: int = 0
    phases: tuple = ("initial",)        # simulation phases whose train split is trained on (val: first phase's)
    checkpoint_every_s: float = 300.0
    deadline_s: float = 0.0             # stop (resumable) after this many seconds of this process; 0 = none

    def __post_init__(self):
        object.__setattr__(self, "phases", tuple(self.phases))
        if self.epochs <= 0 or self.batch_size < 1 or self.lr <= 0 or self.warmup_steps < 0:
            raise ValueError("pretrain: epochs and lr must be > 0, batch_size >= 1, warmup_steps >= 0")
        if not 0 < self.lr_final_fraction <= 1 or not 0 <= self.ema_decay < 1 or self.grad_clip <= 0:
            raise ValueError("pretrain: lr_final_fraction in (0, 1], ema_decay in [0, 1), grad_clip > 0")
        if not self.phases or any(p not in ("initial", "finetune") for p in self.phases):
            raise ValueError(f"pretrain.phases must name initial and/or finetune, got {list(self.phases)}")

    @classmethod
    def from_dict(cls, section: dict | None) -> "PretrainConfig":
        return build_config_section(cls, section, "pretrain")

    def hashed(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()
                if k not in OPERATIONAL}


def prepare(batch: dict, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(normalised observation (B, H, W), true nine parameters (B, 9)) as in joint training."""
    non_blocking = device.type == "cuda"
    y = batch["observed"].to(device, non_blocking=non_blocking).float()
    return normalise(y, observation_scale(y)), batch["params"].to(device, non_blocking=non_blocking).float()


def cosine_lr_factor(step: int, total_steps: int, warmup_steps: int, final_fraction: float) -> float:
    """Learning-rate multiplier at optimiser step ``step``: linear warm-up, then cosine to ``final_fraction``."""
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(total_steps - warmup_steps, 1)
    t = min(max(step - warmup_steps, 0) / span, 1.0)
    return final_fraction + (1.0 - final_fraction) * 0.5 * (1.0 + math.cos(math.pi * t))


@torch.no_grad()
def evaluate_encoder(encoder, loader, device: torch.device) -> dict[str, float]:
    """Validation NLL, per-component 68 % coverage, and the recovery errors the issue's targets name:
    theta_E (= b) median relative error, median |de| and |dgamma| (component distances), centre error in
    pixels (half field = npix / 2 pixels)."""
    encoder.eval()
    keep = {k: [] for k in ("nll", "b_rel", "de", "dg", "centre_pix")}
    inside = {k: [] for k in COMPONENT_NAMES}
    nll_per = {k: [] for k in COMPONENT_NAMES}
    for batch in loader:
        y, params = prepare(batch, device)
        nine, comp, sigma = encoder.predict(y)
        truth, masks = components_from_nine(params)
        total, per = gaussian_nll(comp, sigma, truth, masks)
        n = y.shape[0]
        keep["nll"].append(np.full(n, float(total)))
        for k in COMPONENT_NAMES:
            m = masks[k].cpu().numpy()
            nll_per[k].append(np.full(int(m.sum()), float(per[k])))
            hit = ((truth[k] - comp[k]).abs() <= sigma[k]).cpu().numpy()
            inside[k].append(hit[m])
        b_true = params[:, PARAMETER_NAMES.index("b")]
        keep["b_rel"].append(((nine["b"] - b_true).abs() / b_true).cpu().numpy())
        keep["de"].append(torch.hypot(comp["e1"] - truth["e1"], comp["e2"] - truth["e2"]).cpu().numpy())
        keep["dg"].append(torch.hypot(comp["gamma1"] - truth["gamma1"], comp["gamma2"] - truth["gamma2"]).cpu().numpy())
        half_pix = y.shape[-1] / 2
        keep["centre_pix"].append((half_pix * torch.hypot(comp["x0"] - truth["x0"], comp["y0"] - truth["y0"]))
                                  .cpu().numpy())
    cat = {k: np.concatenate(v) for k, v in keep.items()}
    out = {"nll": float(np.mean(cat["nll"])), "theta_e_median_rel_error": float(np.median(cat["b_rel"])),
           "e_median_abs_error": float(np.median(cat["de"])), "gamma_median_abs_error": float(np.median(cat["dg"])),
           "centre_median_error_pix": float(np.median(cat["centre_pix"]))}
    cov = []
    for k in COMPONENT_NAMES:
        hits = np.concatenate(inside[k])
        out[f"coverage68_{k}"] = float(hits.mean()) if hits.size else math.nan
        if hits.size:
            cov.append(hits.mean())
    out["coverage68_mean"] = float(np.mean(cov))
    return out


# ---------------------------------------------------------------------------------------------------- run
class PretrainInterrupted(RuntimeError):
    """A requested stop (signal) after the resumable state was written."""


@dataclass
class PretrainRun:
    model: AstroRIM
    cfg: PretrainConfig
    train_data: ShardDataset
    val_data: ShardDataset
    out_dir: Path
    hashed_config: dict
    meta: dict
    flip_prob: float = 0.5
    rot90_prob: float = 0.5
    device: str = "cpu"
    stop_flag: object = None
    num_workers: int = 0                  # DataLoader workers (training.num_workers; does not change the result)

    def __post_init__(self):
        self.out_dir = Path(self.out_dir)
        self.resume_dir = self.out_dir / "resume"
        self.hash = config_hash(self.hashed_config)
        self.device = torch.device(self.device)
        if not hasattr(self.model.encoder, "predict"):
            raise ValueError("pre-training needs model.encoder_heads: components (the periodic heads have no "
                             "sigma and no Cartesian components)")

    def _setup(self) -> None:
        c = self.cfg
        self.model.to(self.device)
        self.encoder = self.model.encoder
        self.ema = EMA(self.model, c.ema_decay, warmup=True)
        self.optimizer = torch.optim.AdamW(self.encoder.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        self.steps_per_epoch = len(self.train_data) // c.batch_size
        if self.steps_per_epoch < 1:
            raise ValueError(f"{len(self.train_data)} training pairs cannot fill one batch of {c.batch_size}")
        self.total_steps = max(1, round(c.epochs * self.steps_per_epoch))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: cosine_lr_factor(s, self.total_steps, c.warmup_steps, c.lr_final_fraction))
        self.sampler = EpochSampler(len(self.train_data), c.seed, stream=PRETRAIN_STREAM,
                                    flip_prob=self.flip_prob, rot90_prob=self.rot90_prob)
        pin = self.device.type == "cuda"
        self.train_loader = make_loader(self.train_data, c.batch_size, sampler=self.sampler, drop_last=True,
                                        num_workers=self.num_workers, pin_memory=pin)
        self.val_loader = make_loader(self.val_data, 256, num_workers=self.num_workers, pin_memory=pin)
        self.epoch, self.batch_in_epoch, self.global_step = 0, 0, 0
        self.history: list[dict] = []
        self.partial: dict = {}
        self.finished, self.stop_reason = False, ""

    def _try_resume(self) -> None:
        path = self.resume_dir / "last.pt"
        if not path.exists():
            return
        ckpt = read_training_checkpoint(path)
        check_config(path, ckpt, self.hash, self.hashed_config)
        ts = restore_training_state(ckpt, self.model, self.ema, self.optimizer, self.scheduler)
        self.epoch, self.batch_in_epoch = int(ckpt["epoch"]), int(ckpt["batch_in_epoch"])
        self.global_step = int(ckpt["global_step"])
        self.history, self.partial = list(ts["history"]), dict(ts["partial"])
        self.finished, self.stop_reason = bool(ts["finished"]), str(ts["stop_reason"])
        log.info("pretrain: resumed from %s at step %d/%d (epoch %d, batch %d)", path, self.global_step,
                 self.total_steps, self.epoch, self.batch_in_epoch)

    def _meta(self) -> dict:
        last = self.history[-1] if self.history else {}
        return {**self.meta, "phase": "pretrain_encoder", "config_hash": self.hash, "epoch": self.epoch,
                "global_step": self.global_step, "total_steps": self.total_steps, "training_seed": self.cfg.seed,
                "val": {k: v for k, v in last.items() if k.startswith("val_")},
                "astrorim_version": str(__version__), "torch_version": str(torch.__version__),
                "weights_for_evaluation": "ema_state"}

    def _save(self) -> None:
        self.resume_dir.mkdir(parents=True, exist_ok=True)
        sched = self.scheduler.state_dict()   # lr_lambdas: [None] (a plain function is rebuilt, not saved)
        ts = {"hashed_config": self.hashed_config, "ema": self.ema.state_dict(), "history": self.history,
              "partial": self.partial, "finished": self.finished, "stop_reason": self.stop_reason}
        save_training_checkpoint(self.resume_dir / "last.pt", self.model, self.ema.model, meta=self._meta(),
                                 epoch=self.epoch, batch_in_epoch=self.batch_in_epoch,
                                 global_step=self.global_step, config_hash=self.hash, optimizer=self.optimizer,
                                 scheduler=_SchedulerState(sched), scaler=None, training_state=ts)

    def _publish(self) -> None:
        from astrorim.model.checkpoint import save_model_checkpoint

        save_model_checkpoint(self.out_dir / "encoder.pt", self.model, ema_state=self.ema.model.state_dict(),
                              meta=self._meta())
        table = pd.DataFrame(self.history)
        with atomic_path(self.out_dir / "metrics.csv", suffix=".csv.partial") as tmp:
            table.to_csv(tmp, index=False, float_format="%.6g")

    def _step(self, batch: dict) -> float:
        y, params = prepare(batch, self.device)
        self.encoder.train()
        _, comp, sigma = self.encoder.predict(y)
        truth, masks = components_from_nine(params)
        loss, _ = gaussian_nll(comp, sigma, truth, masks)
        self.optimizer.zero_grad(set_to_none=True)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"pretrain step {self.global_step}: non-finite loss {float(loss)}")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.encoder.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.ema.update(self.model)
        return float(loss.detach())

    def run(self) -> dict:
        try:
            return self._run()
        finally:
            self._stop_loader_workers()

    def _stop_loader_workers(self) -> None:
        # A loop left by `break` keeps its persistent workers alive until garbage collection, where torch joins
        # each with a 5 s timeout: 60 s lost with 12 workers before the next stage of a GPU run could start.
        for loader in (getattr(self, "train_loader", None), getattr(self, "val_loader", None)):
            iterator = getattr(loader, "_iterator", None)
            if iterator is not None and hasattr(iterator, "_shutdown_workers"):
                iterator._shutdown_workers()
                loader._iterator = None

    def _run(self) -> dict:
        self._setup()
        self._try_resume()
        started = time.monotonic()
        last_save = last_log = started
        bs = self.cfg.batch_size
        while not self.finished and self.global_step < self.total_steps:
            self.sampler.set_epoch(self.epoch, self.batch_in_epoch * bs)
            sums = dict(self.partial) or {"loss": 0.0, "n": 0, "seconds": 0.0}
            t_epoch = time.monotonic()
            stopped = ""
            for batch in self.train_loader:
                sums["loss"] += self._step(batch) * bs
                sums["n"] += bs
                self.batch_in_epoch += 1
                self.global_step += 1
                now = time.monotonic()
                if now - last_log >= 30:
                    rate = sums["n"] / max(sums["seconds"] + now - t_epoch, 1e-9)
                    eta = (self.total_steps - self.global_step) * bs / max(rate, 1e-9)
                    log.info("pretrain step %d/%d (epoch %d, batch %d/%d): train NLL %.4f, %.0f samples/s, "
                             "ETA %.0f s", self.global_step, self.total_steps, self.epoch + 1, self.batch_in_epoch,
                             self.steps_per_epoch, sums["loss"] / max(sums["n"], 1), rate, eta)
                    last_log = now
                if self.global_step >= self.total_steps:
                    break
                if self.cfg.deadline_s and now - started >= self.cfg.deadline_s:
                    stopped = "deadline"
                elif self.stop_flag is not None and getattr(self.stop_flag, "requested", False):
                    stopped = "signal"
                if stopped or now - last_save >= self.cfg.checkpoint_every_s:
                    self.partial = {**sums, "seconds": sums["seconds"] + now - t_epoch}
                    self._save()
                    last_save = now
                if stopped:
                    break
            if stopped == "signal":
                raise PretrainInterrupted(f"pretrain stopped by a signal at step {self.global_step}; rerun to resume")
            sums["seconds"] += time.monotonic() - t_epoch
            epoch_done = self.batch_in_epoch >= self.steps_per_epoch or self.global_step >= self.total_steps
            if stopped == "deadline" and not epoch_done:
                self.stop_reason = "deadline"
                self.partial = sums
                self._save()
                val = evaluate_encoder(self.ema.model.encoder, self.val_loader, self.device)
                self._publish_with_row(sums, val)   # the partial row is published, not kept in the state
                log.info("pretrain: deadline reached at step %d/%d; state kept in %s, rerun to continue",
                         self.global_step, self.total_steps, self.resume_dir)
                return self._summary(val, time.monotonic() - started)
            val = evaluate_encoder(self.ema.model.encoder, self.val_loader, self.device)
            self.history.append(self._row(sums, val))
            log.info("pretrain epoch %d: train NLL %.4f | val NLL %.4f, theta_E %.2f %%, |de| %.3f, |dg| %.3f, "
                     "centre %.2f px, coverage68 %.3f | %.0f samples/s", self.epoch + 1, self.history[-1]["train_nll"],
                     val["nll"], 100 * val["theta_e_median_rel_error"], val["e_median_abs_error"],
                     val["gamma_median_abs_error"], val["centre_median_error_pix"], val["coverage68_mean"],
                     self.history[-1]["samples_per_s"])
            self.epoch += 1
            self.batch_in_epoch = 0
            self.partial = {}
            if self.global_step >= self.total_steps:
                self.finished, self.stop_reason = True, "max_steps"
            self._save()
            self._publish()
            last_save = time.monotonic()
        val = evaluate_encoder(self.ema.model.encoder, self.val_loader, self.device)
        self._publish()
        summary = self._summary(val, time.monotonic() - started)
        shutil.rmtree(self.resume_dir, ignore_errors=True)
        return summary

    def _row(self, sums: dict, val: dict, partial: bool = False) -> dict:
        return {"epoch": self.epoch + 1, "global_step": self.global_step, "partial_epoch": int(partial),
                "train_nll": sums["loss"] / max(sums["n"], 1), "samples_per_s": sums["n"] / max(sums["seconds"], 1e-9),
                "epoch_s": sums["seconds"], "lr": self.optimizer.param_groups[0]["lr"],
                **{f"val_{k}": v for k, v in val.items()}}

    def _publish_with_row(self, sums: dict, val: dict) -> None:
        self.history.append(self._row(sums, val, partial=True))
        try:
            self._publish()
        finally:
            self.history.pop()

    def _summary(self, val: dict, seconds: float) -> dict:
        summary = {"phase": "pretrain_encoder", "config_hash": self.hash, "global_step": self.global_step,
                   "total_steps": self.total_steps, "stop_reason": self.stop_reason or "max_steps",
                   "train_seconds": sum(r["epoch_s"] for r in self.history), "wall_seconds_this_process": seconds,
                   "n_train": len(self.train_data), "n_val": len(self.val_data), "val": val}
        import json

        write_text_atomic(self.out_dir / "summary.json", json.dumps(summary, indent=2, sort_keys=True) + "\n")
        return summary


class _SchedulerState:
    """Adapter: save_training_checkpoint calls ``scheduler.state_dict()``."""

    def __init__(self, state: dict):
        self._state = state

    def state_dict(self) -> dict:
        return self._state


def pretrain_encoder(config: dict, *, out_dir, manifests: dict[str, Path] | None = None, stop_flag=None,
                     device: str | None = None) -> dict:
    """Pre-train the encoder of the configuration's model (``model`` section, encoder_heads components).

    ``device`` None: ``training.device`` (resolved as the joint training resolves it).
    """
    from astrorim.train.step import resolve_device

    from astrorim.train.config import TrainingConfig
    from astrorim.train.data import shards_from_manifest
    from astrorim.train.run import default_manifest, model_config_from

    cfg = PretrainConfig.from_dict(config.get("pretrain"))
    training = TrainingConfig.from_dict(config.get("training"))
    device = str(resolve_device(training.device) if device is None else torch.device(device))
    manifests = {p: Path(m) for p, m in (manifests or {}).items()}
    paths = []
    for phase in cfg.phases:
        paths += shards_from_manifest(manifests.get(phase, default_manifest(config, phase)), "train", phase=phase)
    val_phase = cfg.phases[0]
    train_ds = ShardDataset(paths)
    val_ds = ShardDataset(shards_from_manifest(manifests.get(val_phase, default_manifest(config, val_phase)), "val",
                                               phase=val_phase))
    model_config: AstroRIMConfig = model_config_from(config)
    streams = train_ds.streams("train") + val_ds.streams("val")
    hashed = {"stage": "pretrain_encoder", "npix": int(config["npix"]), "model": model_config.to_dict(),
              "pretrain": cfg.hashed(), "augment": dataclasses.asdict(training.augment),
              "data": [{k: s[k] for k in ("role", "phase", "version", "split", "seed", "start_index", "n")}
                       for s in streams]}
    torch.manual_seed(cfg.seed)
    model = AstroRIM(model_config)
    meta = {"run_name": config.get("run_name"), "training_data": streams, "n_train": len(train_ds),
            "n_val": len(val_ds)}
    run = PretrainRun(model=model, cfg=cfg, train_data=train_ds, val_data=val_ds, out_dir=Path(out_dir),
                      hashed_config=hashed, meta=meta, flip_prob=training.augment.flip_prob,
                      rot90_prob=training.augment.rot90_prob, device=device, stop_flag=stop_flag,
                      num_workers=training.num_workers)
    return run.run()
