"""Training curves of both phases (one figure, four panels): per logged optimiser step where the phase wrote a
per-step log ``steps.csv`` beside its per-epoch ``metrics.csv``, per epoch otherwise.

``steps.csv`` (written by the training loop) has ``phase, epoch, step, samples``, one ``lr_<group>`` column per
parameter group and one ``train_<term>`` column per loss term; the column set may change, so every ``lr_*`` and
``train_*`` column found is drawn.  Validation runs once per epoch, so its curves come from ``metrics.csv``,
placed at the epoch's last step.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from astrorim.io.atomic import atomic_path

PHASE_ORDER = ("initial", "finetune")
STEPS_FILE = "steps.csv"
STEP_KEYS = ("phase", "epoch", "step", "samples")
# Loss-term weights of eq. 43 at the paper's defaults, to draw the terms on the scale they enter the loss.
TERM_WEIGHTS = {"fwd": 0.5, "param": 1e-3, "psf": 1e-3}
TERM_LABELS = {"recon": "recon", "fwd": "forward", "param": "param", "psf": "PSF", "sup": "supervised",
               "mse": "MSE (not in the loss)"}


def load_history(paths: dict[str, str | os.PathLike]) -> pd.DataFrame:
    """Concatenated metrics of the phases, with 'total_epoch' counting on across phases."""
    frames, offset = [], 0
    for phase in PHASE_ORDER:
        if phase not in paths:
            continue
        path = Path(paths[phase])
        if not path.exists():
            raise FileNotFoundError(f"{path}: metrics file of the {phase} phase not found")
        df = pd.read_csv(path)
        required = {"epoch", "train_total", "val_total", "val_mse", "val_ssim", "lr_rim", "lr_forward"}
        missing = sorted(required - set(df.columns))
        if missing:
            raise ValueError(f"{path}: not a training metrics file (missing columns {missing})")
        if df.empty:
            raise ValueError(f"{path}: no epochs recorded")
        df = df.assign(phase=phase, total_epoch=df["epoch"] + offset)
        offset = int(df["total_epoch"].max())
        frames.append(df)
    if not frames:
        raise ValueError("no metrics files given")
    return pd.concat(frames, ignore_index=True)


def step_log_path(metrics_path: str | os.PathLike) -> Path:
    """Where the per-step log of the phase whose per-epoch log is ``metrics_path`` is written."""
    return Path(metrics_path).with_name(STEPS_FILE)


def load_steps(paths: dict[str, str | os.PathLike]) -> pd.DataFrame | None:
    """The per-step logs of the phases, with 'total_step' counting on across phases (None unless every phase
    given has a non-empty steps.csv: mixing per-step and per-epoch points would mislead)."""
    frames, offset = [], 0
    for phase in PHASE_ORDER:
        if phase not in paths:
            continue
        path = Path(paths[phase])
        if not path.exists():
            return None
        df = pd.read_csv(path)
        missing = sorted({"epoch", "step"} - set(df.columns))
        if missing:
            raise ValueError(f"{path}: not a per-step training log (missing columns {missing})")
        if df.empty:
            return None
        df = df.sort_values("step", kind="stable").reset_index(drop=True)
        # a phase whose step counter starts again from 0 goes on after the previous phase's last step
        shift = offset if df["step"].min() <= offset else 0
        df = df.assign(phase=phase, total_step=df["step"] + shift)
        offset = int(df["total_step"].max())
        frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else None


def _epoch_end_steps(history: pd.DataFrame, steps: pd.DataFrame) -> pd.Series:
    """The total step at which each (phase, epoch) row of ``history`` ended: its last logged step."""
    last = steps.groupby(["phase", "epoch"], sort=False)["total_step"].max()
    keys = list(zip(history["phase"], history["epoch"]))
    return pd.Series([last.get(k, np.nan) for k in keys], index=history.index, dtype=float)


def _smooth(values: pd.Series, n_points: int) -> pd.Series:
    window = max(1, n_points // 40)
    return values.rolling(window, center=True, min_periods=1).mean() if window > 1 else values


def _positive(values) -> bool:
    values = pd.to_numeric(values, errors="coerce")
    return bool((values > 0).any())


def training_figure(paths: dict[str, str | os.PathLike], title: str = "",
                    step_paths: dict[str, str | os.PathLike] | None = None):
    """The figure of :func:`plot_training_curves` (a matplotlib Figure; close it when done)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    history = load_history(paths)
    if step_paths is None:
        step_paths = {phase: step_log_path(path) for phase, path in paths.items()}
    steps = load_steps(step_paths)
    per_step = steps is not None
    if per_step:
        history = history.assign(x=_epoch_end_steps(history, steps))
        xlabel = "optimiser step (both phases)"
    else:
        history = history.assign(x=history["total_epoch"])
        xlabel = "epoch"

    sns.set_theme(style="whitegrid", context="paper")
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), constrained_layout=True)
    palette = dict(zip(PHASE_ORDER, sns.color_palette("deep", 2)))
    phases = list(dict.fromkeys(history["phase"]))

    ax = axes[0, 0]
    for phase in phases:
        hist = history[history["phase"] == phase]
        if per_step and "train_total" in steps:
            run = steps[steps["phase"] == phase]
            ax.plot(run["total_step"], run["train_total"], "-", lw=0.6, alpha=0.35, color=palette[phase])
            ax.plot(run["total_step"], _smooth(run["train_total"], len(run)), "-", lw=1.2, color=palette[phase],
                    label=f"{phase} train (per step)")
        else:
            ax.plot(hist["x"], hist["train_total"], "-o", ms=3, color=palette[phase], label=f"{phase} train")
        ax.plot(hist["x"], hist["val_total"], "--s", ms=4, color=palette[phase], label=f"{phase} val (EMA)")
    ax.set(yscale="log", xlabel=xlabel, ylabel="total loss (eq. 43)", title="loss")
    ax.legend(fontsize=7)

    ax = axes[0, 1]
    source = steps if per_step else history
    x = "total_step" if per_step else "x"
    # every train_<term> column but the total; in metrics.csv also the per-epoch diagnostics that are not terms
    not_terms = {"train_total", "train_grad_norm", "train_clipped_frac", "train_skipped_steps"}
    terms = [c for c in source.columns if c.startswith("train_") and c not in not_terms]
    colours = dict(zip(terms, sns.color_palette("muted", max(len(terms), 1))))
    for column in terms:
        term = column.removeprefix("train_")
        if not _positive(source[column]):
            continue  # e.g. the supervised term when it is off: nothing to draw on a log axis
        weight = TERM_WEIGHTS.get(term, 1.0)
        label = TERM_LABELS.get(term, term) + (f" x{weight:g}" if weight != 1.0 else "")
        for i, phase in enumerate(phases):
            run = source[source["phase"] == phase]
            values = run[column] * weight
            if per_step:
                ax.plot(run[x], _smooth(values, len(run)), "-", lw=1.0, color=colours[column],
                        label=label if i == 0 else None)
            else:
                ax.plot(run[x], values, "-o", ms=3, color=colours[column], label=label if i == 0 else None)
    ax.set(yscale="log", xlabel=xlabel, ylabel="weighted term (train)",
           title="loss terms" + (" (running mean over steps)" if per_step else ""))
    ax.legend(fontsize=7)

    ax = axes[1, 0]
    for phase in phases:
        hist = history[history["phase"] == phase]
        ax.plot(hist["x"], hist["val_mse"], "-o", ms=3, color=palette[phase], label=f"{phase} MSE")
    ax.set(yscale="log", xlabel=xlabel, ylabel="val MSE (peak-normalised)",
           title="validation (EMA weights), once per epoch")
    twin = ax.twinx()
    for phase in phases:
        hist = history[history["phase"] == phase]
        twin.plot(hist["x"], hist["val_ssim"], "--s", ms=3, color=palette[phase], alpha=0.7, label=f"{phase} SSIM")
    twin.set_ylabel("val SSIM (11x11 Gaussian)")
    twin.grid(False)
    lines = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    ax.legend(lines, [h.get_label() for h in lines], fontsize=7)

    ax = axes[1, 1]
    lr_columns = [c for c in source.columns if c.startswith("lr_")]
    names = {"lr_rim": "RIM", "lr_forward": "forward operator + encoder"}
    styles = ["-", "--", "-.", ":"]
    lr_colours = sns.color_palette("dark", max(len(lr_columns), 1))
    for k, column in enumerate(lr_columns):
        for i, phase in enumerate(phases):  # one line per phase: no segment joining the end of one to the next
            run = source[source["phase"] == phase]
            ax.plot(run[x], run[column], styles[k % len(styles)] if per_step else "-o", ms=3, color=lr_colours[k],
                    label=names.get(column, column.removeprefix("lr_")) if i == 0 else None)
    ax.set(yscale="log", xlabel=xlabel,
           ylabel="learning rate" + ("" if per_step else " (end of epoch)"), title="learning rates")
    ax.legend(fontsize=7)

    if len(phases) > 1:
        boundary = history.loc[history["phase"] == phases[0], "x"].max() + (0.5 if not per_step else 0.0)
        for a in axes.flat:
            a.axvline(boundary, color="grey", lw=0.8, ls=":")
    if title:
        fig.suptitle(title)
    return fig


def plot_training_curves(paths: dict[str, str | os.PathLike], out: str | os.PathLike, title: str = "",
                         step_paths: dict[str, str | os.PathLike] | None = None) -> Path:
    """Loss (train/val), loss terms, val MSE/SSIM and learning rates; written atomically (PNG).

    ``paths`` maps each phase to its metrics.csv; ``step_paths`` to its steps.csv (default: beside
    metrics.csv). Per step when every phase has a per-step log, per epoch otherwise.
    """
    import matplotlib.pyplot as plt

    fig = training_figure(paths, title, step_paths)
    out = Path(out)
    with atomic_path(out, suffix=".png.partial") as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return out
