"""Evaluation figures: Figure 7 (representative reconstructions), metric distributions, failure gallery,
parameter recovery.  All images are shown with origin='lower' (row 0 at the bottom, as FITS).

Figure 7 is not curated: for each version the rows are the AstroRIM reconstructions at evenly spaced
SSIM quantiles of that version (e.g. P10, P50, P90 for three rows).  The observation is shown whole,
linearly between 0 and its 99.5th percentile.  Sources cover a few pixels of the 96 x 96 grid, so truth,
reconstruction and residual are zoomed on a square box around the truth's support (pixels >= 1% of its
peak, at least 20 px; drawn in cyan on the observation).  Truth and reconstruction are on the
evaluation's normalisation (divided by the truth's peak) with a square-root stretch on [0, 1] (values
outside are saturated in the display only); the residual is reconstruction - truth on that scale,
linear, with a symmetric range set by its largest absolute value over the whole image.  Every panel has its
colour bar and an angular scale bar (arcsec, from the example's pixel scale).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.patches  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from astrorim.io.atomic import atomic_path  # noqa: E402

VERSIONS = ("v1", "v2", "v3", "v4", "v5", "v6")
DPI = 110
ZOOM_THRESHOLD = 0.01
ZOOM_MIN_HALF = 10


def _save(fig, path: str | os.PathLike) -> list[Path]:
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return [path]


SCALE_BAR_ARCSEC = (0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0)


def _imshow(ax, image, title, vmin, vmax, cmap="magma", norm=None, extent=None):
    kwargs = {"norm": norm} if norm is not None else {"vmin": vmin, "vmax": vmax}
    im = ax.imshow(image, origin="lower", cmap=cmap, interpolation="nearest", extent=extent, **kwargs)
    ax.set_title(title, fontsize=7)
    ax.set_xticks([])
    ax.set_yticks([])
    return im


def _colour_bar(ax, im, label: str = ""):
    """A thin colour bar right of the panel, inside the panel's own space (the grid is left as it is)."""
    cax = ax.inset_axes([1.02, 0.0, 0.05, 1.0])
    bar = ax.figure.colorbar(im, cax=cax)
    bar.ax.tick_params(labelsize=5, length=2, pad=1)
    if label:
        bar.set_label(label, fontsize=5, labelpad=1)
    return bar


def scale_bar_arcsec(width_pixels: float, pixel_scale_arcsec: float) -> float:
    """The longest round length (arcsec) of SCALE_BAR_ARCSEC no longer than a third of the panel's width."""
    width = width_pixels * pixel_scale_arcsec
    fitting = [s for s in SCALE_BAR_ARCSEC if s <= width / 3]
    return fitting[-1] if fitting else SCALE_BAR_ARCSEC[0]


def _scale_bar(ax, width_pixels: float, pixel_scale_arcsec: float, colour: str = "w"):
    """An angular scale bar in the panel's lower left (axes in pixel units)."""
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    if not np.isfinite(pixel_scale_arcsec) or pixel_scale_arcsec <= 0:
        return None
    length = scale_bar_arcsec(width_pixels, pixel_scale_arcsec)
    bar = AnchoredSizeBar(ax.transData, length / pixel_scale_arcsec, f'{length:g}"', "lower left", pad=0.3,
                          borderpad=0.2, sep=1.5, color=colour, frameon=False, size_vertical=0,
                          fontproperties={"size": 6})
    ax.add_artist(bar)
    return bar


