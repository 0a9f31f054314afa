"""The paper-003 baseline beside AstroRIM: one fitting hook, the per-lens comparison rows, summary and figure.

:func:`fit_image` runs the multi-start MAP of :mod:`astrorim.baseline.map_fit` on any square image.  The
image is divided by the project's robust flux scale (:func:`astrorim.model.normalisation.observation_scale`,
the 99.5th percentile) so that the paper's intensity prior (iota ~ N(1, 0.5)) applies; the source and
model image come back in the input's flux units.  The PSF is a Gaussian of ``psf_sigma_arcsec`` or a
given kernel on the image's pixel grid.  The lens model has no lens light (paper 003 footnote 3):
subtract it first if the image has any.

AstroRIM runs on its own grid (``npix`` of the checkpoint): a paper-003 mock (256 px over 10") is rebinned
flux-conservingly onto it (:func:`mock_on_model_grid`), and every source -- true, AstroRIM's, the MAP's --
is compared on that grid in flux per model pixel.  Lens parameters are compared in lenstronomy's
names and units (:data:`COMMON_PARAMS`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from astrorim.baseline.forward import LensingForward
from astrorim.baseline.latent_prior import LatentPrior
from astrorim.baseline.lens_model import ImageGrid
from astrorim.baseline.map_fit import MapConfig, run_map
from astrorim.baseline.pyro_model import LensingModel
from astrorim.baseline.source_model import DEFAULT_STAMP_WIDTH_PER_SCALE, source_plane_grid
from astrorim.baseline.vae import Decoder
from astrorim.evaluate.metrics import example_metrics
from astrorim.evaluate.recovery import wrap_periodic
from astrorim.inference import reconstruct
from astrorim.model.checkpoint import load_model
from astrorim.model.normalisation import observation_scale
from astrorim.params import half_fov_arcsec, shear_components
from astrorim.real.resample import rebin_flux, rebin_variance

PathLike = str | os.PathLike

# Baseline parameter -> column name shared with the simulator's truth table (lenstronomy names, arcsec/rad).
COMMON_PARAMS = {"r_ein": "theta_E", "q": "q", "phi": "phi", "x_lens": "center_x", "y_lens": "center_y",
                 "gamma1": "gamma1", "gamma2": "gamma2"}


@dataclass
class BaselineFit:
    """Lens (and source) parameters of the best start, the source on the image grid, the model image,
    both in the input's flux units, the log posterior and the wall time [s] of the whole call."""

    params: dict[str, float]
    source: np.ndarray
    model_image: np.ndarray
    log_posterior: float
    flux_scale: float
    wall_s: float


def fit_image(image: np.ndarray, noise_sigma: float, pixel_scale_arcsec: float, decoder: Decoder,
              latent_prior: LatentPrior, *, psf_sigma_arcsec: float | None = 0.05, psf_kernel: np.ndarray | None = None,
              map_config: MapConfig = MapConfig(), stamp_width_per_scale: float = DEFAULT_STAMP_WIDTH_PER_SCALE,
              progress: bool = False) -> BaselineFit:
    """MAP fit of one square ``image`` [any flux unit] with per-pixel noise ``noise_sigma`` [same unit]."""
    t0 = time.perf_counter()
    img = np.asarray(image, dtype=np.float32)
    if img.ndim != 2 or img.shape[0] != img.shape[1]:
        raise ValueError(f"image must be square 2-D, got shape {img.shape}")
    if not noise_sigma > 0 or not pixel_scale_arcsec > 0:
        raise ValueError(f"noise_sigma and pixel_scale_arcsec must be > 0, got {noise_sigma}, {pixel_scale_arcsec}")
    if psf_kernel is None and not (psf_sigma_arcsec and psf_sigma_arcsec > 0):
        raise ValueError("give psf_sigma_arcsec > 0 or a psf_kernel")
    scale = float(observation_scale(img[None])[0])
    grid = ImageGrid(img.shape[0], img.shape[0] * pixel_scale_arcsec)
    kernel = None if psf_kernel is None else torch.as_tensor(np.asarray(psf_kernel, dtype=np.float32))
    forward = LensingForward(decoder, grid, psf_sigma_arcsec or 0.0, stamp_width_per_scale, psf_kernel=kernel)
    model = LensingModel(forward, latent_prior, noise_sigma / scale)
    obs = torch.as_tensor(img / scale)
    result = run_map(model, obs, map_config, progress=progress)
    best = {k: torch.as_tensor(v[result.best:result.best + 1]) for k, v in result.values.items()}
    with torch.no_grad():
        stamps = forward.stamps(best["z"])
        model_image = forward.image_from_stamps(stamps, best)[0].numpy() * scale
        x, y = grid.coordinates()
        source = forward.source_on_grid(stamps, best, x, y)[0].numpy() * scale
    params = result.best_params()
    params["iota"] *= scale
    return BaselineFit(params, source, model_image, float(result.log_joint[result.best]), scale,
                       time.perf_counter() - t0)


