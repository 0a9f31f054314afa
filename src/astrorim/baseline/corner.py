"""A small matplotlib corner plot (the ``corner`` package is not installed), as in paper 003 Figs. 8-9.

Diagonal: 1-D marginal densities (Gaussian KDE, histogram when the samples are degenerate).
Below: 2-D marginals with the samples as points and KDE contours enclosing 68 %, 95 % and 99 % of the
probability (shaded from dark to light), for several sample sets in different colours; the truth is a
black square with dashed lines.
"""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import to_rgba
from scipy.stats import gaussian_kde

LEVELS = (0.68, 0.95, 0.99)


def _kde(points: np.ndarray):
    """gaussian_kde of (d, n) points, or None when they are too few or degenerate."""
    if points.shape[-1] < 5:
        return None
    try:
        return gaussian_kde(points)
    except (np.linalg.LinAlgError, ValueError):
        return None


def density_levels(density: np.ndarray, masses: Sequence[float] = LEVELS) -> list[float]:
    """Density thresholds whose super-level sets hold the given probability masses (grid estimate)."""
    flat = np.sort(density.ravel())[::-1]
    cum = np.cumsum(flat)
    cum /= cum[-1]
    return [float(flat[min(np.searchsorted(cum, m), len(flat) - 1)]) for m in masses]


def corner_plot(sample_sets: Sequence[dict[str, np.ndarray]], names: Sequence[str], labels: Sequence[str],
                set_labels: Sequence[str], truth: dict[str, float] | None = None,
                colors: Sequence[str] = ("tab:blue", "tab:orange", "tab:green"), title: str = "",
                grid_points: int = 60):
    """Figure with a lower-triangular grid of panels for parameters ``names``."""
    d = len(names)
    fig, axes = plt.subplots(d, d, figsize=(2.6 * d + 0.6, 2.6 * d), squeeze=False)
    ranges = []
    for name in names:
        vals = np.concatenate([np.asarray(s[name]).ravel() for s in sample_sets])
        if truth is not None:
            vals = np.append(vals, truth[name])
        lo, hi = float(np.min(vals)), float(np.max(vals))
        pad = 0.08 * (hi - lo) if hi > lo else max(abs(lo) * 0.01, 1e-3)
        ranges.append((lo - pad, hi + pad))
    for i in range(d):
        for j in range(d):
            ax = axes[i, j]
            if j > i:
                ax.axis("off")
                continue
            xr = ranges[j]
            for s, color, lab in zip(sample_sets, colors, set_labels):
                x = np.asarray(s[names[j]]).ravel()
                if i == j:
                    kde = _kde(x[None])
                    if kde is None:
                        ax.hist(x, bins=10, range=xr, density=True, histtype="step", color=color, label=lab)
                    else:
                        g = np.linspace(*xr, 200)
                        ax.plot(g, kde(g[None]), color=color, label=lab)
                    continue
                y = np.asarray(s[names[i]]).ravel()
                ax.scatter(x, y, s=2, color=color, alpha=0.3, lw=0)
                kde = _kde(np.vstack([x, y]))
                if kde is None:
                    continue
                yr = ranges[i]
                gx, gy = np.meshgrid(np.linspace(*xr, grid_points), np.linspace(*yr, grid_points))
                dens = kde(np.vstack([gx.ravel(), gy.ravel()])).reshape(gx.shape)
                levels = sorted(set(density_levels(dens)))
                if len(levels) == len(LEVELS):
                    fills = [to_rgba(color, a) for a in (0.15, 0.3, 0.5)]
                    ax.contourf(gx, gy, dens, levels=levels + [dens.max() * 1.0001], colors=fills)
                    ax.contour(gx, gy, dens, levels=levels, colors=[color], linewidths=0.8)
            if truth is not None:
                ax.axvline(truth[names[j]], color="k", ls="--", lw=0.8)
                if i != j:
                    ax.axhline(truth[names[i]], color="k", ls="--", lw=0.8)
                    ax.plot(truth[names[j]], truth[names[i]], "ks", ms=5)
            ax.set_xlim(*xr)
            if i != j:
                ax.set_ylim(*ranges[i])
            if i == d - 1:
                ax.set_xlabel(labels[j])
            else:
                ax.set_xticklabels([])
            if j == 0 and i != 0:
                ax.set_ylabel(labels[i])
            elif i == j:
                ax.set_yticks([])
            else:
                ax.set_yticklabels([])
    handles, labels_ = axes[0, 0].get_legend_handles_labels()
    if d > 1:
        axes[0, d - 1].legend(handles, labels_, fontsize=8, loc="upper right", frameon=False)
    else:
        axes[0, 0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
