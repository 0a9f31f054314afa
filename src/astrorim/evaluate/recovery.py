"""Lens-parameter recovery: the encoder's nine parameters and theta_E against the simulator truth.

Per example and parameter the error is predicted - true, except for the two position angles:
phi (SIE major axis) and gamma_phi (shear) are axial angles, periodic with period pi
(lenstronomy's e1, e2 and gamma1, gamma2 depend on 2 phi), so their error is wrapped into
[-pi/2, pi/2).  theta_E [arcsec] = b x half field of view = b x npix / 2 x pixel_scale of each
example (``astrorim.params.theta_e_arcsec_from_b``), for the prediction and the truth alike.
r_s is scored only where the truth has a halo (norm_kappa_s > 0 and finite norm_r_s);
kappa_s is scored everywhere (its truth is 0 without a halo).  Note that phi is ill-defined for a
nearly round lens (q -> 1) and gamma_phi for a vanishing shear, so their errors there are noise.

Summary per subset: n, median absolute error, bias (mean signed error), median signed error, and
for the positive length scales (b, theta_E, r_s) the median absolute relative error |d| / true.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from astrorim.params import PARAMETER_NAMES, theta_e_arcsec_from_b

RECOVERED = PARAMETER_NAMES + ("theta_E",)
PERIODIC = {"phi": math.pi, "gamma_phi": math.pi}
RELATIVE = ("b", "theta_E", "r_s")
UNITS = {"b": "half FoV", "x0": "half FoV", "y0": "half FoV", "r_s": "half FoV", "phi": "rad",
         "gamma_phi": "rad", "theta_E": "arcsec", "q": "", "gamma": "", "kappa_s": ""}


def wrap_periodic(delta, period: float) -> np.ndarray:
    """delta wrapped into [-period/2, period/2)."""
    delta = np.asarray(delta, dtype=float)
    return (delta + 0.5 * period) % period - 0.5 * period


def has_halo(frame: pd.DataFrame) -> np.ndarray:
    ks = frame["true_kappa_s"].to_numpy(float)
    rs = frame["true_r_s"].to_numpy(float)
    return (ks > 0) & np.isfinite(rs) & (rs > 0)


def parameter_frame(truth: pd.DataFrame, predicted: dict[str, np.ndarray], npix: int) -> pd.DataFrame:
    """true_<p>, pred_<p>, err_<p> for the nine parameters and theta_E, one row per example.

    ``truth``: the shards' truth rows (columns norm_<p> and pixel_scale); ``predicted``: the encoder's
    nine (n,) arrays in the same normalised units.
    """
    missing = [c for c in [f"norm_{p}" for p in PARAMETER_NAMES] + ["pixel_scale"] if c not in truth.columns]
    if missing:
        raise KeyError(f"truth table lacks columns {missing}")
    n = len(truth)
    out = {}
    pixel_scale = truth["pixel_scale"].to_numpy(float)
    for p in PARAMETER_NAMES:
        if p not in predicted:
            raise KeyError(f"predicted parameters lack {p!r}")
        pred = np.asarray(predicted[p], dtype=float).reshape(-1)
        if pred.shape[0] != n:
            raise ValueError(f"predicted {p!r} has {pred.shape[0]} values for {n} examples")
        out[f"true_{p}"] = truth[f"norm_{p}"].to_numpy(float)
        out[f"pred_{p}"] = pred
    out["true_theta_E"] = theta_e_arcsec_from_b(out["true_b"], npix, pixel_scale)
    out["pred_theta_E"] = theta_e_arcsec_from_b(out["pred_b"], npix, pixel_scale)
    frame = pd.DataFrame(out, index=truth.index)
    for p in RECOVERED:
        d = frame[f"pred_{p}"] - frame[f"true_{p}"]
        frame[f"err_{p}"] = wrap_periodic(d, PERIODIC[p]) if p in PERIODIC else d
    frame.loc[~has_halo(frame), "err_r_s"] = np.nan
    return frame


def summarise_recovery(frame: pd.DataFrame, versions_col: str = "version",
                       subsets: Sequence[tuple[str, tuple[str, ...]]] | None = None) -> pd.DataFrame:
    """Long table: subset, parameter, unit, n, median_abs_error, bias, median_error, median_abs_rel_error."""
    from astrorim.evaluate.tables import SUBSETS

    subsets = subsets or [(name, versions) for name, versions, _ in SUBSETS]
    rows = []
    for name, versions in subsets:
        sub = frame[frame[versions_col].isin(versions)]
        for p in RECOVERED:
            err = sub[f"err_{p}"].to_numpy(float)
            ok = np.isfinite(err)
            e = err[ok]
            row = {"subset": name, "parameter": p, "unit": UNITS[p], "n": int(ok.sum()),
                   "median_abs_error": float(np.median(np.abs(e))) if e.size else math.nan,
                   "bias": float(e.mean()) if e.size else math.nan,
                   "median_error": float(np.median(e)) if e.size else math.nan,
                   "median_abs_rel_error": math.nan}
            if p in RELATIVE and e.size:
                true = sub[f"true_{p}"].to_numpy(float)[ok]
                row["median_abs_rel_error"] = float(np.median(np.abs(e) / np.abs(true)))
            rows.append(row)
    return pd.DataFrame(rows)


def recovery_latex(summary: pd.DataFrame, caption: str, label: str = "tab:parameter_recovery",
                   subsets: Sequence[str] = ("All", "v1", "v2", "v3", "v4", "v5", "v6")) -> str:
    """LaTeX: one row per parameter, 'median |error| (bias)' per subset."""
    from astrorim.evaluate.tables import SUBSETS

    latex_names = {name: tex for name, _, tex in SUBSETS}
    subsets = [s for s in subsets if s in set(summary["subset"])]
    tex_param = {"b": "$b$", "q": "$q$", "phi": "$\\phi$", "x0": "$x_0$", "y0": "$y_0$", "gamma": "$\\gamma$",
                 "gamma_phi": "$\\gamma_\\phi$", "kappa_s": "$\\kappa_s$", "r_s": "$r_s$",
                 "theta_E": "$\\theta_E$ [arcsec]"}
    lines = ["% Generated by astrorim.evaluate.recovery.recovery_latex -- do not edit by hand.",
             "\\begin{table*}", "\\centering", f"\\caption{{{caption}}}", f"\\label{{{label}}}",
             "\\begin{tabular}{l" + "l" * len(subsets) + "}", "\\toprule",
             "Parameter & " + " & ".join(latex_names.get(s, s) for s in subsets) + " \\\\", "\\midrule"]
    s = summary.set_index(["parameter", "subset"])
    for p in RECOVERED:
        cells = []
        for sub in subsets:
            r = s.loc[(p, sub)]
            cells.append("--" if r["n"] == 0 else f"{r['median_abs_error']:.3g} (${r['bias']:+.2g}$)")
        lines.append(f"{tex_param[p]} & " + " & ".join(cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table*}", ""]
    return "\n".join(lines)