def source_display(forward: LensingForward, stamps: torch.Tensor, params: dict[str, torch.Tensor], half_width: float,
                   npix: int = 128) -> np.ndarray:
    """The source on a square source-plane grid of half width ``half_width`` [arcsec]."""
    x, y = source_plane_grid(half_width, npix)
    with torch.no_grad():
        return forward.source_on_grid(stamps, params, x, y)[0].numpy()


# ------------------------------------------------------------------------------------ AstroRIM side
def astrorim_lens_params(row: dict | pd.Series, npix: int, pixel_scale_arcsec: float) -> dict[str, float]:
    """AstroRIM's nine normalised parameters -> the common lens parameters [arcsec, rad] (truth names).

    AstroRIM fits an SIE (+ NFW) where the baseline fits an EPL; both theta_E follow lenstronomy, for
    which an EPL of slope 2 is the SIE, so the Einstein radii compare one to one.
    """
    half = float(half_fov_arcsec(npix, pixel_scale_arcsec))
    g1, g2 = shear_components(float(row["gamma"]), float(row["gamma_phi"]))
    return {"theta_E": float(row["b"]) * half, "q": float(row["q"]), "phi": float(row["phi"]),
            "center_x": float(row["x0"]) * half, "center_y": float(row["y0"]) * half,
            "gamma1": float(g1), "gamma2": float(g2)}


@dataclass
class ModelGridMock:
    """A mock observation rebinned onto AstroRIM's grid.

    image: (npix, npix) flux per model pixel; noise_sigma: its per-pixel noise (the median over pixels,
    which differ slightly at the rebinned field's edge); flux_ratio: model-pixel area / mock-pixel area,
    the factor that turns the mock's flux per pixel into flux per model pixel; x, y: the model grid's
    pixel centres [arcsec], (npix, npix) tensors.
    """

    image: np.ndarray
    noise_sigma: float
    flux_ratio: float
    pixel_scale: float
    x: torch.Tensor
    y: torch.Tensor


def mock_on_model_grid(observation: np.ndarray, noise_sigma: float, fov_arcsec: float, npix: int) -> ModelGridMock:
    """Flux-conserving rebin of a square mock over ``fov_arcsec`` onto ``npix`` pixels over the same field."""
    n_in = observation.shape[0]
    ratio = n_in / npix
    centre = 0.5 * (n_in - 1)
    image = rebin_flux(observation, (centre, centre), npix, (ratio, ratio))
    variance = rebin_variance(np.full(observation.shape, noise_sigma ** 2), (centre, centre), npix, (ratio, ratio))
    x, y = ImageGrid(npix, fov_arcsec).coordinates()
    return ModelGridMock(image=image.astype(np.float32), noise_sigma=float(np.median(np.sqrt(variance))),
                         flux_ratio=ratio ** 2, pixel_scale=fov_arcsec / npix, x=x, y=y)


