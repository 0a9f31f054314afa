"""studies/baseline_phi_bias_summary.py: the phi-bias table across source priors, read from committed results."""

import csv
import importlib.util
import json
import math
import shutil

import pytest


@pytest.fixture(scope="module")
def summary(repo_root):
    spec = importlib.util.spec_from_file_location("baseline_phi_bias_summary",
                                                  repo_root / "studies/baseline_phi_bias_summary.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shear_errors_of_a_reflected_shear_are_zero_in_magnitude_and_minus_45_degrees_in_angle(summary):
    # truth (0.03, 0.03): angle 22.5 deg; fit (0.03, -0.03): angle -22.5 deg, same magnitude
    magnitude_pct, angle_deg = summary.shear_errors({"gamma1": 0.03, "gamma2": 0.03}, {"gamma1": 0.0, "gamma2": -200.0})
    assert magnitude_pct == pytest.approx(0.0, abs=1e-9)
    assert angle_deg == pytest.approx(-45.0)


def test_shear_angle_error_wraps_across_90_degrees(summary):
    # truth 0.07 deg below +90 deg, fit 0.07 deg above -90 deg (= 0.07 deg above +90): 0.14 deg apart, not -180
    truth = {"gamma1": -0.04, "gamma2": 0.0001}
    magnitude_pct, angle_deg = summary.shear_errors(truth, {"gamma1": 0.0, "gamma2": -200.0})
    expected = math.degrees(math.atan2(0.0001, 0.04))
    assert abs(angle_deg) < 1.0 and angle_deg == pytest.approx(expected, rel=1e-6)
    doubled, _ = summary.shear_errors(truth, {"gamma1": 100.0, "gamma2": 100.0})
    assert doubled == pytest.approx(100.0)


def _write_fake_repo(repo_root, tmp_path, runs):
    (tmp_path / "config").mkdir()
    shutil.copy(repo_root / "config/cpu_small.yaml", tmp_path / "config/cpu_small.yaml")
    shutil.copy(repo_root / "config/schema.yaml", tmp_path / "config/schema.yaml")
    (tmp_path / "fit.json").write_text(json.dumps({"config": "config/cpu_small.yaml", "system": "system1",
                                                   "runs": runs}))


def test_collect_keeps_the_prior_centre_and_truth_starts_and_converts_phi_to_degrees(summary, repo_root, tmp_path):
    errors = {"r_ein": 0.1, "phi": -5.0, "gamma1": 10.0, "gamma2": 10.0}
    _write_fake_repo(repo_root, tmp_path, [
        {"start": "prior centre", "phi_start": None, "log_joint": 1.0, "rel_error_pct": errors},
        {"start": "prior centre, phi moved", "phi_start": 0.4, "log_joint": 2.0, "rel_error_pct": errors},
        {"start": "truth", "phi_start": None, "log_joint": 3.0, "rel_error_pct": {"phi": 2.0}},
    ])
    rows = summary.collect([summary.Measurement("toy", "shear free", "fit.json")], repo=tmp_path)
    assert [r["start"] for r in rows] == ["prior centre", "truth"]
    # config/cpu_small.yaml: system1's true phi is 0.6 rad
    assert rows[0]["phi_error_deg"] == pytest.approx(math.degrees(-0.05 * 0.6))
    assert rows[0]["shear_magnitude_error_pct"] == pytest.approx(10.0)
    assert rows[0]["shear_angle_error_deg"] == pytest.approx(0.0, abs=1e-9)
    assert math.isnan(rows[1]["shear_magnitude_error_pct"])  # no shear errors in that run: not invented


def test_collect_names_the_missing_file_and_the_missing_field(summary, repo_root, tmp_path):
    with pytest.raises(SystemExit, match="absent.json: missing"):
        summary.collect([summary.Measurement("toy", "shear free", "absent.json")], repo=tmp_path)
    _write_fake_repo(repo_root, tmp_path, [{"start": "truth", "log_joint": 1.0, "rel_error_pct": {"q": 1.0}}])
    with pytest.raises(SystemExit, match=r"fit.json: runs\[0\].rel_error_pct: no field 'phi'"):
        summary.collect([summary.Measurement("toy", "shear free", "fit.json")], repo=tmp_path)


def test_the_committed_table_is_what_the_committed_fits_give(summary, repo_root, tmp_path):
    """results/studies/baseline_phi_bias.csv must be regenerated whenever a fit it reads changes."""
    fresh = tmp_path / "phi_bias.csv"
    summary.write_csv(summary.collect(), fresh)
    committed = repo_root / "results/studies/baseline_phi_bias.csv"
    assert list(csv.DictReader(fresh.open())) == list(csv.DictReader(committed.open()))


def test_both_figures_are_drawn_from_rows_of_every_kind(summary, tmp_path):
    def row(prior, experiment, system, start, fraction=None, phi_pct=-3.0):
        return {"prior": prior, "experiment": experiment, "misfit_fraction": fraction, "system": system,
                "start": start, "phi_true_rad": 0.6, "phi_error_pct": phi_pct, "phi_error_deg": 0.01 * phi_pct * 34.4,
                "shear_magnitude_error_pct": 5.0, "shear_angle_error_deg": 1.0, "log_joint": 0.0, "source": "x"}

    rows = [row(prior, experiment, system, start) for prior in summary.PRIORS[:2]
            for experiment in ("shear free", "shear pinned") for system in ("system1", "system2")
            for start in summary.STARTS]
    rows += [row(summary.W16_150_RETRAINED, "misfit scan", system, start, fraction, phi_pct=-4 * fraction)
             for system in ("system1", "system2") for start in summary.STARTS for fraction in (0.0, 0.5, 1.0)]
    summary.plot(rows, tmp_path / "priors.png")
    summary.plot_misfit(rows, tmp_path / "misfit.png")
    for name in ("priors.png", "misfit.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["misfit.png", "priors.png"]  # no temporary file left
