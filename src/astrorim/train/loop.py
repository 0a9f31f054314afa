"""The training loop of one phase, resumable at epoch ends and mid-epoch.

Files of a phase's output directory ``out_dir`` (e.g. results/quick/models/initial):

    out_dir/resume/last.pt, best.pt, metrics.csv   the run's own state, rewritten atomically at every
                                                   epoch end (last.pt also mid-epoch); removed when the
                                                   phase finishes
    out_dir/resume/steps.csv                       the per-step log (below), appended to
    out_dir/last.pt, best.pt, metrics.csv,         the published outputs: hard links to (or copies of)
      steps.csv                                    the files above, refreshed at every epoch end
    out_dir/summary.json                           final metrics and reference sources (adjoint, x0, zero), written at the end

``steps.csv`` has a row every ``training.log_every_steps`` optimiser steps and at each epoch end:
``phase, epoch, step, samples``, then ``lr_<component>`` for each parameter-group component (``lr_forward``,
``lr_rim``, in optimiser order), then ``train_<term>`` for each loss term of
:data:`astrorim.train.step.LOSS_TERMS`: the example-weighted mean over the steps since the previous row
(finite values only).  ``epoch`` is 1-based, ``step`` the global optimiser step after the row's last
step, ``samples`` the examples trained on so far in this phase (step x batch size), the learning rates
those in force after that step.  Rows are appended whole; a resumed run first rewrites the file
(atomically) without the rows after its checkpoint's step, so a crash leaves neither duplicates nor gaps.

The training step never waits for the device (:func:`astrorim.train.step.train_step`); the loop reads
its device-side sums (:class:`astrorim.train.step.StepSums`) only at log points, checkpoints and epoch
ends.

A restarted run resumes from resume/last.pt (else from out_dir/last.pt).  Snakemake deletes a killed
job's declared outputs (out_dir/last.pt, ...) before rerunning it, but never the undeclared resume/
directory, so a rerun continues instead of starting over (docs/training.md, "Interruption").

Bit-for-bit resumption: the data stream is a pure function of (seed, phase, epoch, position)
(:class:`astrorim.train.data.EpochSampler`); model, EMA, optimiser, scheduler, GradScaler and all RNG
states are restored, and partial-epoch sums are saved with mid-epoch checkpoints.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd
import torch
from tqdm.auto import tqdm

from astrorim import __version__
from astrorim.io.atomic import atomic_path, write_text_atomic
from astrorim.model.checkpoint import read_checkpoint
from astrorim.train.config import TrainingConfig, config_hash
from astrorim.train.data import EpochSampler, ShardDataset, make_loader
from astrorim.train.optim import EMA, WarmupPlateau, component_lrs, make_optimizer
from astrorim.train.state import (check_config, read_training_checkpoint, restore_training_state,
                                  save_training_checkpoint)
from astrorim.train.step import LOSS_TERMS, StepSums, resolve_device, resolve_precision, train_step, validate

log = logging.getLogger("astrorim.train")

PHASE_STREAMS = {"initial": 0, "finetune": 1}
METRIC_COLUMNS = (
    ["phase", "epoch", "global_step"]
    + [f"train_{k}" for k in LOSS_TERMS]
    + ["train_grad_norm", "train_clipped_frac", "train_skipped_steps"]
    + [f"val_{k}" for k in LOSS_TERMS if k != "mse"]
    + ["val_mse", "val_ssim", "val_mse_model", "lr_rim", "lr_forward", "ema_decay", "samples_per_s",
       "epoch_s", "is_best"]
)
MAX_CONSECUTIVE_SKIPS = 50
STEP_LOG_FIXED_COLUMNS = ("phase", "epoch", "step", "samples")


def step_log_columns(components: list[str]) -> list[str]:
    """Columns of steps.csv for an optimiser whose groups belong to ``components`` (in first-seen order)."""
    return list(STEP_LOG_FIXED_COLUMNS) + [f"lr_{c}" for c in components] + [f"train_{k}" for k in LOSS_TERMS]


def trim_step_log(path: Path, columns: list[str], last_step: int) -> None:
    """Rewrite ``path`` atomically with the header ``columns`` and only its complete rows with
    step <= ``last_step`` (a resumed run repeats the steps after its checkpoint); a missing file or one with
    another header starts empty."""
    header = ",".join(columns)
    keep = [header]
    if path.exists():
        lines = path.read_text(encoding="utf-8").split("\n")
        if lines and lines[0] == header:
            step_at = columns.index("step")
            for line in lines[1:]:
                fields = line.split(",")
                if len(fields) != len(columns):
                    continue  # a partial last line of a killed run, or an empty line
                try:
                    if int(fields[step_at]) <= last_step:
                        keep.append(line)
                except ValueError:
                    continue
        elif lines and lines[0]:
            log.warning("%s: another column layout (%s...); starting it anew", path, lines[0][:60])
    write_text_atomic(path, "\n".join(keep) + "\n")


class TrainingInterrupted(RuntimeError):
    """Raised after a requested stop (SIGTERM/SIGINT) once a resumable checkpoint has been written."""


@dataclass
class StopFlag:
    """Set by a signal handler; the loop checks it after every batch."""

    requested: bool = False
    signal_name: str = ""


def install_signal_handlers(flag: StopFlag) -> None:
    """SIGTERM and SIGINT set ``flag`` (call from the main thread of a script)."""
    def handler(signum, frame):  # noqa: ARG001
        if flag.requested:  # second signal: stop now
            raise KeyboardInterrupt
        flag.requested = True
        flag.signal_name = signal.Signals(signum).name
        log.warning("%s received: finishing this batch, writing a resumable checkpoint, then stopping",
                    flag.signal_name)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handler)


def _publish(src: Path, dst: Path) -> None:
    """Make ``dst`` the content of ``src`` atomically: a hard link if possible, else a copy."""
    if dst.exists() and os.path.samefile(src, dst):
        return  # already the same file (rename() between two links of one inode would do nothing)
    with atomic_path(dst, suffix=dst.suffix + ".partial") as tmp:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)


@dataclass
class PhaseRun:
    """Everything one phase needs; call :meth:`run`."""

    model: torch.nn.Module
    training: TrainingConfig
    phase: str
    train_data: ShardDataset
    val_data: ShardDataset
    out_dir: Path
    hashed_config: dict
    meta: dict = field(default_factory=dict)
    init_checkpoint: Path | None = None
    resume: bool = True
    stop_flag: StopFlag = field(default_factory=StopFlag)
    on_step: Callable[[int, int, int], None] | None = None   # (global_step, epoch, batch) hook
    progress: bool | None = None                              # None: only on a TTY

    def __post_init__(self):
        self.out_dir = Path(self.out_dir)
        self.resume_dir = self.out_dir / "resume"
        self.cfg = self.training.phase(self.phase)
        self.hash = config_hash(self.hashed_config)
        if self.progress is None:
            self.progress = sys.stderr.isatty()

    # ------------------------------------------------------------------ set-up
    def _setup(self) -> None:
        t = self.training
        self.device = resolve_device(t.device)
        self.precision = resolve_precision(self.device, t.amp)
        self.tf32 = self.precision.apply_tf32()
        log.info("%s phase: device %s, precision %s (TF32 %s), config hash %s", self.phase, self.device,
                 self.precision.label, "on" if any(self.tf32.values()) else "off", self.hash)
        if self.init_checkpoint is not None:
            self._load_init(self.init_checkpoint)
        self.model.to(self.device)
        self.ema = EMA(self.model, t.ema_decay, t.ema_warmup)
        self.optimizer = make_optimizer(self.model, self.cfg.lr_rim, self.cfg.lr_forward, t.weight_decay)
        bs = t.batch_size
        if len(self.train_data) < bs:
            raise ValueError(f"{len(self.train_data)} training examples cannot fill one batch of {bs}")
        self.steps_per_epoch = len(self.train_data) // bs
        self.scheduler = WarmupPlateau(self.optimizer, round(self.cfg.warmup_epochs * self.steps_per_epoch),
                                       self.cfg.plateau_patience, self.cfg.plateau_factor,
                                       self.cfg.plateau_threshold, self.cfg.warmup_epochs)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision.use_scaler)
        self.sampler = EpochSampler(len(self.train_data), t.seed, stream=PHASE_STREAMS[self.phase],
                                    flip_prob=t.augment.flip_prob, rot90_prob=t.augment.rot90_prob)
        pin = self.device.type == "cuda"
        self.train_loader = make_loader(self.train_data, bs, sampler=self.sampler, num_workers=t.num_workers,
                                        pin_memory=pin, drop_last=True)
        self.val_loader = make_loader(self.val_data, t.eval_batch_size, num_workers=t.num_workers,
                                      pin_memory=pin)
        self.n_iter = t.n_iter or None
        self.noise = "truth"
        # progress state
        self.epoch = 0
        self.batch_in_epoch = 0
        self.global_step = 0
        self.history: list[dict] = []
        self.best = {"epoch": -1, "val_mse": math.inf}
        self.bad_epochs = 0
        self.partial: dict = {}
        self.finished = False
        self.stop_reason = ""
        self.components = list(dict.fromkeys(g["component"] for g in self.optimizer.param_groups))
        self.step_columns = step_log_columns(self.components)

    def _load_init(self, path: Path) -> None:
        """Finetuning starts from the EMA weights of the best initial checkpoint (model and EMA alike)."""
        ckpt = read_checkpoint(path)
        state = dict(ckpt["model_state"])
        if ckpt.get("ema_state"):
            state.update(ckpt["ema_state"])
        self.model.load_state_dict(state, strict=True)
        log.info("initialised from %s (EMA weights, epoch %s)", path, ckpt.get("epoch"))

    # ------------------------------------------------------------------ checkpoints
    def _resume_source(self) -> Path | None:
        for candidate in (self.resume_dir / "last.pt", self.out_dir / "last.pt"):
            if candidate.exists():
                return candidate
        return None

    def _try_resume(self) -> None:
        path = self._resume_source()
        if path is None:
            return
        if not self.resume:
            raise FileExistsError(f"{path} exists and resume is off; delete {self.out_dir} to start over")
        ckpt = read_training_checkpoint(path)
        check_config(path, ckpt, self.hash, self.hashed_config)
        ts = restore_training_state(ckpt, self.model, self.ema, self.optimizer, self.scheduler, self.scaler)
        self.epoch, self.batch_in_epoch = int(ckpt["epoch"]), int(ckpt["batch_in_epoch"])
        self.global_step = int(ckpt["global_step"])
        self.history = list(ts["history"])
        self.best = dict(ts["best"])
        self.bad_epochs = int(ts["bad_epochs"])
        self.partial = dict(ts["partial"])
        self.finished = bool(ts["finished"])
        self.stop_reason = str(ts.get("stop_reason", ""))
        if self.finished and self.stop_reason == "max_epochs" and self.epoch < self.cfg.epochs:
            self.finished = False  # more epochs asked for than the finished run had
        log.info("resumed from %s: epoch %d, batch %d, step %d (config hash %s)", path, self.epoch,
                 self.batch_in_epoch, self.global_step, self.hash)
        if not (self.resume_dir / "steps.csv").exists() and (self.out_dir / "steps.csv").exists():
            self.resume_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.out_dir / "steps.csv", self.resume_dir / "steps.csv")
        # A published best.pt may have been deleted (Snakemake rerun); the resume copy is authoritative.
        for name in ("best.pt", "metrics.csv"):
            src = self.resume_dir / name
            if src.exists() and not (self.out_dir / name).exists():
                _publish(src, self.out_dir / name)

    def _meta(self) -> dict:
        t = self.training
        val = self.history[-1] if self.history else {}
        return {**self.meta, "phase": self.phase, "config_hash": self.hash, "epoch": self.epoch,
                "global_step": self.global_step, "training_seed": t.seed,
                "best_epoch": self.best["epoch"], "best_val_mse": self.best["val_mse"],
                "val_mse": val.get("val_mse"), "val_ssim": val.get("val_ssim"),
                "device": str(self.device), "precision": self.precision.label, **self.tf32,
                "astrorim_version": str(__version__), "torch_version": str(torch.__version__),
                "ema_decay": t.ema_decay, "weights_for_evaluation": "ema_state"}

    def _save(self, *, is_best: bool) -> None:
        self.resume_dir.mkdir(parents=True, exist_ok=True)
        training_state = {"hashed_config": self.hashed_config, "ema": self.ema.state_dict(),
                          "history": self.history, "best": self.best, "bad_epochs": self.bad_epochs,
                          "partial": self.partial, "finished": self.finished, "stop_reason": self.stop_reason,
                          "steps_per_epoch": self.steps_per_epoch}
        last = self.resume_dir / "last.pt"
        save_training_checkpoint(last, self.model, self.ema.model, meta=self._meta(), epoch=self.epoch,
                                 batch_in_epoch=self.batch_in_epoch, global_step=self.global_step,
                                 config_hash=self.hash, optimizer=self.optimizer, scheduler=self.scheduler,
                                 scaler=self.scaler, training_state=training_state)
        if is_best:
            _publish(last, self.resume_dir / "best.pt")
        self._write_metrics(self.resume_dir / "metrics.csv")

    def _publish_outputs(self) -> None:
        for name in ("last.pt", "best.pt", "metrics.csv", "steps.csv"):
            src = self.resume_dir / name
            if src.exists():
                _publish(src, self.out_dir / name)

    def _write_metrics(self, path: Path) -> None:
        table = pd.DataFrame(self.history, columns=list(METRIC_COLUMNS))
        with atomic_path(path, suffix=".csv.partial") as tmp:
            table.to_csv(tmp, index=False, float_format="%.6g")

    # ------------------------------------------------------------------ epochs
    def _train_epoch(self) -> dict:
        bs = self.training.batch_size
        start = self.batch_in_epoch
        self.sampler.set_epoch(self.epoch, start * bs)
        saved = dict(self.partial) if start else {}
        t0 = time.monotonic()
        elapsed0 = float(saved.pop("_elapsed", 0.0))
        stats = StepSums(self.device)
        stats.load(saved)
        last_save = t0
        every_log = self.training.log_every_steps
        bar = tqdm(total=self.steps_per_epoch, initial=start, desc=f"{self.phase} epoch {self.epoch + 1}",
                   disable=not self.progress, leave=False, dynamic_ncols=True)
        for batch in self.train_loader:
            r = train_step(self.model, batch, self.optimizer, self.scaler, self.precision,
                           loss_cfg=self.training.loss, grad_clip=self.training.grad_clip, n_iter=self.n_iter,
                           noise=self.noise, device=self.device)
            self.scheduler.step_batch()
            self.ema.update(self.model, applied=1.0 - r["skipped"])
            stats.add(r, batch["observed"].shape[0])
            self.batch_in_epoch += 1
            self.global_step += 1
            bar.update(1)
            if self.global_step % every_log == 0 or self.batch_in_epoch >= self.steps_per_epoch:
                self._log_steps(stats, bar)  # the only place a step's numbers are read back
            if self.on_step is not None:
                self.on_step(self.global_step, self.epoch, self.batch_in_epoch)
            now = time.monotonic()
            every_b = self.training.checkpoint_every_batches
            due = (every_b and self.batch_in_epoch % every_b == 0) or (
                self.training.checkpoint_every_s and now - last_save >= self.training.checkpoint_every_s)
            if (due or self.stop_flag.requested) and self.batch_in_epoch < self.steps_per_epoch:
                self.partial = {**stats.state(), "_elapsed": elapsed0 + now - t0}
                self._save(is_best=False)
                last_save = now
                log.info("mid-epoch checkpoint: epoch %d, batch %d/%d", self.epoch + 1, self.batch_in_epoch,
                         self.steps_per_epoch)
            if self.stop_flag.requested:
                bar.close()
                if self.batch_in_epoch >= self.steps_per_epoch:
                    break  # the epoch end below writes the checkpoint
                raise TrainingInterrupted(f"stopped by {self.stop_flag.signal_name} at epoch {self.epoch + 1}, "
                                          f"batch {self.batch_in_epoch}; rerun to resume")
        bar.close()
        sums = stats.read("epoch")
        sums["_elapsed"] = elapsed0 + time.monotonic() - t0
        return sums

    def _log_steps(self, stats: StepSums, bar) -> None:
        """Append a row to steps.csv with the window's means, then check the skipped steps."""
        window = stats.read("window")
        consecutive = int(stats.consecutive_skips.item())
        n = max(window["n"], 1)
        row = {"phase": self.phase, "epoch": self.epoch + 1, "step": self.global_step,
               "samples": self.global_step * self.training.batch_size}
        lrs = component_lrs(self.optimizer)
        row.update({f"lr_{c}": lrs[c] for c in self.components})
        row.update({f"train_{k}": window[k] / n for k in LOSS_TERMS})
        line = ",".join(_csv_field(row[c]) for c in self.step_columns)
        with open(self.resume_dir / "steps.csv", "a", encoding="utf-8") as f:
            f.write(line + "\n")
        bar.set_postfix(loss=f"{row['train_total']:.4g}", mse=f"{row['train_mse']:.3g}")
        if window["skipped"]:
            log.warning("epoch %d, steps %d-%d: %d update(s) skipped (non-finite loss or gradient)",
                        self.epoch + 1, self.global_step - window["batches"] + 1, self.global_step,
                        int(window["skipped"]))
        stats.reset_window()
        if consecutive >= MAX_CONSECUTIVE_SKIPS:
            raise FloatingPointError(f"{consecutive} consecutive non-finite steps; stopping")

    def _epoch_row(self, sums: dict, val: dict, is_best: bool) -> dict:
        n = max(sums.get("n", 0), 1)
        lrs = component_lrs(self.optimizer)
        row = {"phase": self.phase, "epoch": self.epoch + 1, "global_step": self.global_step}
        for k in LOSS_TERMS:
            row[f"train_{k}"] = sums.get(k, math.nan) / n
        row["train_grad_norm"] = sums.get("grad_norm", math.nan) / max(sums.get("batches", 0), 1)
        row["train_clipped_frac"] = sums.get("clipped", 0.0) / max(sums.get("batches", 0), 1)
        row["train_skipped_steps"] = int(sums.get("skipped", 0))
        for k in LOSS_TERMS:
            if k != "mse":
                row[f"val_{k}"] = val[k]
        row.update(val_mse=val["mse"], val_ssim=val["ssim"], val_mse_model=val["mse_model"],
                   lr_rim=lrs.get("rim", math.nan), lr_forward=lrs.get("forward", math.nan),
                   ema_decay=self.ema.current_decay(), epoch_s=sums["_elapsed"],
                   samples_per_s=sums.get("n", 0) / max(sums["_elapsed"], 1e-9), is_best=int(is_best))
        return row

    def _validate(self, reference_sources: bool = False) -> dict:
        return validate(self.ema.model, self.val_loader, self.precision, loss_cfg=self.training.loss,
                        n_iter=self.n_iter, noise=self.noise, device=self.device, reference_sources=reference_sources)

    # ------------------------------------------------------------------ main
    def run(self) -> dict:
        """Train (or resume) to the end of the phase; returns the summary written to summary.json."""
        self._setup()
        self._try_resume()
        self.resume_dir.mkdir(parents=True, exist_ok=True)
        trim_step_log(self.resume_dir / "steps.csv", self.step_columns, self.global_step)
        started = time.monotonic()
        while not self.finished and self.epoch < self.cfg.epochs:
            sums = self._train_epoch()
            val = self._validate()
            self.scheduler.step_epoch(self.epoch, val["total"])
            is_best = val["mse"] < self.best["val_mse"]
            if is_best:
                self.best = {"epoch": self.epoch + 1, "val_mse": val["mse"], "val_ssim": val["ssim"]}
                self.bad_epochs = 0
            else:
                self.bad_epochs += 1
            row = self._epoch_row(sums, val, is_best)
            self.history.append(row)
            self.epoch += 1
            self.batch_in_epoch = 0
            self.partial = {}
            log.info("%s epoch %d/%d: train loss %.4g | val loss %.4g, MSE %.3e, SSIM %.4f%s | lr %.2e/%.2e | "
                     "%.1f samples/s, %.0f s", self.phase, self.epoch, self.cfg.epochs, row["train_total"],
                     row["val_total"], row["val_mse"], row["val_ssim"], " (best)" if is_best else "",
                     row["lr_rim"], row["lr_forward"], row["samples_per_s"], row["epoch_s"])
            patience = self.cfg.early_stopping_patience
            if patience and self.bad_epochs >= patience:
                self.finished, self.stop_reason = True, "early_stopping"
                log.info("early stopping: no val-MSE improvement for %d epochs (best epoch %d)", patience,
                         self.best["epoch"])
            elif self.epoch >= self.cfg.epochs:
                self.finished, self.stop_reason = True, "max_epochs"
            self._save(is_best=is_best)
            self._publish_outputs()
            if self.stop_flag.requested and not self.finished:
                raise TrainingInterrupted(f"stopped by {self.stop_flag.signal_name} after epoch {self.epoch}; "
                                          f"rerun to resume")
        if not self.finished:  # epochs already complete (resumed a finished run with the same epochs)
            self.finished, self.stop_reason = True, self.stop_reason or "max_epochs"
            self._save(is_best=False)
        self._publish_outputs()
        summary = self._summary(time.monotonic() - started)
        write_text_atomic(self.out_dir / "summary.json", _json(summary))
        shutil.rmtree(self.resume_dir, ignore_errors=True)
        return summary

    def _summary(self, seconds: float) -> dict:
        """Best-checkpoint metrics on the validation set, with the adjoint, x0 and zero reference sources."""
        best_path = self.out_dir / "best.pt"
        ckpt = read_checkpoint(best_path)
        self.ema.model.load_state_dict(ckpt["ema_state"], strict=True)
        val = self._validate(reference_sources=True)
        train_seconds = sum(r["epoch_s"] for r in self.history)
        return {"phase": self.phase, "config_hash": self.hash, "epochs_run": self.epoch,
                "stop_reason": self.stop_reason, "best_epoch": self.best["epoch"], "global_step": self.global_step,
                "train_seconds": train_seconds, "wall_seconds_this_process": seconds,
                "device": str(self.device), "precision": self.precision.label, **self.tf32,
                "n_train": len(self.train_data), "n_val": len(self.val_data),
                "val": {k: float(v) for k, v in sorted(val.items())}}


def _csv_field(value) -> str:
    if isinstance(value, float):
        return f"{value:.8g}"
    return str(value)


def _json(obj) -> str:
    import json

    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v
    return json.dumps(clean(obj), indent=2, sort_keys=True) + "\n"
