"""A handful of headline numbers per stage of a run, for ``dvc metrics show`` (flat JSON, short keys).

The stages' own metrics files hold hundreds of numbers (``evaluate.json`` has ~700 once flattened); these are
the few a reader compares across runs and commits. Each function reads one stage output and returns a flat
dict of plain floats/ints; :func:`write_headline` writes it atomically.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pandas as pd

from astrorim.io.atomic import write_text_atomic

KINDS = ("evaluation", "fit", "real_lenses", "vae", "comparison")


def _number(value) -> float | None:
    """A JSON-friendly float: None for NaN or missing."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _count(value) -> int | None:
    number = _number(value)
    return None if number is None else int(number)


def evaluation_headline(metrics: dict) -> dict:
    """From ``<results>/metrics/evaluate.json``: AstroRIM over the whole test set, the best classical method
    (Tikhonov with the true lens) and the paper's mean SSIM (Table 2)."""
    ours = metrics["astrorim"]["All"]
    tikhonov = metrics.get("tikhonov_true", {}).get("All", {})
    paper = metrics.get("paper_comparison", {}).get("All.ssim_mean", {})
    return {
        "n_test": _count(ours["n"]),
        "ssim_mean": _number(ours["ssim_mean"]),
        "ssim_median": _number(ours["ssim_median"]),
        "mse_median": _number(ours["mse_median"]),
        "tikhonov_true_ssim_mean": _number(tikhonov.get("ssim_mean")),
        "paper_ssim_mean": _number(paper.get("paper")),
    }


def fit_headline(metrics: dict) -> dict:
    """From ``<results>/metrics/fit.json`` (rule evaluate_fit): on the fitted test lenses, the theta_E median
    relative error of the exact fit and of the network it starts from, the fit's fraction within 5 %, its median
    chi2/pixel and the coverage of its 68 % / 95 % theta_E intervals."""
    fit = metrics["astrorim_fit"]["All"]
    network = metrics["astrorim"]["All"]
    return {
        "n_fitted": _count(fit["n"]),
        "fit_theta_e_rel_err_median": _number(fit["theta_e_median_abs_rel_error"]),
        "network_theta_e_rel_err_median": _number(network["theta_e_median_abs_rel_error"]),
        "fit_theta_e_within_5pct": _number(fit["theta_e_fraction_within_5pct"]),
        "fit_chi2_per_pixel_median": _number(fit["median_chi2_per_pixel"]),
        "fit_theta_e_coverage_68": _number(fit["coverage68_theta_E"]),
        "fit_theta_e_coverage_95": _number(fit["coverage95_theta_E"]),
    }


def real_lenses_headline(table1: pd.DataFrame) -> dict:
    """From ``<results>/tables/table1.csv``: lenses with both the model and the reference fit, the median
    absolute % difference of their Einstein radii, the median reduced chi2 of the model and how many lenses
    carry the high-chi2 flag."""
    rows = table1[pd.to_numeric(table1.get("abs_pct_diff_theta_e"), errors="coerce").notna()
                  & pd.to_numeric(table1.get("theta_e_model_arcsec"), errors="coerce").notna()]
    diff = pd.to_numeric(rows["abs_pct_diff_theta_e"])
    flags = rows["flag_high_chi2"].astype(str).str.lower().isin(["true", "1"]) if "flag_high_chi2" in rows else []
    chi2 = pd.to_numeric(rows.get("chi2_dof_model"), errors="coerce") if "chi2_dof_model" in rows else None
    return {
        "n_lenses": len(rows),
        "theta_e_abs_pct_diff_median": _number(diff.median()) if len(rows) else None,
        "chi2_dof_median": _number(chi2.median()) if chi2 is not None and len(rows) else None,
        "n_flag_high_chi2": int(sum(flags)),
    }


def vae_headline(training: dict) -> dict:
    """From the baseline's ``vae/training.json``: test ELBO, reconstruction rms, epochs trained."""
    history = training.get("history", {})
    epochs = next((len(v) for v in history.values() if isinstance(v, list)), None)
    return {
        "vae_test_elbo": _number(training.get("test_elbo")),
        "vae_reconstruction_rms": _number(training.get("reconstruction_rms")),
        "vae_epochs": epochs,
    }


def comparison_headline(summary: pd.DataFrame) -> dict:
    """From the baseline's ``comparison_summary.csv``: on the held-out test examples, each method's median
    source SSIM, median relative theta_E error and median wall time per example."""
    out = {}
    test = summary[summary["set"] == "test"] if "set" in summary else summary
    for _, row in test.iterrows():
        method = row["method"]
        out[f"{method}_source_ssim_median"] = _number(row.get("median_source_ssim"))
        out[f"{method}_theta_e_rel_err_median"] = _number(row.get("median_rel_err_theta_E"))
        out[f"{method}_seconds_median"] = _number(row.get("median_wall_s"))
    if len(test):
        out["n_test"] = _count(test["n"].max())
    return out


def headline(kind: str, path: str | os.PathLike) -> dict:
    """The headline of one stage output: kind is one of KINDS, path the file it reads."""
    path = Path(path)
    if kind == "evaluation":
        return evaluation_headline(json.loads(path.read_text()))
    if kind == "fit":
        return fit_headline(json.loads(path.read_text()))
    if kind == "real_lenses":
        return real_lenses_headline(pd.read_csv(path))
    if kind == "vae":
        return vae_headline(json.loads(path.read_text()))
    if kind == "comparison":
        return comparison_headline(pd.read_csv(path))
    raise ValueError(f"unknown headline kind {kind!r}; one of {KINDS}")


def write_headline(kind: str, source: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Compute the headline of `source` and write it to `out` as indented JSON (atomically)."""
    out = Path(out)
    write_text_atomic(out, json.dumps(headline(kind, source), indent=1, sort_keys=True) + "\n")
    return out