class AstroRIMTimer:
    """AstroRIM on one observation at a time, timed per lens (model loaded and warmed up once, not timed)."""

    def __init__(self, checkpoint: PathLike, device: str = "cpu"):
        self.model, _ = load_model(checkpoint, map_location=device)
        self.model.eval()
        self.device = device
        self.npix = int(self.model.config.npix)
        reconstruct(np.ones((self.npix, self.npix), np.float32), self.model, noise_sigma=0.1, device=device)

    def __call__(self, image: np.ndarray, noise_sigma: float) -> tuple[np.ndarray, dict, float]:
        """(source in the image's flux units, the nine parameters, wall seconds)."""
        t0 = time.perf_counter()
        result = reconstruct(image, self.model, noise_sigma=noise_sigma, device=self.device)
        wall = time.perf_counter() - t0
        return result.source, result.params.iloc[0].to_dict(), wall


# ---------------------------------------------------------------------------------------- the table
def comparison_row(set_name: str, example: str, method: str, truth: dict[str, float],
                   estimate: dict[str, float] | None, wall_s: float, true_source: np.ndarray | None = None,
                   recon_source: np.ndarray | None = None, **extra) -> dict:
    """One (example, method) row: per common parameter truth, estimate and error (phi wrapped to
    [-pi/2, pi/2)), the source MSE / SSIM of the evaluation protocol (truth-peak normalisation,
    :func:`astrorim.evaluate.metrics.example_metrics`) when both sources are given, and the wall time."""
    row = {"set": set_name, "example": example, "method": method, **extra, "wall_s": float(wall_s)}
    for p in COMMON_PARAMS.values():
        t = float(truth.get(p, np.nan))
        e = float(estimate.get(p, np.nan)) if estimate else np.nan
        err = e - t
        if p == "phi":
            err = float(wrap_periodic(err, np.pi))
        row.update({f"{p}_true": t, f"{p}_est": e, f"{p}_err": err})
    if true_source is not None and recon_source is not None:
        m = example_metrics(true_source, recon_source)
        row.update({"source_mse": m.mse, "source_ssim": m.ssim})
    else:
        row.update({"source_mse": np.nan, "source_ssim": np.nan})
    return row


