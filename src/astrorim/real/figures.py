"""Figures for the real lenses: the reference-fit check and the per-lens diagnostic panel (paper Figs 4-6).

Images are shown with origin='lower' (row 0 at the bottom, as FITS stores them) and axes in arcsec
of the pixel frame centred on the lens.  Files are written atomically.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from astrorim.io.atomic import atomic_path  # noqa: E402


def _save(fig, path: str | Path, dpi: int = 110) -> None:
    # bbox_inches="tight": the saved area grows to hold every label, so none is cut at the figure's edge
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=dpi, format="png", bbox_inches="tight", pad_inches=0.1)
    plt.close(fig)


def _asinh(img: np.ndarray, soft: float) -> np.ndarray:
    return np.arcsinh(img / soft)


def plot_reference_fit(prepared, result, path: str | Path) -> None:
    """Data with the lens centre and detected images, best-fit model and normalised residuals (PNG).

    ``prepared``: :class:`astrorim.real.prepare.PreparedLens`; ``result``:
    :class:`astrorim.real.reference_fit.ReferenceFitResult`.
    """
    _save(reference_fit_figure(prepared, result), path)


def reference_fit_figure(prepared, result):
    """The figure of :func:`plot_reference_fit`.  Detected images are cyan circles, other candidate peaks
    yellow crosses, the lens centre a red plus (each in the data panel's legend); the best-fit SIE + shear's
    image positions (cyan plus) and critical curve (orange) are drawn on the model, with their legend."""
    from lenstronomy.LensModel.lens_model import LensModel
    from matplotlib.lines import Line2D

    native = prepared.native
    r0, r1, c0, c1 = result.crop_rc
    sx, sy = result.pixel_scale_xy_arcsec
    rc, cc = prepared.centre_rc
    extent = [(c0 - 0.5 - cc) * sx, (c1 - 0.5 - cc) * sx, (r0 - 0.5 - rc) * sy, (r1 - 0.5 - rc) * sy]
    data = result.data_image
    noise_floor = float(np.median(native.noise[r0:r1, c0:c1][result.likelihood_mask]))
    soft = 3.0 * noise_floor
    vmax = float(np.percentile(_asinh(data, soft), 99.8))
    fig, axes = plt.subplots(1, 3, figsize=(15, 5.6), layout="constrained")
    model = np.where(result.likelihood_mask, result.model_image, np.nan)  # masked pixels are not modelled
    for ax, img, title in ((axes[0], data, "data"), (axes[1], model, "SIE+shear model")):
        ax.imshow(_asinh(img, soft), origin="lower", cmap="gray", extent=extent, vmin=_asinh(np.array(-soft), soft),
                  vmax=vmax)
        ax.set_title(title)
    axes[0].plot(0, 0, "r+", ms=14, mew=2, label="lens centre")
    rejected, images = prepared.search.rejected, prepared.search.images
    if images:
        axes[0].plot([im.x_arcsec for im in images], [im.y_arcsec for im in images], "o", mfc="none", mec="c",
                     ms=14, mew=1.5, label="detected images")
    if rejected:
        axes[0].plot([c.x_arcsec for c in rejected], [c.y_arcsec for c in rejected], "yx", ms=9, mew=1.5,
                     label="other peaks (rejected)")
    axes[0].legend(loc="lower left", fontsize=7, framealpha=0.7, markerscale=0.7)
    lens = LensModel(["SIE", "SHEAR"])
    xg = np.linspace(extent[0], extent[1], 300)
    yg = np.linspace(extent[2], extent[3], 300)
    xx, yy = np.meshgrid(xg, yg)
    fxx, fxy, fyx, fyy = lens.hessian(xx.ravel(), yy.ravel(), result.kwargs_lens)
    det = ((1 - fxx) * (1 - fyy) - fxy * fyx).reshape(xx.shape)
    axes[1].contour(xg, yg, det, levels=[0.0], colors="orange", linewidths=1.0)
    ps = result.kwargs_ps[0]
    axes[1].plot(ps["ra_image"], ps["dec_image"], "c+", ms=10, label="model image positions")
    handles = axes[1].get_legend_handles_labels()[0] + [Line2D([], [], color="orange", lw=1.0)]
    axes[1].legend(handles, ["model image positions", "critical curve"], loc="lower left", fontsize=7,
                   framealpha=0.7)
    res = np.where(result.likelihood_mask, result.normalised_residual, np.nan)
    im2 = axes[2].imshow(res, origin="lower", cmap="RdBu_r", vmin=-5, vmax=5, extent=extent)
    axes[2].set_title(f"(data - model)/sigma   chi2/dof = {result.chi2_reduced:.2f}")
    fig.colorbar(im2, ax=axes[2], fraction=0.046, label="normalised residual")
    for ax in axes:
        ax.set_xlabel("x [arcsec] (pixel frame)")
        ax.set_ylabel("y [arcsec] (pixel frame)")
    name = prepared.entry.name
    fig.suptitle(f"{name}: theta_E = {result.theta_e_arcsec:.4f} +- {result.theta_e_err_arcsec:.4f}\"  "
                 f"(catalogue start value {prepared.entry.theta_e_catalogue_arcsec:.4f}\")   {result.method}",
                 fontsize=9)
    return fig


def plot_diagnostic_panel(name: str, model_input, model_output, diag: dict, arrays: dict, path: str | Path) -> None:
    """Eight panels like the paper's Figs 4-6 (PNG; :func:`diagnostic_figure`)."""
    _save(diagnostic_figure(name, model_input, model_output, diag, arrays), path)


def diagnostic_figure(name: str, model_input, model_output, diag: dict, arrays: dict):
    """Eight panels like the paper's Figs 4-6.

    observed | model image | residual | chi2 map
    reconstructed source | kappa map + critical curve | kappa(r) with theta_E | enclosed mass M(<r)

    ``diag``: the diagnostics payload of :func:`astrorim.real.pipeline.run_lens`; ``arrays``: the
    kappa map, its coordinates, the magnification determinant and the chi2 map.  A red banner marks a
    chi2/dof above the threshold and a stamp marks illustrative-only inputs.
    """
    half = 0.5 * model_input.npix * model_input.pixel_scale_arcsec
    ext = [-half, half, -half, half]
    mask = model_input.mask
    obs = np.where(mask, model_input.image, np.nan)
    model = model_output.model_image
    resid = np.where(mask, model_input.image - model, np.nan)
    noise = model_input.noise
    soft = 3.0 * float(np.nanmedian(np.where(mask, noise, np.nan))) if noise is not None else 0.01
    vmax = float(np.nanpercentile(_asinh(obs, soft), 99.8))
    m = diag["model"]
    cons = diag["consistency"]
    fig, axes = plt.subplots(2, 4, figsize=(19, 9.5))
    a = axes[0]
    a[0].imshow(_asinh(obs, soft), origin="lower", cmap="gray", extent=ext, vmax=vmax)
    a[0].set_title("observed (asinh)")
    a[1].imshow(_asinh(model, soft), origin="lower", cmap="gray", extent=ext, vmax=vmax)
    a[1].set_title("model image F(source; params)")
    lim = float(np.nanpercentile(np.abs(resid), 99.5)) or 1.0
    im = a[2].imshow(resid, origin="lower", cmap="RdBu_r", vmin=-lim, vmax=lim, extent=ext)
    a[2].set_title(f"residual  (RMS {cons['rms_residual']:.3g})")
    fig.colorbar(im, ax=a[2], fraction=0.046)
    im = a[3].imshow(np.log10(np.maximum(arrays["chi2_map"], 1e-3)), origin="lower", cmap="magma", extent=ext,
                     vmin=-1, vmax=max(2.0, float(np.nanpercentile(np.log10(np.maximum(arrays["chi2_map"], 1e-3)), 99.5))))
    a[3].set_title(f"log10 chi2 per pixel  (chi2/dof = {cons['chi2_dof']:.2f})")
    fig.colorbar(im, ax=a[3], fraction=0.046)
    b = axes[1]
    im = b[0].imshow(model_output.source, origin="lower", cmap="inferno", extent=ext)
    b[0].set_title(f"reconstructed source (max/mean {diag['source']['source_max']:.3g}/"
                   f"{diag['source']['source_mean']:.3g})", fontsize=9)
    fig.colorbar(im, ax=b[0], fraction=0.046)
    xk, yk, kappa = arrays["kappa_x"], arrays["kappa_y"], arrays["kappa"]
    im = b[1].imshow(np.log10(np.maximum(kappa, 1e-3)), origin="lower", cmap="viridis",
                     extent=[xk.min(), xk.max(), yk.min(), yk.max()])
    b[1].contour(xk, yk, arrays["det_a"], levels=[0.0], colors="w", linewidths=1.0)
    b[1].set_title("log10 kappa, critical curve (white)")
    fig.colorbar(im, ax=b[1], fraction=0.046)
    c = diag["curves"]
    b[2].plot(c["r_kappa_arcsec"], c["kappa_r"], "k-", label="kappa(r)")
    b[2].axvline(m["theta_e_arcsec"], color="C3", ls="--", label=f"theta_E = {m['theta_e_arcsec']:.3f}\"")
    ref = diag.get("reference") or {}
    if ref.get("theta_e_arcsec") is not None:
        b[2].axvline(ref["theta_e_arcsec"], color="C0", ls=":", label=f"reference {ref['theta_e_arcsec']:.3f}\"")
    b[2].axhline(1.0, color="0.6", lw=0.8, label="kappa = 1")
    b[2].axhline(0.5, color="0.6", lw=0.8, ls=":", label="kappa = 1/2")
    b[2].set_yscale("log")
    b[2].set_xlabel("r [arcsec]")
    b[2].set_ylabel("azimuthal mean kappa(r)")
    b[2].legend(fontsize=8)
    b[3].plot(c["r_mass_arcsec"], c["enclosed_mass_msun"], "k-", label="M(<r)")
    b[3].axvline(m["theta_e_arcsec"], color="C3", ls="--", label=f"theta_E = {m['theta_e_arcsec']:.3f}\"")
    b[3].axhline(m["einstein_mass_msun"], color="C3", ls=":", label=f"M_E = {m['einstein_mass_msun']:.3g} Msun")
    b[3].set_xlabel("r [arcsec]")
    b[3].set_ylabel("M(<r) [Msun]")
    b[3].legend(fontsize=8)
    for ax in list(a) + [b[0], b[1]]:
        ax.set_xlabel("x [arcsec]")
    p = diag["model"]["params"]
    fig.suptitle(f"{name}   theta_E = {m['theta_e_arcsec']:.3f}\"  sigma_SIS = {m['sigma_sis_kms']:.0f} km/s  "
                 f"M_E = {m['einstein_mass_msun']:.3g} Msun   q = {p['q']:.3f}  gamma = {p['gamma']:.3f}   "
                 f"pixel {diag['pixel_scale_arcsec']}\"/pix  (z_l, z_s) = ({diag['z_lens']}, {diag['z_source']})",
                 fontsize=11)
    if cons["flag_high_chi2"]:
        fig.text(0.5, 0.935, f"FLAG: chi2/dof = {cons['chi2_dof']:.1f} > {cons['chi2_dof_threshold']:.1f} - the model "
                 "image does not reproduce the data", ha="center", color="white", fontsize=12,
                 bbox={"facecolor": "red", "alpha": 0.85})
    if diag.get("illustrative_only"):
        fig.text(0.5, 0.5, "ILLUSTRATIVE ONLY", ha="center", va="center", rotation=20, fontsize=60, color="red",
                 alpha=0.35, transform=fig.transFigure)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    return fig
