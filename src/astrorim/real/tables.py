"""Table 1 (model vs reference Einstein radius, velocity dispersion and mass) and per-lens tables
(paper Tables 3-5), as CSV and LaTeX, written atomically.

Table 1's reference ("ref") is our own lenstronomy SIE + shear fit (:mod:`astrorim.real.reference_fit`);
sigma_ref and M_E,ref are derived from theta_E,ref with the same conversions as the model values
(SIS-equivalent sigma, M_E = pi Sigma_crit theta_E^2, flat LambdaCDM H0 = 70, Om0 = 0.3).  The
catalogue starting values and the paper's own Table 1 numbers are extra columns, never the reference.
Lenses of the paper's Table 1 without data here are listed with "no data available offline".

Seconds per lens, side by side: ``model_runtime_s`` (the AstroRIM reconstruction alone, checkpoint
loading excluded; diagnostics.json field ``model_runtime_s``) and ``ref_runtime_s`` (wall time of the
lenstronomy PSO + MCMC fit, reference_fit.json ``runtime_s.total``).  JSONs written before these
fields existed give empty cells.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from astrorim.io.atomic import write_text_atomic
from astrorim.physics import conversions
from astrorim.real.catalogue import LensEntry, read_catalogue

NO_DATA = "no data available offline"
NO_MODEL = "model not run"

TABLE1_COLUMNS = [
    "lens", "z_lens", "z_source",
    "theta_e_model_arcsec", "theta_e_ref_arcsec", "theta_e_ref_err_arcsec", "abs_pct_diff_theta_e",
    "sigma_model_kms", "sigma_ref_kms", "abs_pct_diff_sigma",
    "mass_e_model_msun", "mass_e_ref_msun", "abs_pct_diff_mass_e",
    "theta_e_eff_model_arcsec", "theta_e_eff_ref_arcsec", "abs_pct_diff_theta_e_eff",
    "model_runtime_s", "ref_runtime_s",
    "chi2_dof_model", "flag_high_chi2", "illustrative_only",
    "theta_e_catalogue_arcsec", "paper_theta_e_ref_arcsec", "paper_z_lens", "paper_z_source",
    "in_paper_table1", "status",
]


def _pct(model: float | None, ref: float | None) -> float | None:
    if model is None or ref is None or not (math.isfinite(model) and math.isfinite(ref)) or ref == 0:
        return None
    return abs(model - ref) / abs(ref) * 100.0


def _read_payload(path: str | Path) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            payload = json.load(fh)
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the per-lens JSON ({exc})") from exc
    if "name" not in payload:
        raise ValueError(f"{path}: per-lens JSON has no field 'name'")
    return payload


def _finite_or_none(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def reference_runtime_s(ref: dict) -> float | None:
    """Wall seconds of the lenstronomy reference fit, or None where the JSON does not record it.

    Reads ``runtime_s`` as reference_fit.json writes it (a dict with ``total``) or as the
    diagnostics' reference summary does (a number), else ``runtime_seconds``.
    """
    runtime = ref.get("runtime_s")
    if isinstance(runtime, dict):
        runtime = runtime.get("total")
    if runtime is None:
        runtime = ref.get("runtime_seconds")
    return _finite_or_none(runtime)


def _err(ref: dict) -> float | None:
    """The reference uncertainty: scaled by sqrt(chi2/dof) where the fit records that, else the raw MCMC one."""
    scaled = ref.get("theta_e_err_scaled_arcsec")
    return scaled if scaled is not None else ref.get("theta_e_err_arcsec")


def _values(payload: dict) -> dict:
    """Model and reference Einstein radii (SIE parameter and effective) from a diagnostics or reference-fit JSON."""
    if "model" in payload or "reference" in payload:  # diagnostics.json from run_lens
        model = payload.get("model") or {}
        ref = payload.get("reference") or {}
        cons = payload.get("consistency") or {}
        return {"theta_e_model_arcsec": model.get("theta_e_arcsec"), "theta_e_ref_arcsec": ref.get("theta_e_arcsec"),
                "theta_e_ref_err_arcsec": _err(ref),
                "theta_e_eff_model_arcsec": model.get("theta_e_effective_arcsec"),
                "theta_e_eff_ref_arcsec": ref.get("theta_e_eff_arcsec"),
                "chi2_dof_model": cons.get("chi2_dof"), "flag_high_chi2": cons.get("flag_high_chi2"),
                "illustrative_only": payload.get("illustrative_only"),
                "model_runtime_s": _finite_or_none(payload.get("model_runtime_s")),
                "ref_runtime_s": reference_runtime_s(ref)}
    if payload.get("status") == "ok" and "theta_e_arcsec" in payload:  # reference_fit.json alone
        return {"theta_e_ref_arcsec": payload["theta_e_arcsec"], "theta_e_ref_err_arcsec": _err(payload),
                "theta_e_eff_ref_arcsec": payload.get("theta_e_eff_arcsec"),
                "ref_runtime_s": reference_runtime_s(payload)}
    return {}


def table1_status(payload: dict | None, theta_model, theta_ref) -> str:
    """What a Table-1 row can be trusted for: "ok" only when both radii exist and no flag is raised.

    Each raised flag is named: a model chi2/dof above the forward-consistency threshold (the model
    image does not fit the data, so its theta_E is suspect) and an illustrative-only input.
    """
    if payload is None:
        return "not run"
    if theta_model is None:
        return NO_MODEL if theta_ref is not None else "reference fit missing"
    problems = [] if theta_ref is not None else ["reference fit missing"]
    cons = payload.get("consistency") or {}
    high = cons.get("flag_high_chi2")
    if high is not None and not pd.isna(high) and bool(high):
        chi2, limit = cons.get("chi2_dof"), cons.get("chi2_dof_threshold")
        detail = "" if chi2 is None else f" {chi2:.3g}" + ("" if limit is None else f" > {limit:g}")
        problems.append(f"high model chi2/dof{detail}: model image does not fit the data")
    if payload.get("illustrative_only"):
        problems.append("illustrative only (non-linear / uncalibrated input)")
    return "; ".join(problems) if problems else "ok"


def table1_rows(payloads: dict[str, dict], entries: list[LensEntry], cosmology=None) -> pd.DataFrame:
    """One row per catalogue lens (paper Table-1 lenses first, in the paper's order) plus a MAPE row."""
    # The paper's Table 1 is alphabetical by its lens names.
    ordered = (sorted((e for e in entries if e.in_paper_table1), key=lambda e: e.paper_name or e.name)
               + [e for e in entries if not e.in_paper_table1])
    rows = []
    for e in ordered:
        zl = e.z_lens if e.z_lens is not None else e.paper_z_lens
        zs = e.z_source if e.z_source is not None else e.paper_z_source
        row = {c: None for c in TABLE1_COLUMNS}
        row.update(lens=e.paper_name or e.name, z_lens=zl, z_source=zs,
                   theta_e_catalogue_arcsec=e.theta_e_catalogue_arcsec, paper_theta_e_ref_arcsec=e.paper_theta_e_ref_arcsec,
                   paper_z_lens=e.paper_z_lens, paper_z_source=e.paper_z_source, in_paper_table1=e.in_paper_table1)
        if not e.has_data:
            row["status"] = NO_DATA
            rows.append(row)
            continue
        if e.paper_name and e.paper_name != e.name:
            row["lens"] = f"{e.paper_name} ({e.name})"
        payload = payloads.get(e.name)
        row.update(_values(payload) if payload else {})
        theta_m, theta_r = row["theta_e_model_arcsec"], row["theta_e_ref_arcsec"]
        for key, value in (("model", theta_m), ("ref", theta_r)):
            if value is not None:
                row[f"sigma_{key}_kms"] = conversions.sis_velocity_dispersion(value, zl, zs, cosmology)
                row[f"mass_e_{key}_msun"] = conversions.einstein_mass(value, zl, zs, cosmology)
        row["abs_pct_diff_theta_e"] = _pct(theta_m, theta_r)
        row["abs_pct_diff_sigma"] = _pct(row["sigma_model_kms"], row["sigma_ref_kms"])
        row["abs_pct_diff_mass_e"] = _pct(row["mass_e_model_msun"], row["mass_e_ref_msun"])
        row["abs_pct_diff_theta_e_eff"] = _pct(row["theta_e_eff_model_arcsec"], row["theta_e_eff_ref_arcsec"])
        row["status"] = table1_status(payload, theta_m, theta_r)
        rows.append(row)
    table = pd.DataFrame(rows, columns=TABLE1_COLUMNS)
    mape = {c: None for c in TABLE1_COLUMNS}
    mape["lens"] = "Mean abs. % error (MAPE)"
    for c in ("abs_pct_diff_theta_e", "abs_pct_diff_sigma", "abs_pct_diff_mass_e", "abs_pct_diff_theta_e_eff"):
        vals = pd.to_numeric(table[c], errors="coerce").dropna()
        mape[c] = float(vals.mean()) if len(vals) else None
    n_used = int(pd.to_numeric(table["abs_pct_diff_theta_e"], errors="coerce").notna().sum())
    mape["status"] = f"MAPE over {n_used} lens(es) with model and reference"
    return pd.concat([table, pd.DataFrame([mape], columns=TABLE1_COLUMNS)], ignore_index=True)


def _tex_num(value, fmt: str = "{:.3f}") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)) or pd.isna(value):
        return "--"
    return fmt.format(value)


