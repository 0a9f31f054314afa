"""Figures of paper 003 reproduced for the baseline: Figs. 2-3 (VAE), 6-7 (MAP fits), 8-9 (posteriors).

Every function returns a matplotlib Figure; the caller saves it (atomically, :func:`save_figure`).
Images are shown with origin='lower' (row 0 at the bottom, the project's convention).  Titles say
"HDF JPEG: non-linear photometry" whenever a Hubble-Deep-Field image is shown.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from astrorim.baseline.corner import corner_plot  # noqa: E402
from astrorim.io.atomic import atomic_path  # noqa: E402

HDF_NOTE = "HDF JPEG: non-linear photometry"


def save_figure(fig, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Save ``fig`` atomically (format from the suffix) and close it."""
    path = Path(path)
    with atomic_path(path, suffix=path.suffix + ".partial") as tmp:
        fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return path


def _origin_label(origin: str) -> str:
    o = str(origin)
    return f"{o}\n({HDF_NOTE})" if o.startswith("hdf/") else o


def figure_reconstructions(images: np.ndarray, recons: np.ndarray, origins: Sequence[str]):
    """Fig. 2: held-out inputs (top) and VAE reconstructions mu_d(z), z ~ e(z|x) (bottom)."""
    n = len(images)
    fig, axes = plt.subplots(2, n, figsize=(1.9 * n, 4.3), squeeze=False)
    for k in range(n):
        vmax = float(max(images[k].max(), recons[k].max()))
        for row, arr in enumerate((images[k], recons[k])):
            ax = axes[row, k]
            ax.imshow(arr, origin="lower", cmap="viridis", vmin=min(0.0, float(arr.min())), vmax=vmax)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0, k].set_title(str(origins[k]).replace("/", "/\n", 1), fontsize=6)
    axes[0, 0].set_ylabel("input")
    axes[1, 0].set_ylabel("reconstruction")
    any_hdf = any(str(o).startswith("hdf/") for o in origins)
    fig.suptitle("VAE reconstructions of held-out sources" + (f" ({HDF_NOTE} for hdf/ images)" if any_hdf else ""),
                 fontsize=9)
    fig.tight_layout()
    return fig


def figure_rotation(test, origin: str):
    """Fig. 3: rotated inputs, their reconstructions, and the derotated reconstructions (one colour scale)."""
    a = len(test.angles_deg)
    fig, axes = plt.subplots(3, a, figsize=(1.9 * a, 6.0), squeeze=False)
    vmin = float(min(test.rotated.min(), test.reconstructions.min()))
    vmax = float(max(test.rotated.max(), test.reconstructions.max()))
    rows = (("rotated input", test.rotated), ("reconstruction", test.reconstructions),
            ("derotated reconstruction", test.derotated))
    for r, (label, arrs) in enumerate(rows):
        for k in range(a):
            ax = axes[r, k]
            ax.imshow(arrs[k], origin="lower", vmin=vmin, vmax=vmax)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"{test.angles_deg[k]:g} deg", fontsize=8)
            if r == 2:
                ax.set_xlabel(f"rms {test.rms_error[k]:.3f}", fontsize=7)
        axes[r, 0].set_ylabel(label, fontsize=8)
    fig.suptitle(f"Rotation equivariance of the VAE: {_origin_label(origin)}", fontsize=9)
    fig.tight_layout()
    return fig


def figure_map(rows: Sequence[dict], system: str, source_origin: str):
    """Figs. 6-7: per noise level, true/fit observation, residual / sigma, true/fit source, source residual
    / (10 % of the true source's maximum).  Each row dict holds: label, sigma, snr, obs, fit, src_true,
    src_fit, extent (source-plane half width [arcsec]), fov (image half width [arcsec])."""
    n = len(rows)
    fig, axes = plt.subplots(n, 6, figsize=(15, 2.6 * n + 0.6), squeeze=False)
    titles = ("observation", "MAP fit", "(obs - fit) / sigma", "true source", "MAP source",
              "(true - fit) / (0.1 max true)")
    for r, row in enumerate(rows):
        fov, ext = row["fov"], row["extent"]
        img_ext = (-fov, fov, -fov, fov)
        src_ext = (-ext, ext, -ext, ext)
        vmax = float(max(row["obs"].max(), row["fit"].max()))
        vmin = float(min(row["obs"].min(), row["fit"].min()))
        smax = float(max(row["src_true"].max(), row["src_fit"].max()))
        smin = float(min(row["src_true"].min(), row["src_fit"].min(), 0.0))
        res = (row["obs"] - row["fit"]) / row["sigma"]
        sres = (row["src_true"] - row["src_fit"]) / (0.1 * row["src_true"].max())
        panels = ((row["obs"], img_ext, vmin, vmax, "viridis"), (row["fit"], img_ext, vmin, vmax, "viridis"),
                  (res, img_ext, -5, 5, "RdBu_r"), (row["src_true"], src_ext, smin, smax, "viridis"),
                  (row["src_fit"], src_ext, smin, smax, "viridis"), (sres, src_ext, -5, 5, "RdBu_r"))
        for c, (arr, extent, lo, hi, cmap) in enumerate(panels):
            ax = axes[r, c]
            im = ax.imshow(arr, origin="lower", extent=extent, vmin=lo, vmax=hi, cmap=cmap)
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
            ax.tick_params(labelsize=6)
            if r == 0:
                ax.set_title(titles[c], fontsize=8)
        axes[r, 0].set_ylabel(f"{row['label']}: sigma={row['sigma']:g}\nS/N={row['snr']:.0f}  [arcsec]", fontsize=8)
    fig.suptitle(f"MAP fits of mock {system}, source {_origin_label(source_origin)}", fontsize=9)
    fig.tight_layout()
    return fig


def figure_posteriors(sample_sets: Sequence[dict[str, np.ndarray]], set_labels: Sequence[str], truth: dict[str, float],
                      system: str, source_origin: str):
    """Figs. 8-9: corner plot of (r_Ein, gamma, phi) for the noise levels, with the truth."""
    names = ("r_ein", "slope", "phi")
    labels = (r"$r_{\rm Ein}$ [arcsec]", r"$\gamma$ (slope)", r"$\phi$ [rad]")
    return corner_plot(sample_sets, names, labels, set_labels, truth,
                       title=f"NUTS posteriors, mock {system}, source {_origin_label(source_origin)}")


def figure_training(history: dict):
    """ELBO per epoch (train minibatch mean and validation), the early-stopping epoch marked; the y axis
    starts at the lowest value after the first tenth of the epochs, so that the first epochs' ELBO (often
    four times the plateau's size, and negative) does not flatten the part that matters."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    train, val = np.asarray(history["train_elbo"]), np.asarray(history["val_elbo"])
    ep = np.arange(1, len(train) + 1)
    ax.plot(ep, train, label="train")
    ax.plot(ep, val, label="validation")
    ax.axvline(history["best_epoch"] + 1, color="k", ls=":", label="kept")
    late = np.concatenate([train[len(train) // 10:], val[len(val) // 10:]])
    late = late[np.isfinite(late)]
    if len(train) >= 10 and late.size:
        top = max(np.nanmax(train), np.nanmax(val))
        ax.set_ylim(late.min() - 0.05 * (top - late.min()), top + 0.05 * (top - late.min()))
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean ELBO [nats / image]")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
