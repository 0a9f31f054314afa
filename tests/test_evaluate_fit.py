"""'AstroRIM' beside 'AstroRIM + fit': the fit rows' helpers, calibration against analytic cases, the report."""

import math

import numpy as np
import pandas as pd
import pytest

from astrorim.evaluate import fit_report
from astrorim.evaluate.fit_rows import (CALIBRATED, COMPONENTS, METHODS, FitSettings, examples_to_fit,
                                        resample_fit_source)
from astrorim.evaluate.recovery import RECOVERED

VERSIONS = ("v1", "v2", "v3", "v4", "v5", "v6")


def test_examples_to_fit_takes_the_first_n_of_each_version_across_shards():
    # 150 examples per version in shards of 40: the first 50 are 40 of shard 0 and 10 of shard 1
    starts = range(0, 150, 40)
    taken = [examples_to_fit(s, min(40, 150 - s), 50) for s in starts]
    assert taken == [40, 10, 0, 0]
    assert examples_to_fit(0, 20, 50) == 20


def test_fit_settings_defaults_and_errors():
    assert FitSettings.from_config(None) == FitSettings(enabled=True, max_per_version=50, threads=1)
    assert FitSettings.from_config({"max_per_version": 2}).max_per_version == 2
    with pytest.raises(KeyError, match="evaluation.fit: unknown keys \\['max_per_versoin'\\]"):
        FitSettings.from_config({"max_per_versoin": 2})
    with pytest.raises(ValueError, match="max_per_version"):
        FitSettings.from_config({"max_per_version": 0})