def _tex_seconds(value) -> str:
    """Seconds: whole seconds from 10 s up, two significant digits below (GPU model steps take ms)."""
    if value is None or pd.isna(value):
        return "--"
    return f"{value:.0f}" if value >= 10 else f"{value:.2g}"


def _tex_sci(value) -> str:
    if value is None or pd.isna(value):
        return "--"
    exp = int(math.floor(math.log10(abs(value))))
    return f"${value / 10 ** exp:.2f} \\times 10^{{{exp}}}$"


def _tex_escape(text: str) -> str:
    return (str(text).replace("\\", r"\textbackslash{}").replace("&", r"\&").replace("%", r"\%")
            .replace("_", r"\_").replace("#", r"\#"))


def table1_latex(table: pd.DataFrame) -> str:
    """The paper's Table 1 layout; lenses without data span the numeric columns with a note."""
    lines = [r"\begin{tabular}{lrrrrrrrrrrrrr}", r"\hline",
             r"Lens & $z_l$ & $z_s$ & $\theta_E^{\rm model}$ & $\theta_E^{\rm ref}$ & $|\%\Delta\theta_E|$ & "
             r"$\sigma^{\rm model}$ & $\sigma^{\rm ref}$ & $|\%\Delta\sigma|$ & $M_E^{\rm model}$ & $M_E^{\rm ref}$ & "
             r"$|\%\Delta M_E|$ & $t^{\rm model}$ & $t^{\rm ref}$ \\",
             r" & & & [arcsec] & [arcsec] & & [km/s] & [km/s] & & [$M_\odot$] & [$M_\odot$] & & [s] & [s] \\",
             r"\hline"]
    for _, r in table.iterrows():
        name = _tex_escape(r["lens"])
        if r["status"] == NO_DATA:
            lines.append(f"{name} & {_tex_num(r['z_lens'])} & {_tex_num(r['z_source'])} & "
                         rf"\multicolumn{{11}}{{c}}{{\emph{{{NO_DATA}}}}} \\")
            continue
        if str(r["lens"]).startswith("Mean abs."):
            lines.append(r"\hline")
            lines.append(f"{name} & & & & & {_tex_num(r['abs_pct_diff_theta_e'], '{:.1f}')} & & & "
                         f"{_tex_num(r['abs_pct_diff_sigma'], '{:.1f}')} & & & "
                         rf"{_tex_num(r['abs_pct_diff_mass_e'], '{:.1f}')} & & \\")
            continue
        high = r["flag_high_chi2"]
        flag = r"$^\ast$" if high is not None and not pd.isna(high) and bool(high) else ""
        ref = _tex_num(r["theta_e_ref_arcsec"])
        if r["theta_e_ref_err_arcsec"] is not None and not pd.isna(r["theta_e_ref_err_arcsec"]):
            ref += rf"$\pm${r['theta_e_ref_err_arcsec']:.3f}"
        lines.append(
            f"{name}{flag} & {_tex_num(r['z_lens'])} & {_tex_num(r['z_source'])} & {_tex_num(r['theta_e_model_arcsec'])} & "
            f"{ref} & {_tex_num(r['abs_pct_diff_theta_e'], '{:.1f}')} & {_tex_num(r['sigma_model_kms'], '{:.1f}')} & "
            f"{_tex_num(r['sigma_ref_kms'], '{:.1f}')} & {_tex_num(r['abs_pct_diff_sigma'], '{:.1f}')} & "
            f"{_tex_sci(r['mass_e_model_msun'])} & {_tex_sci(r['mass_e_ref_msun'])} & "
            f"{_tex_num(r['abs_pct_diff_mass_e'], '{:.1f}')} & {_tex_seconds(r['model_runtime_s'])} & "
            rf"{_tex_seconds(r['ref_runtime_s'])} \\")
    lines += [r"\hline", r"\end{tabular}", "",
              "% ref = our lenstronomy SIE+shear fit; sigma and M_E from theta_E with flat LCDM (H0=70, Om0=0.3).",
              "% t: wall seconds per lens -- model: AstroRIM reconstruction (checkpoint loaded beforehand); "
              "ref: lenstronomy PSO + MCMC.",
              r"% $^\ast$: model chi2/dof above the forward-consistency threshold.", ""]
    return "\n".join(lines)


