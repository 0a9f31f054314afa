"""Stratified summaries of per-example metrics: Table 2, the comparison with the paper, every method side by side.

Input everywhere is the long per-example DataFrame written by the pipeline (one row per
(method, example); columns ``method``, ``version`` and :data:`astrorim.evaluate.metrics.METRIC_COLUMNS`).

Statistics (per subset): N; SSIM mean +- std (std with ddof=1, the sample standard deviation);
median and the 10th / 90th percentiles (numpy's linear interpolation); the same for MSE; fractions
with SSIM >= 0.90, >= 0.95 and < 0.80; minimum SSIM; the scikit-image-default SSIM (what the
published code computed) and the published-protocol SSIM / MSE (see metrics.py) as extra columns.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from astrorim.io.atomic import write_text_atomic

# (row name, versions it pools, LaTeX label)
SUBSETS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("All", ("v1", "v2", "v3", "v4", "v5", "v6"), "All"),
    ("v1", ("v1",), "v1"),
    ("v2", ("v2",), "v2"),
    ("v3", ("v3",), "v3"),
    ("v4", ("v4",), "v4"),
    ("v5-6", ("v5", "v6"), "v5--6"),
    ("v5", ("v5",), "v5"),
    ("v6", ("v6",), "v6"),
)
SSIM_THRESHOLDS = (("frac_ssim_ge_090", ">=", 0.90), ("frac_ssim_ge_095", ">=", 0.95), ("frac_ssim_lt_080", "<", 0.80))
SUMMARY_COLUMNS = (
    "n", "ssim_mean", "ssim_std", "ssim_median", "ssim_p10", "ssim_p90",
    "mse_mean", "mse_std", "mse_median", "mse_p10", "mse_p90",
    "frac_ssim_ge_090", "frac_ssim_ge_095", "frac_ssim_lt_080", "ssim_min",
    "ssim_default_mean", "ssim_default_std", "ssim_default_median", "ssim_source_mean", "ssim_source_median",
    "ssim_published_mean", "ssim_published_median", "mse_published_mean", "mse_published_median",
)
# Statistics compared with the paper (table2_vs_paper).
PAPER_STATISTICS = ("n", "ssim_mean", "ssim_std", "ssim_median", "ssim_p10", "ssim_p90", "mse_mean", "mse_std",
                    "mse_median", "mse_p10", "mse_p90", "frac_ssim_ge_090", "frac_ssim_ge_095", "frac_ssim_lt_080",
                    "ssim_min")


def _stats(values: np.ndarray, prefix: str) -> dict[str, float]:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {f"{prefix}_{k}": math.nan for k in ("mean", "std", "median", "p10", "p90")}
    p10, p50, p90 = np.percentile(v, [10, 50, 90])
    return {f"{prefix}_mean": float(v.mean()), f"{prefix}_std": float(v.std(ddof=1)) if v.size > 1 else math.nan,
            f"{prefix}_median": float(p50), f"{prefix}_p10": float(p10), f"{prefix}_p90": float(p90)}


def summarise(frame: pd.DataFrame) -> dict[str, float]:
    """The statistics of one subset (all of SUMMARY_COLUMNS)."""
    missing = [c for c in ("ssim", "mse", "ssim_default") if c not in frame.columns]
    if missing:
        raise KeyError(f"per-example metrics lack columns {missing}")
    n = len(frame)
    out: dict[str, float] = {"n": n}
    out.update(_stats(frame["ssim"].to_numpy(), "ssim"))
    out.update(_stats(frame["mse"].to_numpy(), "mse"))
    ssim = frame["ssim"].to_numpy(dtype=float)
    for name, op, threshold in SSIM_THRESHOLDS:
        hit = ssim >= threshold if op == ">=" else ssim < threshold
        out[name] = float(hit.mean()) if n else math.nan
    out["ssim_min"] = float(ssim.min()) if n else math.nan
    d = _stats(frame["ssim_default"].to_numpy(), "ssim_default")
    out.update({k: d[k] for k in ("ssim_default_mean", "ssim_default_std", "ssim_default_median")})
    for col in ("ssim_source", "ssim_published", "mse_published"):
        s = _stats(frame[col].to_numpy() if col in frame else np.array([]), col)
        out[f"{col}_mean"], out[f"{col}_median"] = s[f"{col}_mean"], s[f"{col}_median"]
    return {k: out[k] for k in SUMMARY_COLUMNS}


def table2(per_example: pd.DataFrame, method: str | None = "astrorim",
           subsets: Sequence[tuple[str, tuple[str, ...], str]] = SUBSETS) -> pd.DataFrame:
    """Table 2 of one method (rows = subsets, columns = SUMMARY_COLUMNS; index named 'subset')."""
    frame = per_example
    if method is not None:
        if "method" not in frame.columns:
            raise KeyError("per-example metrics have no 'method' column")
        frame = frame[frame["method"] == method]
        if frame.empty:
            have = sorted(per_example["method"].unique())
            raise ValueError(f"no per-example metrics for method {method!r}; have {have}")
    rows = {}
    for name, versions, _ in subsets:
        rows[name] = summarise(frame[frame["version"].isin(versions)])
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "subset"
    return out


def methods_table(per_example: pd.DataFrame, timing: dict[str, float] | None = None,
                  cpu_timing: dict[str, float] | None = None,
                  subsets: Sequence[tuple[str, tuple[str, ...], str]] = SUBSETS) -> pd.DataFrame:
    """Every method on every subset (long: one row per (method, subset)), plus wall and CPU seconds per lens."""
    parts = []
    for method in per_example["method"].drop_duplicates():
        t = table2(per_example, method, subsets).reset_index()
        t.insert(0, "method", method)
        t["seconds_per_lens"] = (timing or {}).get(method, math.nan)
        t["cpu_seconds_per_lens"] = (cpu_timing or {}).get(method, math.nan)
        parts.append(t)
    return pd.concat(parts, ignore_index=True)


# --------------------------------------------------------------------------------------------- paper
def load_paper_table(path: str | os.PathLike) -> pd.DataFrame:
    """The paper's Table 2 as transcribed in resources/paper_table2.csv (index 'subset')."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: paper Table 2 transcription not found")
    frame = pd.read_csv(path, comment="#")
    missing = [c for c in ("subset",) + PAPER_STATISTICS if c not in frame.columns]
    if missing:
        raise KeyError(f"{path}: columns {missing} are missing")
    return frame.set_index("subset")


