""""AstroRIM" beside "AstroRIM + fit" on the fitted test examples (rule evaluate_fit): tables, calibration, figures.

Input: the per-shard rows of :mod:`astrorim.evaluate.fit_rows` (two rows per example, ``method`` astrorim /
astrorim_fit).  Every statistic is computed on the same examples for both methods, so the columns compare.

Calibration: for a Laplace (Gaussian) 1-sigma error s and a true error d, the central interval at nominal level
p is |d| <= z_p s with z_p = Phi^-1((1 + p) / 2); the coverage is the fraction of examples with finite s > 0
inside it (``n`` counts them).  Well-calibrated errors give coverage = p at every level.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from astrorim.evaluate import recovery, tables
from astrorim.evaluate.fit_rows import CALIBRATED, COMPONENTS, METHOD_LABELS, METHODS

CALIBRATION_LEVELS = tuple(sorted(set(np.round(np.linspace(0.05, 0.95, 19), 2).tolist()) | {0.68, 0.99}))
FLAGS = ("ok", "not_converged", "hit_bound", "no_uncertainty", "failed")
TEX_PARAMETER = {"theta_E": "$\\theta_E$", "e1": "$e_1$", "e2": "$e_2$", "gamma1": "$\\gamma_1$",
                 "gamma2": "$\\gamma_2$"}


def load_rows(paths: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """The per-shard CSVs stacked; every example must have one row of each method."""
    if not paths:
        raise ValueError("no fit rows given")
    frame = pd.concat([pd.read_csv(p, keep_default_na=True) for p in paths], ignore_index=True)
    for col in ("method", "version", "index", "flag"):
        if col not in frame.columns:
            raise KeyError(f"fit rows lack column {col!r} ({paths[0]} ...)")
    frame["flag"] = frame["flag"].fillna("").astype(str)
    counts = frame.groupby(["version", "index"])["method"].apply(lambda m: tuple(sorted(m)))
    bad = counts[counts != tuple(sorted(METHODS))]
    if len(bad):
        v, i = bad.index[0]
        raise ValueError(f"fit rows: example {v}#{i} has methods {bad.iloc[0]}, expected one row each of {METHODS}")
    return frame.sort_values(["method", "version", "index"], ignore_index=True)


def coverage(error, sigma, level: float) -> tuple[float, int]:
    """(fraction of |error| <= z sigma, number of examples with finite sigma > 0) at nominal ``level``."""
    from scipy.stats import norm

    error = np.asarray(error, dtype=float)
    sigma = np.asarray(sigma, dtype=float)
    ok = np.isfinite(error) & np.isfinite(sigma) & (sigma > 0)
    if not ok.any():
        return math.nan, 0
    z = norm.ppf(0.5 + level / 2.0)
    return float(np.mean(np.abs(error[ok]) <= z * sigma[ok])), int(ok.sum())


def component_error(rows: pd.DataFrame, name: str) -> np.ndarray:
    """pred - true of theta_E [arcsec] or a lenstronomy component."""
    if name == "theta_E":
        return rows["err_theta_E"].to_numpy(float)
    return rows[f"pred_{name}"].to_numpy(float) - rows[f"true_{name}"].to_numpy(float)


def calibration_table(rows: pd.DataFrame, levels: Sequence[float] = CALIBRATION_LEVELS) -> pd.DataFrame:
    """Long: subset, parameter, nominal, coverage, n (the fit's rows only)."""
    fit = rows[rows["method"] == "astrorim_fit"]
    out = []
    for subset, versions, _ in tables.SUBSETS:
        sub = fit[fit["version"].isin(versions)]
        for name in CALIBRATED:
            err, sig = component_error(sub, name), sub[f"sigma_{name}"].to_numpy(float)
            for level in levels:
                cov, n = coverage(err, sig, level)
                out.append({"subset": subset, "parameter": name, "nominal": float(level), "coverage": cov, "n": n})
    return pd.DataFrame(out)


def _median(values) -> float:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return float(np.median(v)) if v.size else math.nan


def summary_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (subset, method): theta_E accuracy, component errors, chi2/pixel, 68/95 % coverage, flags, seconds."""
    out = []
    for subset, versions, _ in tables.SUBSETS:
        for method in METHODS:
            sub = rows[(rows["method"] == method) & rows["version"].isin(versions)]
            rel = np.abs(sub["err_theta_E"].to_numpy(float) / sub["true_theta_E"].to_numpy(float))
            row = {"subset": subset, "method": method, "n": int(len(sub)),
                   "theta_e_median_abs_rel_error": _median(rel),
                   "theta_e_fraction_within_5pct": float(np.mean(rel <= 0.05)) if len(sub) else math.nan,
                   "theta_e_median_rel_error": _median(sub["err_theta_E"] / sub["true_theta_E"])}
            for name in COMPONENTS:
                row[f"{name}_median_abs_error"] = _median(np.abs(component_error(sub, name)))
            row["median_chi2_per_pixel"] = _median(sub["chi2_per_pixel"])
            for name in CALIBRATED:
                for level in (0.68, 0.95):
                    row[f"coverage{int(round(100 * level))}_{name}"] = coverage(
                        component_error(sub, name), sub[f"sigma_{name}"], level)[0]
            flags = sub["flag"].astype(str)
            for flag in FLAGS:
                row[f"n_{flag}"] = int((flags == flag).sum()) if method == "astrorim_fit" else 0
            row["seconds_per_lens_median"] = _median(sub["seconds"]) if method == "astrorim_fit" else math.nan
            out.append(row)
    return pd.DataFrame(out)


def table2_side_by_side(rows: pd.DataFrame) -> pd.DataFrame:
    """Table 2 (source reconstruction metrics) of both methods on the fitted examples, long: method, subset, ..."""
    parts = []
    for method in METHODS:
        t = tables.table2(rows, method).reset_index()
        t.insert(0, "method", method)
        parts.append(t)
    return pd.concat(parts, ignore_index=True)


def paper_comparison(rows: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """The paper-comparison table of both methods (tables.compare_with_paper), long with a method column."""
    parts = []
    for method in METHODS:
        ours = tables.table2(rows, method)
        cmp = tables.compare_with_paper(ours, paper, tables.published_protocol_view(rows, method))
        cmp.insert(0, "method", method)
        parts.append(cmp)
    return pd.concat(parts, ignore_index=True)


def recovery_side_by_side(rows: pd.DataFrame) -> pd.DataFrame:
    """Parameter recovery (recovery.summarise_recovery) of both methods, long with a method column."""
    parts = []
    for method in METHODS:
        rec = recovery.summarise_recovery(rows[rows["method"] == method])
        rec.insert(0, "method", method)
        parts.append(rec)
    return pd.concat(parts, ignore_index=True)


# --------------------------------------------------------------------------------------------- LaTeX
def summary_latex(summary: pd.DataFrame, caption: str, label: str = "tab:fit_summary") -> str:
    """One row per subset: theta_E error and within-5 % (network -> fit), e / gamma errors, chi2, coverage."""
    names = {name: tex for name, _, tex in tables.SUBSETS}
    lines = ["% Generated by astrorim.evaluate.fit_report.summary_latex -- do not edit by hand.",
             "\\begin{table*}", "\\centering", f"\\caption{{{caption}}}", f"\\label{{{label}}}",
             "\\begin{tabular}{lrllllrll}", "\\toprule",
             "Subset & $N$ & $|\\Delta\\theta_E|/\\theta_E$ & within 5\\% & $|\\Delta e_{1,2}|$ & "
             "$|\\Delta\\gamma_{1,2}|$ & $\\chi^2$/pix & cov.$_{68/95}$ $\\theta_E$ & cov.$_{68/95}$ $e_1$ \\\\",
             "\\midrule"]
    s = summary.set_index(["subset", "method"])
    for subset in summary["subset"].drop_duplicates():
        a, f = s.loc[(subset, "astrorim")], s.loc[(subset, "astrorim_fit")]
        if f["n"] == 0:
            continue

        def pair(col, fmt):
            return f"{fmt(a[col])} $\\to$ {fmt(f[col])}"

        pct, fix = tables.latex_pct, (lambda v: tables.latex_fixed(v, 3))
        lines.append(
            f"{names.get(subset, subset)} & {int(f['n'])} & {pair('theta_e_median_abs_rel_error', pct)} & "
            f"{pair('theta_e_fraction_within_5pct', pct)} & "
            f"{fix(a['e1_median_abs_error'])}/{fix(a['e2_median_abs_error'])} $\\to$ "
            f"{fix(f['e1_median_abs_error'])}/{fix(f['e2_median_abs_error'])} & "
            f"{fix(a['gamma1_median_abs_error'])}/{fix(a['gamma2_median_abs_error'])} $\\to$ "
            f"{fix(f['gamma1_median_abs_error'])}/{fix(f['gamma2_median_abs_error'])} & "
            f"{tables.latex_fixed(f['median_chi2_per_pixel'], 2)} & "
            f"{pct(f['coverage68_theta_E'])}/{pct(f['coverage95_theta_E'])} & "
            f"{pct(f['coverage68_e1'])}/{pct(f['coverage95_e1'])} \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table*}", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- figures
def recovery_figure(rows: pd.DataFrame, path: str | os.PathLike) -> list[Path]:
    """Before / after: predicted vs true theta_E, e1, e2, gamma1, gamma2; top row the network, bottom the fit."""
    from astrorim.evaluate.figures import VERSIONS, _save, plt

    fig, axes = plt.subplots(2, len(CALIBRATED), figsize=(3.2 * len(CALIBRATED), 6.4), squeeze=False)
    colours = dict(zip(VERSIONS, plt.get_cmap("tab10").colors))
    for r, method in enumerate(METHODS):
        sub = rows[rows["method"] == method]
        for c, name in enumerate(CALIBRATED):
            ax = axes[r, c]
            true = sub[f"true_{name}"].to_numpy(float)
            pred = sub[f"pred_{name}"].to_numpy(float)
            for v in VERSIONS:
                m = (sub["version"] == v).to_numpy() & np.isfinite(pred)
                if m.any():
                    ax.scatter(true[m], pred[m], s=7, alpha=0.75, color=colours[v], label=v, linewidths=0)
            both = rows[f"true_{name}"].to_numpy(float)
            lo, hi = np.nanmin(both), np.nanmax(both)
            pad = 0.1 * (hi - lo if hi > lo else 1.0)
            ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k--", lw=0.8)
            ax.set_xlim(lo - pad, hi + pad)
            ax.set_ylim(lo - pad, hi + pad)   # same limits for both rows: outliers fall off the panel
            err = np.abs(component_error(sub, name))
            if name == "theta_E":
                rel = f"median |Δ|/θE = {100 * _median(err / np.abs(true)):.1f} %"
            else:
                rel = f"median |Δ| = {_median(err):.3f}"
            ax.set_title(f"{METHOD_LABELS[method]}: {name}\n{rel}", fontsize=8)
            ax.set_xlabel("true" + (" [arcsec]" if name == "theta_E" else ""), fontsize=8)
            ax.set_ylabel("estimated", fontsize=8)
            ax.tick_params(labelsize=7)
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=6, fontsize=8, frameon=False, bbox_to_anchor=(0.5, -0.03),
               markerscale=2)
    n = int((rows["method"] == "astrorim_fit").sum())
    fig.suptitle(f"Lens parameters before (network) and after the exact fit, {n} test lenses", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def calibration_figure(calibration: pd.DataFrame, path: str | os.PathLike, subset: str = "All") -> list[Path]:
    """Empirical coverage of the fit's Laplace intervals against nominal, one line per parameter."""
    from astrorim.evaluate.figures import _save, plt

    cal = calibration[calibration["subset"] == subset]
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    ax.plot([0, 1], [0, 1], color="0.5", lw=1, ls="--", label="nominal")
    for name in CALIBRATED:
        c = cal[cal["parameter"] == name]
        n = int(c["n"].max()) if len(c) else 0
        ax.plot(c["nominal"], c["coverage"], marker="o", ms=3, label=f"{name} (n = {n})")
    for level in (0.68, 0.95):
        ax.axvline(level, color="0.8", lw=0.8, zorder=0)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("nominal coverage (Gaussian Laplace interval)")
    ax.set_ylabel("empirical coverage")
    ax.set_title(f"AstroRIM + fit: calibration ({subset})", fontsize=9)
    ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def metrics_json(summary: pd.DataFrame, t2: pd.DataFrame, calibration: pd.DataFrame, rows: pd.DataFrame) -> dict:
    """{method: {subset: {...}}} of the summary and Table 2 key statistics, plus 68/95 % coverage per subset."""
    out: dict = {"n_examples": int((rows["method"] == "astrorim_fit").sum())}
    keep2 = ("ssim_mean", "ssim_median", "mse_median", "ssim_source_mean")
    for method in METHODS:
        block = {}
        for r in summary[summary["method"] == method].to_dict("records"):
            block[r["subset"]] = {k: v for k, v in r.items() if k not in ("subset", "method")}
        for r in t2[t2["method"] == method].to_dict("records"):
            block.setdefault(r["subset"], {}).update({k: r[k] for k in keep2})
        out[method] = block
    out["coverage"] = {f"{r.subset}.{r.parameter}.{int(round(100 * r.nominal))}": r.coverage
                       for r in calibration.itertuples() if round(r.nominal, 2) in (0.68, 0.95)}
    return out


def write_report(rows: pd.DataFrame, out: dict[str, str | os.PathLike], paper_table: str | os.PathLike | None
                 ) -> list[Path]:
    """Every output of the evaluate_fit rule; ``out`` maps the rule's output names to paths."""
    from astrorim.io.atomic import write_text_atomic

    written: list[Path] = []

    def csv(frame, key):
        tables.write_csv(frame, out[key], index=False)
        written.append(Path(out[key]))

    def text(content, key):
        write_text_atomic(out[key], content)
        written.append(Path(out[key]))

    csv(rows, "per_example")
    t2 = table2_side_by_side(rows)
    csv(t2, "table2")
    n = int((rows["method"] == "astrorim_fit").sum())
    text("\n".join(tables.table2_latex(
        t2[t2["method"] == m].set_index("subset").drop(columns="method"),
        f"{METHOD_LABELS[m]}: reconstruction metrics on the {n} fitted test examples (the same examples for "
        f"both tables; the fit's source interpolated onto the truth's grid).", label=f"tab:table2_{m}")
        for m in METHODS), "table2_tex")
    if paper_table is not None:
        csv(paper_comparison(rows, tables.load_paper_table(paper_table)), "vs_paper")
    rec = recovery_side_by_side(rows)
    csv(rec, "recovery")
    text("\n".join(recovery.recovery_latex(
        rec[rec["method"] == m].drop(columns="method"),
        f"{METHOD_LABELS[m]}: parameter recovery on the {n} fitted test examples, median absolute error (bias).",
        label=f"tab:parameter_recovery_{m}") for m in METHODS), "recovery_tex")
    summary = summary_table(rows)
    csv(summary, "summary")
    text(summary_latex(summary, f"Network estimate $\\to$ exact fit on the {n} fitted test examples: median "
                                "errors, fraction of $\\theta_E$ within 5\\%, the fit's median $\\chi^2$ per "
                                "pixel and the coverage of its 68\\%/95\\% Laplace intervals."), "summary_tex")
    cal = calibration_table(rows)
    csv(cal, "calibration")
    written += recovery_figure(rows, out["recovery_figure"])
    written += calibration_figure(cal, out["calibration_figure"])
    tables.write_json(metrics_json(summary, t2, cal, rows), out["metrics"])
    written.append(Path(out["metrics"]))
    return written
