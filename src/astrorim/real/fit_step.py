""""AstroRIM + fit" on one real lens (rule real_lens_fit) and Table 1 with the fit beside it (rule table1_fit).

    payload = run_lens_fit(name, catalogue_csv, checkpoint, out_json, reference_json)
    table = build_table1_fit(table1_csv, fit_jsons, out_prefix)

The lens is prepared exactly as for the network's run (:func:`astrorim.real.prepare.prepare_lens`: same centre,
cut-out, pixel scale, PSF, noise map and mask), then ``reconstruct(..., refine=True)`` fits it with the cut-out's
PSF and per-pixel noise map.  The quasar images found by the point-image search (the same positions the reference
fit uses) are masked out of the fit's likelihood -- disks of ``POINT_MASK_RADIUS_ARCSEC`` (at least
``POINT_MASK_MIN_PIX`` pixels) -- because the fit has no point-source model and their bright PSFs would dominate
chi^2 (docs/fit.md).  chi2/dof is the fit's chi^2 per used pixel (the source's effective degrees of freedom are
not subtracted).  A fit the input checks refuse, or one that fails, gives a row with its status and reason.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd

from astrorim.real.catalogue import get_entry
from astrorim.real.pipeline import write_json_atomic

POINT_MASK_RADIUS_ARCSEC = 0.2
POINT_MASK_MIN_PIX = 2.0
FIT_COLUMNS = ("theta_e_fit_arcsec", "theta_e_fit_err_arcsec", "abs_pct_diff_theta_e_fit", "chi2_dof_fit",
               "flag_fit", "fit_runtime_s", "fit_status")


def point_image_mask(npix: int, pixel_scale: float, lens_centre_arcsec: tuple[float, float],
                     offsets_arcsec: list[tuple[float, float]], radius_arcsec: float = POINT_MASK_RADIUS_ARCSEC,
                     min_pix: float = POINT_MASK_MIN_PIX) -> np.ndarray:
    """Boolean (npix, npix), False within ``radius`` of each image at lens centre + offset (x along columns,
    y along rows, arcsec, origin at the cut-out centre as :class:`astrorim.real.ingest.ModelInput`)."""
    centres = (np.arange(npix) - (npix - 1) / 2.0) * pixel_scale
    yy, xx = np.meshgrid(centres, centres, indexing="ij")
    radius = max(float(radius_arcsec), min_pix * pixel_scale)
    keep = np.ones((npix, npix), dtype=bool)
    for dx, dy in offsets_arcsec:
        x, y = lens_centre_arcsec[0] + dx, lens_centre_arcsec[1] + dy
        keep &= np.hypot(xx - x, yy - y) > radius
    return keep


def run_lens_fit(name: str, catalogue_csv: str | Path, checkpoint: str | Path, out_json: str | Path,
                 reference_json: str | Path | None = None, *,
                 mask_radius_arcsec: float = POINT_MASK_RADIUS_ARCSEC) -> dict:
    """Fit one catalogue lens; writes ``out_json`` and returns its payload.  ``mask_radius_arcsec`` 0: no
    point-image mask."""
    import torch

    from astrorim.inference import reconstruct
    from astrorim.real.prepare import prepare_lens

    torch.set_num_threads(1)
    entry = get_entry(catalogue_csv, name)
    if not entry.has_data:
        payload = {"name": name, "status": "no data available offline"}
        write_json_atomic(out_json, payload)
        return payload
    prepared = prepare_lens(entry)
    mi = prepared.model_input
    used = mi.mask.copy()
    offsets = [] if prepared.search is None else [(im.x_arcsec, im.y_arcsec) for im in prepared.search.images]
    radius = max(mask_radius_arcsec, POINT_MASK_MIN_PIX * mi.pixel_scale_arcsec) if mask_radius_arcsec > 0 else 0.0
    if offsets and radius > 0:
        used &= point_image_mask(mi.npix, mi.pixel_scale_arcsec, mi.lens_centre_arcsec, offsets, radius, 0.0)
    if mi.noise is None:
        from astrorim.real.ingest import robust_background_rms

        noise = np.full(mi.image.shape, robust_background_rms(mi.image, mi.mask), dtype=np.float64)
    else:
        noise = np.asarray(mi.noise, dtype=np.float64).copy()
    # Pixels outside the mask carry no likelihood weight; a finite stand-in keeps the input checks happy.
    good = used & np.isfinite(noise) & (noise > 0)
    noise[~good] = float(np.max(noise[good])) if good.any() else 1.0
    payload = {"name": name, "checkpoint": str(checkpoint), "pixel_scale_arcsec": mi.pixel_scale_arcsec,
               "n_point_images_masked": len(offsets) if radius > 0 else 0, "point_mask_radius_arcsec": radius,
               "n_pixels_used": int(good.sum()), "psf": "cut-out PSF" if mi.psf is not None else "model's learned PSF"}
    t0 = time.perf_counter()
    try:
        res = reconstruct(mi.image, checkpoint, noise_map=noise, psf=mi.psf, pixel_scale=mi.pixel_scale_arcsec,
                          refine=True, mask=good, device="cpu")
    except ValueError as exc:  # the fit's input checks: recorded, not a silent number
        payload.update(status="fit refused", reason=str(exc))
        write_json_atomic(out_json, payload)
        return payload
    p = res.params.iloc[0]
    payload.update({
        "status": "ok", "fit_runtime_s": time.perf_counter() - t0,
        "theta_e_fit_arcsec": float(p["theta_e_arcsec"]), "theta_e_fit_err_arcsec": float(p["theta_e_arcsec_err"]),
        "theta_e_network_arcsec": float(p["amortised_theta_e_arcsec"]),
        **{k: float(p[k]) for k in ("e1", "e1_err", "e2", "e2_err", "gamma1", "gamma1_err", "gamma2", "gamma2_err",
                                    "chi2_per_pixel", "log_evidence")},
        "converged": bool(p["converged"]), "flag": str(p["flag"]), "fit_reason": str(p["fit_reason"] or ""),
    })
    ref = _reference_theta(reference_json)
    if ref is not None:
        payload["theta_e_reference_arcsec"] = ref
        payload["theta_e_fit_minus_reference_percent"] = 100.0 * (payload["theta_e_fit_arcsec"] - ref) / ref
        payload["theta_e_network_minus_reference_percent"] = 100.0 * (payload["theta_e_network_arcsec"] - ref) / ref
    write_json_atomic(out_json, payload)
    return payload


def _reference_theta(reference_json) -> float | None:
    if reference_json is None:
        return None
    ref = json.loads(Path(reference_json).read_text(encoding="utf-8"))
    return float(ref["theta_e_arcsec"]) if ref.get("status") == "ok" else None


def table1_with_fit(table1: pd.DataFrame, fits: list[dict]) -> pd.DataFrame:
    """Table 1 with the fit's columns (FIT_COLUMNS) inserted after the network's chi2/dof; rows without a fit
    (no data, or a lens not run) get NaN and the fit's status where there is one."""
    by_name = {f["name"]: f for f in fits}
    out = table1.copy()
    cols: dict[str, list] = {c: [] for c in FIT_COLUMNS}
    for _, row in table1.iterrows():
        # a paper lens is listed as "<paper name> (<catalogue name>)" (astrorim.real.tables)
        label = str(row["lens"])
        inner = label[label.rfind("(") + 1:-1] if label.endswith(")") and "(" in label else label
        f = by_name.get(label, by_name.get(inner, {}))
        ok = f.get("status") == "ok"
        theta = f.get("theta_e_fit_arcsec") if ok else None
        ref = pd.to_numeric(row.get("theta_e_ref_arcsec"), errors="coerce")
        cols["theta_e_fit_arcsec"].append(theta if theta is not None else math.nan)
        cols["theta_e_fit_err_arcsec"].append(f.get("theta_e_fit_err_arcsec", math.nan) if ok else math.nan)
        cols["abs_pct_diff_theta_e_fit"].append(100.0 * abs(theta - ref) / ref
                                                if theta is not None and np.isfinite(ref) else math.nan)
        cols["chi2_dof_fit"].append(f.get("chi2_per_pixel", math.nan) if ok else math.nan)
        cols["flag_fit"].append(f.get("flag", "") if ok else "")
        cols["fit_runtime_s"].append(f.get("fit_runtime_s", math.nan) if ok else math.nan)
        cols["fit_status"].append(f.get("status", "") + (f": {f['reason']}" if f.get("reason") else ""))
    at = list(out.columns).index("chi2_dof_model") + 1 if "chi2_dof_model" in out.columns else len(out.columns)
    for i, c in enumerate(FIT_COLUMNS):
        out.insert(at + i, c, cols[c])
    # the summary row (mean absolute % error) of Table 1 gains the fit's over the same lenses
    summary = out["lens"].astype(str).str.startswith("Mean abs")
    if summary.any():
        both = ~summary & out["abs_pct_diff_theta_e"].notna() & out["abs_pct_diff_theta_e_fit"].notna()
        out.loc[summary, "abs_pct_diff_theta_e_fit"] = out.loc[both, "abs_pct_diff_theta_e_fit"].mean()
    return out