def compare_with_paper(ours: pd.DataFrame, paper: pd.DataFrame,
                       ours_published: pd.DataFrame | None = None) -> pd.DataFrame:
    """Long table: subset, statistic, paper, ours, ours - paper (and the published-protocol numbers).

    Only the subsets and statistics the paper reports appear.  ``ours_published`` is the same
    statistics computed with the published code's protocol (default SSIM on max(observed, truth)
    normalised, clipped reconstructions); its columns are ``ours_published_protocol`` and its difference.
    """
    rows = []
    for subset in paper.index:
        if subset not in ours.index:
            continue
        for stat in PAPER_STATISTICS:
            p = paper.at[subset, stat]
            if pd.isna(p):
                continue
            o = ours.at[subset, stat]
            row = {"subset": subset, "statistic": stat, "paper": float(p), "ours": float(o),
                   "difference": float(o) - float(p)}
            if ours_published is not None:
                op = ours_published.at[subset, stat]
                row["ours_published_protocol"] = float(op)
                row["difference_published_protocol"] = float(op) - float(p)
            rows.append(row)
    return pd.DataFrame(rows)


def published_protocol_view(per_example: pd.DataFrame, method: str = "astrorim") -> pd.DataFrame:
    """Table 2 recomputed with the published protocol's SSIM and MSE in place of ours."""
    frame = per_example[per_example["method"] == method].copy()
    frame["ssim"] = frame["ssim_published"]
    frame["mse"] = frame["mse_published"]
    return table2(frame, method=None)