def source_box(truth_n: np.ndarray, threshold: float = ZOOM_THRESHOLD, min_half: int = ZOOM_MIN_HALF,
               margin: int = 4) -> tuple[slice, slice]:
    """A square window (rows, cols) around the pixels where the normalised truth >= threshold."""
    n0, n1 = truth_n.shape
    rows, cols = np.nonzero(truth_n >= threshold)
    if rows.size == 0:
        return slice(0, n0), slice(0, n1)
    cy, cx = (rows.min() + rows.max() + 1) / 2, (cols.min() + cols.max() + 1) / 2
    half = int(max(min_half, np.ceil(max(rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) / 2) + margin))
    half = min(half, n0 // 2, n1 // 2)
    r0 = int(np.clip(round(cy - half), 0, n0 - 2 * half))
    c0 = int(np.clip(round(cx - half), 0, n1 - 2 * half))
    return slice(r0, r0 + 2 * half), slice(c0, c0 + 2 * half)


def _reconstruction_row(axes, ex, estimates, row: int, ssim: float, method: str = "astrorim"):
    """observed (full field) | truth | reconstruction | residual (zoomed on the source)."""
    from matplotlib.colors import PowerNorm

    obs = ex.observed[row]
    truth = ex.source[row].astype(np.float64)
    s = truth.max()
    t = truth / s
    r = estimates[method][row] / s
    res = r - t
    info = ex.truth.iloc[row]
    pixel_scale = float(info.get("pixel_scale", np.nan))
    im = _imshow(axes[0], obs, f"observed {info['version']} #{int(info['index'])}", 0.0,
                 max(float(np.percentile(obs, 99.5)), 1e-12), "gray")
    _colour_bar(axes[0], im)
    _scale_bar(axes[0], obs.shape[1], pixel_scale)
    ys, xs = source_box(t)
    # pixel-index extent so that the zoomed panels keep the full image's pixel coordinates
    extent = (xs.start - 0.5, xs.stop - 0.5, ys.start - 0.5, ys.stop - 0.5)
    axes[0].add_patch(matplotlib.patches.Rectangle((xs.start - 0.5, ys.start - 0.5), xs.stop - xs.start,
                                                   ys.stop - ys.start, fill=False, ec="c", lw=0.6))
    size = f"{ys.stop - ys.start}px"
    width = xs.stop - xs.start
    im = _imshow(axes[1], t[ys, xs], f"ground truth ({size} box)", 0, 1, norm=PowerNorm(0.5, 0.0, 1.0),
                 extent=extent)
    _colour_bar(axes[1], im, "/ truth peak")
    im = _imshow(axes[2], np.clip(r[ys, xs], 0, None), f"reconstruction, SSIM={ssim:.3f}", 0, 1,
                 norm=PowerNorm(0.5, 0.0, 1.0), extent=extent)
    _colour_bar(axes[2], im, "/ truth peak")
    lim = max(float(np.abs(res).max()), 1e-6)
    im = _imshow(axes[3], res[ys, xs], f"recon - truth (±{lim:.2f}, full max)", -lim, lim, "RdBu_r",
                 extent=extent)
    _colour_bar(axes[3], im)
    for ax in axes[1:4]:
        _scale_bar(ax, width, pixel_scale, colour="w" if ax is not axes[3] else "k")
    return im


def _pick_quantile_rows(frame: pd.DataFrame, k: int) -> list[int]:
    """Positions (into the ExampleSet) of the examples at k evenly spaced SSIM quantiles."""
    frame = frame.sort_values(["ssim", "position"]).reset_index(drop=True)
    if len(frame) <= k:
        return frame["position"].tolist()
    qs = np.linspace(0.1, 0.9, k) if k > 1 else np.array([0.5])
    picks = []
    for q in qs:
        i = int(round(q * (len(frame) - 1)))
        while frame.at[i, "position"] in picks and i + 1 < len(frame):
            i += 1
        picks.append(int(frame.at[i, "position"]))
    return picks


def _astrorim_frame(result) -> pd.DataFrame:
    pe = result.per_example
    frame = pe[pe["method"] == "astrorim"].reset_index(drop=True).copy()
    frame["position"] = np.arange(len(frame))  # rows follow the ExampleSet order
    return frame


def figure7(result, path, rows_per_version: int | None = None) -> list[Path]:
    """Observed / truth / AstroRIM / residual for each version at SSIM quantiles."""
    k = rows_per_version or result.provenance.get("settings", {}).get("figure_rows_per_version", 3)
    frame = _astrorim_frame(result)
    picks = []
    for v in VERSIONS:
        sub = frame[frame["version"] == v]
        if len(sub):
            picks += [(v, p) for p in _pick_quantile_rows(sub, k)]
    fig, axes = plt.subplots(len(picks), 4, figsize=(8.4, 1.85 * len(picks)), squeeze=False)
    for (v, pos), ax_row in zip(picks, axes):
        _reconstruction_row(ax_row, result.examples, result.estimates, pos, float(frame.at[pos, "ssim"]))
    fig.suptitle("AstroRIM on held-out simulations, rows at SSIM quantiles (P10..P90) of each version.\n"
                 "Truth and reconstruction / truth peak, sqrt stretch on [0, 1], zoomed on the source (cyan box)",
                 fontsize=8, y=1.0)
    fig.tight_layout(h_pad=0.6, w_pad=1.2)
    return _save(fig, path)


def failure_gallery(result, path, n: int | None = None) -> list[Path]:
    """The n lowest-SSIM AstroRIM reconstructions with their truth parameters."""
    n = n or result.provenance.get("settings", {}).get("n_failures", 10)
    frame = _astrorim_frame(result).sort_values(["ssim", "position"]).head(n)
    fig, axes = plt.subplots(len(frame), 5, figsize=(10.7, 1.9 * len(frame)), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 1, 1, 1, 1.25]})
    ex = result.examples
    for (_, r), ax_row in zip(frame.iterrows(), axes):
        pos = int(r["position"])
        _reconstruction_row(ax_row[:4], ex, result.estimates, pos, float(r["ssim"]))
        t = ex.truth.iloc[pos]
        snr = float(ex.source[pos].max() / max(float(ex.noise_sigma[pos]), 1e-30))
        lines = [f"{t['version']} #{int(t['index'])}  MSE={r['mse']:.2e}",
                 f"theta_E={t['theta_E']:.2f}\"  q={t['q']:.2f}",
                 f"gamma={t['norm_gamma']:.3f}  halo={bool(t.get('has_nfw', False))}",
                 f"subhalos={int(t.get('n_subhalos', 0))}  2nd lens={bool(t.get('has_second_lens', False))}",
                 f"PSF {t.get('psf_family', '?')} {float(t.get('psf_fwhm', np.nan)):.2f}\"  "
                 f"{float(t['pixel_scale']):.2f}\"/px",
                 f"mag_src={float(t.get('mag_source', np.nan)):.1f}  peak/sigma={snr:.0f}",
                 f"{t.get('source_morphology', '?')} clumps={int(t.get('n_clumps', 0))} "
                 f"spiral={bool(t.get('has_spiral', False))}"]
        ax_row[4].axis("off")
        ax_row[4].text(0.0, 0.5, "\n".join(lines), fontsize=6.5, va="center", family="monospace",
                       transform=ax_row[4].transAxes)
    fig.suptitle(f"Failure gallery: the {len(frame)} lowest-SSIM AstroRIM reconstructions", fontsize=9, y=1.0)
    fig.tight_layout(h_pad=0.6, w_pad=1.2)
    return _save(fig, path)