def build_table1(per_lens_jsons, catalogue_csv: str | Path, out_prefix: str | Path, cosmology=None) -> pd.DataFrame:
    """Write ``<out_prefix>.csv`` and ``<out_prefix>.tex`` from per-lens JSONs (diagnostics or reference fits).

    Every catalogue lens gets a row (those without data say so); a JSON for a lens not in the
    catalogue is an error.  Returns the table.
    """
    entries = read_catalogue(catalogue_csv)
    names = {e.name for e in entries}
    payloads: dict[str, dict] = {}
    for path in per_lens_jsons:
        payload = _read_payload(path)
        if payload["name"] not in names:
            raise ValueError(f"{path}: lens {payload['name']!r} is not in the catalogue {catalogue_csv}")
        payloads[payload["name"]] = payload
    table = table1_rows(payloads, entries, cosmology)
    out_prefix = Path(out_prefix)
    write_text_atomic(out_prefix.with_suffix(".csv"), table.to_csv(index=False))
    write_text_atomic(out_prefix.with_suffix(".tex"), table1_latex(table))
    return table


def lens_table_rows(diag: dict) -> list[tuple[str, str, str]]:
    """(quantity, value, unit) rows of a per-lens table (paper Tables 3-5) from a diagnostics payload."""
    p = diag["model"]["params"]
    m = diag["model"]
    c = diag["consistency"]
    rows = [
        ("b", f"{p['b']:.4f}", "half-FoV units"), ("q", f"{p['q']:.4f}", ""),
        ("phi", f"{p['phi']:.4f}", "rad"), ("(x0, y0)", f"({p['x0']:.4f}, {p['y0']:.4f})", "half-FoV units"),
        ("gamma", f"{p['gamma']:.4f}", ""), ("gamma_phi", f"{p['gamma_phi']:.4f}", "rad"),
        ("kappa_s", f"{p['kappa_s']:.4f}", ""), ("r_s", f"{p['r_s']:.4f}", "half-FoV units"),
        ("theta_E", f"{m['theta_e_arcsec']:.3f}", "arcsec"),
        ("theta_E,eff (mean kappa = 1)", f"{m['theta_e_effective_arcsec']:.3f}", "arcsec"),
        ("sigma_v (SIS)", f"{m['sigma_sis_kms']:.1f}", "km/s"),
        ("M_E = pi Sigma_crit theta_E^2", f"{m['einstein_mass_msun']:.3e}", "Msun"),
        ("M(<theta_E) (SIE+NFW)", f"{m['mass_within_theta_e_msun']:.3e}", "Msun"),
        ("Sigma_crit", f"{m['sigma_crit_msun_per_arcsec2']:.3e} ({m['sigma_crit_kg_per_m2']:.3f} kg/m^2)", "Msun/arcsec^2"),
        ("pixel scale", f"{diag['pixel_scale_arcsec']:.4f}", "arcsec/pix"),
        ("RMS residual", f"{c['rms_residual']:.4g}", "normalised flux"),
        ("S/N", f"{c['snr']:.1f}", ""),
        ("chi2/dof", f"{c['chi2_dof']:.2f}" + ("  [HIGH]" if c["flag_high_chi2"] else ""), ""),
        ("(z_l, z_s)", f"({diag['z_lens']}, {diag['z_source']})", ""),
        ("source max/mean", f"{diag['source']['source_max']:.3g}/{diag['source']['source_mean']:.3g}", "normalised flux"),
    ]
    ref = diag.get("reference") or {}
    if ref.get("theta_e_arcsec") is not None:
        rows.append(("theta_E (lenstronomy reference)", f"{ref['theta_e_arcsec']:.3f} +- {ref['theta_e_err_arcsec']:.3f}",
                     "arcsec"))
    model_s, ref_s = _finite_or_none(diag.get("model_runtime_s")), reference_runtime_s(ref)
    device = f" ({diag['model_device']})" if diag.get("model_device") else ""
    rows += [(f"runtime, AstroRIM model step{device}", "--" if model_s is None else f"{model_s:.3g}", "s"),
             ("runtime, lenstronomy reference fit (wall)", "--" if ref_s is None else f"{ref_s:.3g}", "s")]
    if diag.get("illustrative_only"):
        rows.append(("status", "ILLUSTRATIVE ONLY (non-linear / uncalibrated input)", ""))
    return rows


def write_lens_table(diag: dict, out_prefix: str | Path) -> None:
    """``<out_prefix>.csv`` (quantity, value, unit) and a two-column LaTeX table ``<out_prefix>.tex``."""
    rows = lens_table_rows(diag)
    out_prefix = Path(out_prefix)
    frame = pd.DataFrame(rows, columns=["quantity", "value", "unit"])
    write_text_atomic(out_prefix.with_suffix(".csv"), frame.to_csv(index=False))
    lines = [rf"% {diag['name']}: AstroRIM inferred lens parameters and derived diagnostics",
             r"\begin{tabular}{lll}", r"\hline", r"Quantity & Value & Unit \\", r"\hline"]
    lines += [rf"{_tex_escape(q)} & {_tex_escape(v)} & {_tex_escape(u)} \\" for q, v, u in rows]
    lines += [r"\hline", r"\end{tabular}", ""]
    write_text_atomic(out_prefix.with_suffix(".tex"), "\n".join(lines))