# --------------------------------------------------------------------------------------------- LaTeX
def latex_sci(x: float, digits: int = 2) -> str:
    """3.7e-4 -> '$3.70 \\times 10^{-4}$'; NaN -> '--'."""
    if x is None or not np.isfinite(x):
        return "--"
    if x == 0:
        return "$0$"
    exponent = int(math.floor(math.log10(abs(x))))
    mantissa = x / 10 ** exponent
    if round(mantissa, digits) >= 10:
        mantissa, exponent = mantissa / 10, exponent + 1
    return f"${mantissa:.{digits}f} \\times 10^{{{exponent}}}$"


def latex_fixed(x: float, digits: int = 3) -> str:
    return "--" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def latex_pct(x: float) -> str:
    return "--" if x is None or not np.isfinite(x) else f"{100 * x:.1f}\\%"


def _sci_plain(x: float) -> str:
    return latex_sci(x).strip("$") if np.isfinite(x) else "--"


def table2_latex(table: pd.DataFrame, caption: str, label: str = "tab:table2") -> str:
    """LaTeX tabular of Table 2 (booktabs)."""
    latex_names = {name: tex for name, _, tex in SUBSETS}
    lines = [
        "% Generated by astrorim.evaluate.tables.table2_latex -- do not edit by hand.",
        "\\begin{table*}", "\\centering", f"\\caption{{{caption}}}", f"\\label{{{label}}}",
        "\\begin{tabular}{lrllllrrrl}", "\\toprule",
        "Subset & $N$ & SSIM (mean $\\pm$ std) & SSIM (median [P10, P90]) & MSE (mean $\\pm$ std) & "
        "MSE (median [P10, P90]) & $\\geq 0.90$ & $\\geq 0.95$ & $< 0.80$ & SSIM$_{\\rm skimage\\,default}$ \\\\",
        "\\midrule",
    ]
    for subset, r in table.iterrows():
        if r["n"] == 0:
            lines.append(f"{latex_names.get(subset, subset)} & 0 & -- & -- & -- & -- & -- & -- & -- & -- \\\\")
            continue
        lines.append(
            f"{latex_names.get(subset, subset)} & {int(r['n'])} & "
            f"${latex_fixed(r['ssim_mean'])} \\pm {latex_fixed(r['ssim_std'])}$ & "
            f"${latex_fixed(r['ssim_median'])}\\ [{latex_fixed(r['ssim_p10'])}, {latex_fixed(r['ssim_p90'])}]$ & "
            f"${_sci_plain(r['mse_mean'])} \\pm {_sci_plain(r['mse_std'])}$ & "
            f"${_sci_plain(r['mse_median'])}\\ [{_sci_plain(r['mse_p10'])}, {_sci_plain(r['mse_p90'])}]$ & "
            f"{latex_pct(r['frac_ssim_ge_090'])} & {latex_pct(r['frac_ssim_ge_095'])} & "
            f"{latex_pct(r['frac_ssim_lt_080'])} & "
            f"${latex_fixed(r['ssim_default_mean'])} \\pm {latex_fixed(r['ssim_default_std'])}$ \\\\")
        if subset == "v4":
            lines.append("\\midrule")
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table*}", ""]
    return "\n".join(lines)


