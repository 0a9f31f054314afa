"""Training curves of both phases from their per-epoch metrics.csv files (one figure, four panels)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from astrorim.io.atomic import atomic_path

PHASE_ORDER = ("initial", "finetune")


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


def plot_training_curves(paths: dict[str, str | os.PathLike], out: str | os.PathLike, title: str = "") -> Path:
    """Loss (train/val), loss terms, val MSE/SSIM and learning rates vs epoch; written atomically (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    history = load_history(paths)
    sns.set_theme(style="whitegrid", context="paper")
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), constrained_layout=True)
    palette = dict(zip(PHASE_ORDER, sns.color_palette("deep", 2)))
    x = "total_epoch"

    ax = axes[0, 0]
    for phase, df in history.groupby("phase", sort=False):
        ax.plot(df[x], df["train_total"], "-o", ms=3, color=palette[phase], label=f"{phase} train")
        ax.plot(df[x], df["val_total"], "--s", ms=3, color=palette[phase], label=f"{phase} val (EMA)")
    ax.set(yscale="log", xlabel="epoch", ylabel="total loss (eq. 43)", title="loss")
    ax.legend(fontsize=7)

    ax = axes[0, 1]
    terms = [("train_recon", "recon"), ("train_fwd", "forward x0.5"), ("train_param", "param x1e-3"),
             ("train_psf", "PSF x1e-3")]
    weights = {"train_fwd": 0.5, "train_param": 1e-3, "train_psf": 1e-3}
    colours = sns.color_palette("muted", len(terms))
    for (column, label), colour in zip(terms, colours):
        if column not in history:
            continue
        for i, (phase, df) in enumerate(history.groupby("phase", sort=False)):
            ax.plot(df[x], df[column] * weights.get(column, 1.0), "-o", ms=3, color=colour,
                    label=label if i == 0 else None)
    ax.set(yscale="log", xlabel="epoch", ylabel="weighted term (train)", title="loss terms")
    ax.legend(fontsize=7)

    ax = axes[1, 0]
    for phase, df in history.groupby("phase", sort=False):
        ax.plot(df[x], df["val_mse"], "-o", ms=3, color=palette[phase], label=f"{phase} MSE")
    ax.set(yscale="log", xlabel="epoch", ylabel="val MSE (peak-normalised)", title="validation (EMA weights)")
    twin = ax.twinx()
    for phase, df in history.groupby("phase", sort=False):
        twin.plot(df[x], df["val_ssim"], "--s", ms=3, color=palette[phase], alpha=0.7, label=f"{phase} SSIM")
    twin.set_ylabel("val SSIM (11x11 Gaussian)")
    twin.grid(False)
    lines = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    ax.legend(lines, [h.get_label() for h in lines], fontsize=7)

    ax = axes[1, 1]
    ax.plot(history[x], history["lr_rim"], "-o", ms=3, label="RIM")
    ax.plot(history[x], history["lr_forward"], "-s", ms=3, label="forward operator + encoder")
    ax.set(yscale="log", xlabel="epoch", ylabel="learning rate (end of epoch)", title="learning rates")
    ax.legend(fontsize=7)

    if len(set(history["phase"])) > 1:
        boundary = history.loc[history["phase"] == "initial", x].max() + 0.5
        for a in axes.flat:
            a.axvline(boundary, color="grey", lw=0.8, ls=":")
    if title:
        fig.suptitle(title)
    out = Path(out)
    with atomic_path(out, suffix=".png.partial") as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return out