def comparison_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per (set, method): number of fits, median |error| of each common parameter (theta_E also relative),
    median source MSE and SSIM, median wall seconds per lens."""
    rows = []
    for (set_name, method), g in table.groupby(["set", "method"], sort=False):
        row = {"set": set_name, "method": method, "n": len(g)}
        for p in COMMON_PARAMS.values():
            row[f"median_abs_err_{p}"] = float(np.nanmedian(np.abs(g[f"{p}_err"]))) if g[f"{p}_err"].notna().any() \
                else np.nan
        rel = np.abs(g["theta_E_err"]) / g["theta_E_true"]
        row["median_rel_err_theta_E"] = float(np.nanmedian(rel)) if rel.notna().any() else np.nan
        for c in ("source_mse", "source_ssim"):
            row[f"median_{c}"] = float(np.nanmedian(g[c])) if g[c].notna().any() else np.nan
        row["median_wall_s"] = float(np.median(g["wall_s"]))
        rows.append(row)
    return pd.DataFrame(rows)


@dataclass
class Panel:
    """One row of the comparison figure: the observation and three sources on a common grid."""

    label: str
    observed: np.ndarray
    true_source: np.ndarray
    astrorim_source: np.ndarray
    map_source: np.ndarray


def _source_window(source: np.ndarray, level: float = 0.02, pad: int = 4, min_size: int = 16
                   ) -> tuple[slice, slice]:
    """A square window around the pixels above ``level`` x peak of ``source`` (the whole image if none)."""
    n = source.shape[0]
    rows, cols = np.nonzero(source > level * np.max(source)) if np.max(source) > 0 else ((), ())
    if len(rows) == 0:
        return slice(0, n), slice(0, n)
    centre = (0.5 * (rows.min() + rows.max()), 0.5 * (cols.min() + cols.max()))
    half = max(rows.max() - rows.min(), cols.max() - cols.min(), min_size) / 2 + pad
    lo = [int(np.clip(round(c - half), 0, max(n - 2 * half, 0))) for c in centre]
    size = int(min(2 * half, n))
    return slice(lo[0], lo[0] + size), slice(lo[1], lo[1] + size)


def _bar_panel(ax, labels: list[str], values: np.ndarray, colours: list, xlabel: str) -> None:
    """Horizontal bars with their values written beside them, on a log axis when the values span more than a
    decade (a 0.002 bar next to a 0.4 one is invisible on a linear axis); a missing value is written n/a."""
    values = np.asarray(values, dtype=float)
    positive = values[np.isfinite(values) & (values > 0)]
    log = positive.size > 1 and positive.max() / positive.min() > 10
    if log:
        ax.set_xscale("log")
        left = positive.min() / 3
        ax.barh(range(len(values)), np.where(np.isfinite(values), values - left, 0.0), left=left, color=colours)
        ax.set_xlim(left, positive.max() * 8)
    else:
        ax.barh(range(len(values)), np.nan_to_num(values), color=colours)
        if positive.size:
            ax.set_xlim(0, positive.max() * 1.35)
    for i, value in enumerate(values):
        text = f"{value:.3g}" if np.isfinite(value) else "n/a"
        x = value if np.isfinite(value) and (value > 0 or not log) else (ax.get_xlim()[0])
        ax.annotate(text, (x, i), xytext=(2, 0), textcoords="offset points", va="center", fontsize=6)
    ax.set_yticks(range(len(values)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel + (" (log)" if log else ""), fontsize=8)


def comparison_figure(panels: list[Panel], summary: pd.DataFrame, title: str = ""):
    """Rows of (observed | true source | AstroRIM | MAP) beside median wall time and theta_E error per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(len(panels), 1)
    fig = plt.figure(figsize=(12.5, 2.4 * n + 0.6))
    grid = fig.add_gridspec(n, 6, width_ratios=[1, 1, 1, 1, 0.15, 1.4])
    for i, panel in enumerate(panels):
        vmax = float(np.max(panel.true_source)) or 1.0
        zoom = _source_window(panel.true_source)
        images = [(panel.observed, "observed", float(np.percentile(panel.observed, 99.5)) or 1.0),
                  (panel.true_source[zoom], "true source (zoom)", vmax),
                  (panel.astrorim_source[zoom], "AstroRIM", vmax), (panel.map_source[zoom], "paper-003 MAP", vmax)]
        for j, (img, name, top) in enumerate(images):
            ax = fig.add_subplot(grid[i, j])
            ax.imshow(img, origin="lower", cmap="magma", vmin=0.0, vmax=top)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(name, fontsize=9)
            if j == 0:
                ax.set_ylabel(panel.label, fontsize=8)
    methods = list(dict.fromkeys(summary["method"])) if len(summary) else []
    colours = dict(zip(methods, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    side = grid[:, 5].subgridspec(2, 1, hspace=0.5)
    bar_axes = [fig.add_subplot(side[0]), fig.add_subplot(side[1])]
    for ax, column, label in ((bar_axes[0], "median_wall_s", "median wall time per lens [s]"),
                              (bar_axes[1], "median_rel_err_theta_E", r"median $|\Delta\theta_E|/\theta_E$")):
        labels = [f"{r['set']}\n{r['method']}" for _, r in summary.iterrows()]
        cols = [colours.get(m, "grey") for m in summary["method"]] if len(summary) else []
        _bar_panel(ax, labels, summary[column].to_numpy(float) if len(summary) else np.array([]), cols, label)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