def comparison_latex(comparison: pd.DataFrame, caption: str, label: str = "tab:table2_vs_paper") -> str:
    """LaTeX of the paper comparison: one row per subset, ours / paper (difference) for key statistics."""
    stats = (("ssim_mean", "SSIM mean", "fixed"), ("ssim_median", "SSIM median", "fixed"),
             ("mse_mean", "MSE mean", "sci"), ("mse_median", "MSE median", "sci"))
    latex_names = {name: tex for name, _, tex in SUBSETS}
    fmt = {"fixed": lambda v: latex_fixed(v), "sci": lambda v: latex_sci(v)}
    has_pub = "ours_published_protocol" in comparison.columns
    header = " & ".join(f"{title} ours / paper ($\\Delta$)" for _, title, _ in stats)
    lines = ["% Generated by astrorim.evaluate.tables.comparison_latex -- do not edit by hand.",
             "\\begin{table*}", "\\centering", f"\\caption{{{caption}}}", f"\\label{{{label}}}",
             "\\begin{tabular}{l" + "l" * len(stats) + ("l" if has_pub else "") + "}", "\\toprule",
             f"Subset & {header}" + (" & SSIM mean, published protocol" if has_pub else "") + " \\\\", "\\midrule"]
    for subset, group in comparison.groupby("subset", sort=False):
        g = group.set_index("statistic")
        cells = []
        for stat, _, kind in stats:
            if stat not in g.index:
                cells.append("--")
                continue
            o, p, d = g.at[stat, "ours"], g.at[stat, "paper"], g.at[stat, "difference"]
            sign = "+" if d >= 0 else "-"
            diff = fmt[kind](abs(d))
            cells.append(f"{fmt[kind](o)} / {fmt[kind](p)} (${sign}${diff})")
        if has_pub:
            cells.append(latex_fixed(g.at["ssim_mean", "ours_published_protocol"]) if "ssim_mean" in g.index else "--")
        lines.append(f"{latex_names.get(subset, subset)} & " + " & ".join(cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table*}", ""]
    return "\n".join(lines)


def methods_latex(methods: pd.DataFrame, labels: dict[str, str], caption: str,
                  label: str = "tab:methods",
                  subsets: Iterable[str] = ("All", "v1", "v2", "v3", "v4", "v5-6")) -> str:
    """Compact LaTeX of all methods: 'SSIM mean / MSE median' per subset, wall / CPU seconds per lens."""
    subsets = list(subsets)
    latex_names = {name: tex for name, _, tex in SUBSETS}
    lines = ["% Generated by astrorim.evaluate.tables.methods_latex -- do not edit by hand.",
             "\\begin{table*}", "\\centering", f"\\caption{{{caption}}}", f"\\label{{{label}}}",
             "\\begin{tabular}{l" + "l" * len(subsets) + "r}", "\\toprule",
             "Method & " + " & ".join(f"{latex_names.get(s, s)}" for s in subsets) + " & s / lens (wall / CPU) \\\\",
             "\\midrule"]
    for method, group in methods.groupby("method", sort=False):
        g = group.set_index("subset")
        cells = []
        for s in subsets:
            if s not in g.index or g.at[s, "n"] == 0:
                cells.append("--")
            else:
                cells.append(f"{latex_fixed(g.at[s, 'ssim_mean'])} / {latex_sci(g.at[s, 'mse_median'])}")
        secs = [g[c].iloc[0] if c in g else math.nan for c in ("seconds_per_lens", "cpu_seconds_per_lens")]
        secs_cell = " / ".join(f"{v:.3g}" if np.isfinite(v) else "--" for v in secs)
        lines.append(f"{labels.get(method, method)} & " + " & ".join(cells) + f" & {secs_cell} \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table*}", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- output
def _clean(value):
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if not np.isfinite(value) else float(value)
    return value


def write_csv(frame: pd.DataFrame, path: str | os.PathLike, index: bool = True) -> None:
    """CSV written atomically, floats with full precision."""
    write_text_atomic(path, frame.to_csv(index=index, float_format="%.8g", lineterminator="\n"))


def write_json(data: dict, path: str | os.PathLike) -> None:
    """JSON (NaN -> null, sorted keys) written atomically."""
    write_text_atomic(path, json.dumps(_clean(data), indent=2, sort_keys=True) + "\n")


def metrics_json(tables: dict[str, pd.DataFrame], timing: dict[str, float], extra: dict | None = None) -> dict:
    """DVC metrics: {method: {subset: {statistic: value}}} plus seconds per lens per method."""
    keep = ("n", "ssim_mean", "ssim_std", "ssim_median", "ssim_p10", "ssim_p90", "mse_mean", "mse_median",
            "frac_ssim_ge_090", "frac_ssim_ge_095", "frac_ssim_lt_080", "ssim_default_mean", "ssim_source_mean",
            "ssim_published_mean", "mse_published_mean")
    out: dict = {}
    for method, table in tables.items():
        out[method] = {subset: {k: row[k] for k in keep} for subset, row in table.iterrows()}
    out["seconds_per_lens"] = dict(timing)
    if extra:
        out.update(extra)
    return _clean(out)