def table1_fit_latex(table: pd.DataFrame) -> str:
    """LaTeX: lens, reference theta_E, network theta_E (|d| %), fit theta_E +- err (|d| %), chi2/dof, flags."""
    from astrorim.evaluate.tables import latex_fixed

    lines = ["% Generated by astrorim.real.fit_step.table1_fit_latex -- do not edit by hand.", "\\begin{table*}",
             "\\centering", "\\caption{Real lenses: the lenstronomy reference, AstroRIM and AstroRIM + fit "
             "(Einstein radius in arcsec, absolute difference from the reference in per cent, $\\chi^2$/dof).}",
             "\\label{tab:table1_fit}", "\\begin{tabular}{lllllll}", "\\toprule",
             "Lens & $\\theta_E^{\\rm ref}$ & $\\theta_E^{\\rm AstroRIM}$ & $\\chi^2$/dof & "
             "$\\theta_E^{\\rm fit}$ & $\\chi^2$/dof (fit) & fit flag \\\\", "\\midrule"]
    for _, r in table.iterrows():
        if pd.isna(r.get("theta_e_model_arcsec")) and pd.isna(r.get("theta_e_fit_arcsec")):
            continue
        fit = ("--" if pd.isna(r["theta_e_fit_arcsec"]) else
               f"${latex_fixed(r['theta_e_fit_arcsec'], 3)} \\pm {latex_fixed(r['theta_e_fit_err_arcsec'], 3)}$ "
               f"({latex_fixed(r['abs_pct_diff_theta_e_fit'], 1)}\\%)")
        net = (f"{latex_fixed(r['theta_e_model_arcsec'], 3)} ({latex_fixed(r['abs_pct_diff_theta_e'], 1)}\\%)")
        flag = str(r["flag_fit"]).replace("_", "\\_") if isinstance(r["flag_fit"], str) else "--"
        lines.append(f"{r['lens']} & {latex_fixed(r['theta_e_ref_arcsec'], 3)} & {net} & "
                     f"{latex_fixed(r['chi2_dof_model'], 1)} & {fit} & {latex_fixed(r['chi2_dof_fit'], 2)} & "
                     f"{flag} \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table*}", ""]
    return "\n".join(lines)


def build_table1_fit(table1_csv: str | Path, fit_jsons, out_prefix: str | Path) -> pd.DataFrame:
    """``<out_prefix>.csv`` / ``.tex``: Table 1 with the fit's columns (atomic writes)."""
    from astrorim.evaluate.tables import write_csv
    from astrorim.io.atomic import write_text_atomic

    fits = [json.loads(Path(p).read_text(encoding="utf-8")) for p in fit_jsons]
    table = table1_with_fit(pd.read_csv(table1_csv), fits)
    out_prefix = Path(out_prefix)
    write_csv(table, out_prefix.with_suffix(".csv"), index=False)
    write_text_atomic(out_prefix.with_suffix(".tex"), table1_fit_latex(table))
    return table
