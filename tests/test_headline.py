"""Headline metrics for DVC (astrorim.headline): a few flat numbers per stage, read from the stage's outputs."""

import json

import pandas as pd
import pytest

from astrorim.headline import (comparison_headline, evaluation_headline, fit_headline, headline,
                               real_lenses_headline, vae_headline, write_headline)


def test_evaluation_headline_picks_the_whole_test_set():
    metrics = {
        "astrorim": {"All": {"n": 900.0, "ssim_mean": 0.9, "ssim_median": 0.95, "mse_median": 3e-4},
                     "v1": {"n": 150.0, "ssim_mean": 0.1, "ssim_median": 0.1, "mse_median": 1.0}},
        "tikhonov_true": {"All": {"ssim_mean": 0.97}},
        "paper_comparison": {"All.ssim_mean": {"ours": 0.9, "paper": 0.927, "difference": -0.027}},
    }
    assert evaluation_headline(metrics) == {"n_test": 900, "ssim_mean": 0.9, "ssim_median": 0.95,
                                            "mse_median": 3e-4, "tikhonov_true_ssim_mean": 0.97,
                                            "paper_ssim_mean": 0.927}


def test_fit_headline_reads_both_methods_over_all_versions():
    metrics = {"n_examples": 300,
               "astrorim": {"All": {"n": 300, "theta_e_median_abs_rel_error": 0.11, "coverage68_theta_E": None},
                            "v1": {"n": 50, "theta_e_median_abs_rel_error": 0.9}},
               "astrorim_fit": {"All": {"n": 300, "theta_e_median_abs_rel_error": 0.04,
                                        "theta_e_fraction_within_5pct": 0.55, "median_chi2_per_pixel": 3.1,
                                        "coverage68_theta_E": 0.07, "coverage95_theta_E": 0.12}}}
    assert fit_headline(metrics) == {"n_fitted": 300, "fit_theta_e_rel_err_median": 0.04,
                                     "network_theta_e_rel_err_median": 0.11, "fit_theta_e_within_5pct": 0.55,
                                     "fit_chi2_per_pixel_median": 3.1, "fit_theta_e_coverage_68": 0.07,
                                     "fit_theta_e_coverage_95": 0.12}


def test_real_lenses_headline_skips_lenses_without_a_fit_and_the_summary_row():
    table = pd.DataFrame({
        "lens": ["B1608", "A", "B", "C", "Mean abs. % error (MAPE)"],
        "theta_e_model_arcsec": [None, 1.0, 1.2, 0.8, None],
        "abs_pct_diff_theta_e": [None, 10.0, 30.0, 20.0, 20.0],
        "chi2_dof_model": [None, 2.0, 100.0, 5.0, None],
        "flag_high_chi2": [None, False, True, True, None],
    })
    assert real_lenses_headline(table) == {"n_lenses": 3, "theta_e_abs_pct_diff_median": 20.0,
                                           "chi2_dof_median": 5.0, "n_flag_high_chi2": 2}


def test_vae_and_comparison_headlines():
    training = {"test_elbo": 100.5, "reconstruction_rms": 0.04, "history": {"train_elbo": [1, 2, 3]}}
    assert vae_headline(training) == {"vae_test_elbo": 100.5, "vae_reconstruction_rms": 0.04, "vae_epochs": 3}
    summary = pd.DataFrame({"set": ["mock", "test", "test"], "method": ["astrorim", "astrorim", "paper003_map"],
                            "n": [6, 24, 24], "median_source_ssim": [0.1, 0.95, float("nan")],
                            "median_rel_err_theta_E": [0.0, 0.2, 0.4], "median_wall_s": [1.0, 0.06, 49.0]})
    out = comparison_headline(summary)
    assert out["n_test"] == 24 and out["astrorim_source_ssim_median"] == 0.95
    assert out["paper003_map_source_ssim_median"] is None  # NaN is not JSON
    assert out["paper003_map_seconds_median"] == 49.0


@pytest.mark.parametrize("run, kind, source", [
    ("cpu_medium", "evaluation", "metrics/evaluate.json"),
    ("cpu_medium", "real_lenses", "tables/table1.csv"),
    ("cpu_pretrain", "fit", "metrics/fit.json"),
    ("cpu_pretrain", "real_lenses", "tables/table1.csv"),
    ("cpu_small", "evaluation", "metrics/evaluate.json"),
    ("cpu_small", "real_lenses", "tables/table1.csv"),
    ("cpu_small", "vae", "baseline/vae/training.json"),
    ("cpu_small", "comparison", "baseline/comparison_summary.csv"),
    ("cpu_small_vae16_450", "vae", "baseline/vae/training.json"),
    ("cpu_small_vae32", "vae", "baseline/vae/training.json"),
    ("cpu_small_vae32_long", "vae", "baseline/vae/training.json"),
])
def test_committed_headlines_are_those_of_their_sources(repo_root, tmp_path, run, kind, source):
    results = repo_root / "results" / run
    committed = json.loads((results / "metrics" / f"headline_{kind}.json").read_text())
    assert committed == headline(kind, results / source)
    assert 3 <= len(committed) <= 8, "a handful of numbers, not hundreds"
    assert all(isinstance(v, (int, float)) or v is None for v in committed.values())
    fresh = json.loads(write_headline(kind, results / source, tmp_path / "h.json").read_text())
    assert fresh == committed


def test_committed_evaluation_headline_matches_table2(repo_root):
    """Independent of the evaluate.json route: Table 2's 'All' row of AstroRIM gives the same mean SSIM."""
    results = repo_root / "results" / "cpu_medium"
    table2 = pd.read_csv(results / "tables" / "table2.csv")
    committed = json.loads((results / "metrics" / "headline_evaluation.json").read_text())
    row = table2[table2["subset"] == "All"]
    assert int(row["n"].item()) == committed["n_test"]
    assert row["ssim_mean"].item() == pytest.approx(committed["ssim_mean"], rel=1e-6)