def metric_distributions(per_example: pd.DataFrame, labels: dict[str, str], path) -> list[Path]:
    """Box plots of SSIM, source-region SSIM and MSE by version, one colour per method."""
    import seaborn as sns

    frame = per_example.copy()
    plain = {m: labels.get(m, m).replace("$", "").replace("\\Theta", "Θ").replace("^T", "ᵀ").replace("x_0", "x₀")
             for m in frame["method"].unique()}
    frame["Method"] = frame["method"].map(plain)
    order = [v for v in VERSIONS if v in set(frame["version"])]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    panels = (("ssim", "SSIM (11x11 Gaussian, σ=1.5)", False), ("ssim_source", "SSIM, source region only", False),
              ("mse", "MSE (normalised images)", True))
    for ax, (col, title, log) in zip(axes, panels):
        with warnings.catch_warnings():  # seaborn 0.13 passes matplotlib's deprecated `vert` to bxp
            warnings.filterwarnings("ignore", message=".*vert: bool was deprecated.*")
            sns.boxplot(data=frame, x="version", y=col, hue="Method", order=order, ax=ax, fliersize=1.5,
                        linewidth=0.7, log_scale=log)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("simulator version")
        ax.set_ylabel(col)
        ax.legend_.remove()
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=len(names), fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, -0.06))
    fig.tight_layout()
    return _save(fig, path)


def parameter_scatter(params: pd.DataFrame, path) -> list[Path]:
    """Predicted vs true for the nine parameters and theta_E, coloured by version."""
    from astrorim.evaluate.recovery import PERIODIC, RECOVERED, UNITS, has_halo

    fig, axes = plt.subplots(2, 5, figsize=(16, 6.6))
    colours = dict(zip(VERSIONS, plt.get_cmap("tab10").colors))
    halo = has_halo(params)
    for ax, p in zip(axes.ravel(), RECOVERED):
        true = params[f"true_{p}"].to_numpy(float)
        # angles: true + periodic error, so a correct prediction lies on the diagonal
        pred = true + params[f"err_{p}"].to_numpy(float) if p in PERIODIC else params[f"pred_{p}"].to_numpy(float)
        mask = halo if p == "r_s" else np.isfinite(true)
        for v in VERSIONS:
            m = mask & (params["version"].to_numpy() == v)
            if m.any():
                ax.scatter(true[m], pred[m], s=6, alpha=0.7, color=colours[v], label=v, linewidths=0)
        if mask.any():
            lo = float(np.nanmin(np.concatenate([true[mask], pred[mask]])))
            hi = float(np.nanmax(np.concatenate([true[mask], pred[mask]])))
            ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        unit = f" [{UNITS[p]}]" if UNITS[p] else ""
        ax.set_title(p + (" (periodic, π)" if p in PERIODIC else "") + (" (halo only)" if p == "r_s" else ""),
                     fontsize=9)
        ax.set_xlabel("true" + unit, fontsize=8)
        ax.set_ylabel("predicted" + unit, fontsize=8)
        ax.tick_params(labelsize=7)
        if not mask.any():
            ax.text(0.5, 0.5, "no examples", ha="center", va="center", transform=ax.transAxes)
    handles, names = [], []
    for ax in axes.ravel():
        for h, n in zip(*ax.get_legend_handles_labels()):
            if n not in names:
                handles.append(h)
                names.append(n)
    fig.legend(handles, names, loc="lower center", ncol=6, fontsize=8, frameon=False, bbox_to_anchor=(0.5, -0.03),
               markerscale=2)
    fig.suptitle("Encoder parameter recovery on the test set", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)