def test_resample_fit_source_maps_the_fit_grid_onto_the_image_grid():
    """A linear function sampled on the fit's +-R grid comes back exactly at image pixels well inside +-R,
    and zero outside it."""
    npix, m, radius = 48, 40, 0.6
    centres_fit = ((np.arange(m) + 0.5) / m * 2 - 1) * radius
    y, x = np.meshgrid(centres_fit, centres_fit, indexing="ij")
    src = (1.0 + 2.0 * x - 0.5 * y)[None]
    out = resample_fit_source(src, radius, npix)[0]
    centres = (np.arange(npix) + 0.5) / npix * 2 - 1
    yy, xx = np.meshgrid(centres, centres, indexing="ij")
    inside = (np.abs(xx) < radius - 2 * radius / m) & (np.abs(yy) < radius - 2 * radius / m)
    np.testing.assert_allclose(out[inside], (1.0 + 2.0 * xx - 0.5 * yy)[inside], atol=1e-12)
    outside = (np.abs(xx) > radius + radius / m) | (np.abs(yy) > radius + radius / m)
    assert outside.any() and np.all(out[outside] == 0)
    # row 0 stays at the bottom and x along columns: the gradient keeps its orientation
    assert out[npix // 2, npix // 2 + 5] > out[npix // 2, npix // 2 - 5]
    assert out[npix // 2 + 5, npix // 2] < out[npix // 2 - 5, npix // 2]


def test_coverage_of_gaussian_errors_with_their_true_sigma_is_nominal():
    rng = np.random.default_rng(0)
    sigma = rng.uniform(0.01, 0.2, 40_000)
    error = rng.normal(0, sigma)
    for level in (0.5, 0.68, 0.95, 0.99):
        cov, n = fit_report.coverage(error, sigma, level)
        assert n == sigma.size
        assert abs(cov - level) < 0.01, (level, cov)
    # errors reported 3x too small cover far less: 68 % nominal -> P(|z| < 1/3) = 26 %
    cov, _ = fit_report.coverage(error, sigma / 3, 0.68)
    assert abs(cov - 0.261) < 0.01
    # rows without a finite positive sigma are left out and counted out
    cov, n = fit_report.coverage([0.0, 0.0, 5.0], [1.0, np.nan, 0.0], 0.68)
    assert (cov, n) == (1.0, 1)
    assert math.isnan(fit_report.coverage([1.0], [np.nan], 0.68)[0])


def synthetic_rows(n_per_version=30, seed=1, sigma_scale=1.0):
    """Rows as fit_rows writes them: the network with larger errors, the fit with Gaussian errors of its sigma."""
    rng = np.random.default_rng(seed)
    parts = []
    for method in METHODS:
        for version in VERSIONS:
            n = n_per_version
            f = {"method": method, "version": version, "seed": 3003, "phase": "test", "split": "test",
                 "index": np.arange(n), "shard": f"{version}.h5"}
            frame = pd.DataFrame(f)
            good = method == "astrorim_fit"
            for col in ("ssim", "ssim_default", "ssim_source", "ssim_published"):
                frame[col] = rng.uniform(0.9, 1.0, n) if good else rng.uniform(0.6, 0.9, n)
            for col in ("mse", "mse_published"):
                frame[col] = rng.uniform(1e-5, 1e-4, n)
            for p in RECOVERED:
                true = rng.uniform(0.5, 1.5, n)
                frame[f"true_{p}"] = true
                frame[f"pred_{p}"] = true * (1 + rng.normal(0, 0.01 if good else 0.2, n))
                frame[f"err_{p}"] = frame[f"pred_{p}"] - true
            for name in COMPONENTS:
                frame[f"true_{name}"] = rng.uniform(-0.1, 0.1, n)
            for name in CALIBRATED:
                sigma = rng.uniform(0.005, 0.02, n)
                true = frame[f"true_{name}"].to_numpy()
                pred = true + rng.normal(0, sigma if good else 0.1)
                if name == "theta_E":
                    frame["err_theta_E"] = pred - true
                frame[f"pred_{name}"] = pred
                frame[f"sigma_{name}"] = sigma * sigma_scale if good else np.nan
            frame["chi2_per_pixel"] = rng.uniform(1, 2, n) if good else np.nan
            frame["log_evidence"] = np.nan
            frame["converged"] = True
            frame["flag"] = np.where(np.arange(n) % 3 == 0, "not_converged", "ok") if good else ""
            frame["fit_reason"] = ""
            frame["seconds"] = 5.0
            parts.append(frame)
    return pd.concat(parts, ignore_index=True)


def test_calibration_and_summary_on_synthetic_rows():
    rows = synthetic_rows(n_per_version=400)
    cal = fit_report.calibration_table(rows)
    all68 = cal[(cal["subset"] == "All") & np.isclose(cal["nominal"], 0.68)]
    assert set(all68["parameter"]) == set(CALIBRATED)
    assert np.all(np.abs(all68["coverage"] - 0.68) < 0.03)
    assert np.all(all68["n"] == 2400)
    too_small = fit_report.calibration_table(synthetic_rows(n_per_version=400, sigma_scale=0.5))
    c = too_small[(too_small["subset"] == "All") & np.isclose(too_small["nominal"], 0.68)]["coverage"]
    assert np.all(c < 0.45)  # P(|z| < 0.5) = 0.38

    summary = fit_report.summary_table(rows).set_index(["subset", "method"])
    fit, net = summary.loc[("All", "astrorim_fit")], summary.loc[("All", "astrorim")]
    assert fit["n"] == net["n"] == 2400
    assert fit["theta_e_median_abs_rel_error"] < net["theta_e_median_abs_rel_error"]
    assert fit["n_not_converged"] == 6 * 134 and fit["n_ok"] == 6 * 266 and net["n_ok"] == 0
    assert math.isnan(net["coverage68_theta_E"])
    t2 = fit_report.table2_side_by_side(rows)
    assert list(t2["method"].unique()) == list(METHODS)
    assert t2.set_index(["method", "subset"]).loc[("astrorim", "v5-6"), "n"] == 800


def test_load_rows_refuses_an_example_without_both_methods(tmp_path):
    rows = synthetic_rows(n_per_version=3)
    path = tmp_path / "rows.csv"
    rows.drop(index=0).to_csv(path, index=False)
    with pytest.raises(ValueError, match="example v1#0 has methods \\('astrorim_fit',\\)"):
        fit_report.load_rows([path])


def test_write_report_writes_every_output(tmp_path, repo_root):
    rows = synthetic_rows(n_per_version=4)
    path = tmp_path / "rows.csv"
    rows.to_csv(path, index=False)
    keys = {"per_example": "csv", "table2": "csv", "table2_tex": "tex", "vs_paper": "csv", "recovery": "csv",
            "recovery_tex": "tex", "summary": "csv", "summary_tex": "tex", "calibration": "csv",
            "recovery_figure": "png", "calibration_figure": "png", "metrics": "json"}
    out = {k: str(tmp_path / f"{k}.{ext}") for k, ext in keys.items()}
    written = fit_report.write_report(fit_report.load_rows([path]), out, repo_root / "resources/paper_table2.csv")
    assert sorted(map(str, written)) == sorted(out.values())
    vs = pd.read_csv(out["vs_paper"])
    assert set(vs["method"]) == set(METHODS) and (vs["statistic"] == "ssim_mean").any()
    import json
    metrics = json.loads(open(out["metrics"]).read())
    assert metrics["n_examples"] == 24
    assert "All.theta_E.68" in metrics["coverage"]
    assert metrics["astrorim_fit"]["All"]["theta_e_median_abs_rel_error"] is not None
