"""The Snakemake workflow: lint, dry runs of both configurations, config errors, and a real quick study with its
report opened in headless Chromium."""

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from report_browser import browse_report, build_report, check_browsed

from astrorim.io.shards import read_shard
from astrorim.plan import shard_plan

pytestmark = pytest.mark.workflow


def snakemake(repo_root, *args, timeout=600):
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(repo_root / "Snakefile"), *args]
    return subprocess.run(command, cwd=repo_root, capture_output=True, text=True, timeout=timeout)


def test_lint_is_clean(repo_root):
    result = snakemake(repo_root, "--lint")
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr, result.stdout


def test_rules_are_formatted_by_snakefmt(repo_root):
    # as snakemake-workflows' CI checks: `snakefmt Snakefile workflow/rules/` rewrites what this finds
    result = subprocess.run([sys.executable, "-m", "snakefmt", "--check", "Snakefile", "workflow/rules/"],
                            cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_committed_rule_graph_is_current(repo_root):
    # docs/architecture.md shows docs/rulegraph.png; after adding or renaming a rule: snakemake --cores 1 rulegraph
    import importlib.util

    spec = importlib.util.spec_from_file_location("rulegraph", repo_root / "scripts/rulegraph.py")
    rulegraph = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rulegraph)
    fresh = rulegraph.union_dot(rulegraph.rulegraph(configfile, targets) for configfile, targets in rulegraph.RUNS)
    assert fresh == (repo_root / "docs/rulegraph.dot").read_text(), "run `snakemake --cores 1 rulegraph`"
    assert "study_map_convergence" in fresh and "real_lens_reference" in fresh


@pytest.mark.parametrize("configfile", ["config/config.yaml", "config/quick.yaml"])
def test_dry_run(repo_root, configfile):
    result = snakemake(repo_root, "-n", "--forceall", "--quiet", "rules", "--configfile", configfile)
    assert result.returncode == 0, result.stderr
    for rule in ("simulate", "manifest", "train", "finetune", "evaluate", "real_lens_model", "table1"):
        assert rule in result.stdout, rule


def test_mistyped_key_fails_naming_it(repo_root, tmp_path):
    config = yaml.safe_load((repo_root / "config/quick.yaml").read_text())
    config["simulation"]["shard_sise"] = config["simulation"].pop("shard_size")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    result = snakemake(repo_root, "-n", "--configfile", str(bad))
    assert result.returncode != 0
    assert "shard_sise" in result.stdout + result.stderr


def test_top_level_typo_is_a_short_message(repo_root, tmp_path):
    """A mistyped top-level key: the key, the file and the allowed keys in <= 5 lines, not a config dump."""
    config = yaml.safe_load((repo_root / "config/quick.yaml").read_text())
    config["run_nmae"] = config.pop("run_name")
    bad = tmp_path / "typo.yaml"
    bad.write_text(yaml.safe_dump(config))
    result = snakemake(repo_root, "-n", "--configfile", str(bad))
    assert result.returncode != 0
    text = result.stdout + result.stderr
    lines = [line for line in text[text.index("WorkflowError"):].strip().splitlines()
             if not line.startswith("Using workflow specific profile")]
    assert len(lines) <= 5, text
    assert f"{bad}: invalid configuration" in text
    assert "run_nmae (did you mean run_name?)" in text and "allowed at <top level>: baseline" in text


def test_quick_study_runs(repo_root, tmp_path):
    """The quick configuration for real, into temporary directories: simulation, training, finetuning, evaluation,
    then its Snakemake report, clicked through in headless Chromium.

    (The real-lens reference fits and the baseline are left to the README's quick command: they add minutes;
    tests/test_report.py browses their report from a committed run.)
    """
    config = yaml.safe_load((repo_root / "config/quick.yaml").read_text())
    config.update(run_name="ci_quick", data_dir=str(tmp_path / "data"), results_dir=str(tmp_path / "results"))
    configfile = tmp_path / "config.yaml"
    configfile.write_text(yaml.safe_dump(config))
    targets = ("evaluate", "evaluate_fit", "training_curves")
    result = snakemake(repo_root, *targets, "--cores", "2", "--configfile", str(configfile), timeout=1500)
    assert result.returncode == 0, result.stderr[-4000:]
    for spec in shard_plan(config):
        shard = read_shard(Path(config["data_dir"]) / spec.relative_path())
        assert len(shard) == spec.n
        assert shard.attrs["version"] == spec.version and shard.attrs["start_index"] == spec.start_index
    for phase in ("initial", "finetune", "test"):
        assert (Path(config["data_dir"]) / "sims" / phase / "manifest.csv").exists()
    results = Path(config["results_dir"])
    for phase in ("initial", "finetune"):
        assert (results / "models" / phase / "best.pt").stat().st_size > 0
    table2 = pd.read_csv(results / "tables" / "table2.csv")
    assert table2.loc[table2["subset"] == "All", "n"].item() == sum(
        config["simulation"]["phases"]["test"]["counts"].values())
    assert (results / "figures" / "figure7.png").stat().st_size > 0
    # "AstroRIM + fit" beside AstroRIM on the first evaluation.fit.max_per_version test examples of each version
    n_fit = 6 * config["evaluation"]["fit"]["max_per_version"]
    rows = pd.read_csv(results / "metrics" / "fit_per_example.csv")
    assert rows.groupby("method").size().to_dict() == {"astrorim": n_fit, "astrorim_fit": n_fit}
    assert rows.loc[rows["method"] == "astrorim_fit", "flag"].isin(
        ["ok", "not_converged", "hit_bound", "no_uncertainty", "failed"]).all()
    table2_fit = pd.read_csv(results / "tables" / "table2_fit.csv")
    assert table2_fit.loc[table2_fit["subset"] == "All"].set_index("method")["n"].to_dict() == {
        "astrorim": n_fit, "astrorim_fit": n_fit}
    # the network's rows of the fitted examples are those of the evaluation (same call, same checkpoint)
    per_example = pd.read_csv(results / "metrics" / "per_example.csv")
    ours = per_example[per_example["method"] == "astrorim"].set_index(["version", "index"])["ssim"]
    net = rows[rows["method"] == "astrorim"].set_index(["version", "index"])["ssim"]
    pd.testing.assert_series_equal(net, ours.loc[net.index], check_exact=False, rtol=1e-4)
    assert (results / "figures" / "fit_calibration.png").stat().st_size > 0
    assert (results / "figures" / "training_curves.png").stat().st_size > 0

    report, seconds = build_report(repo_root, tmp_path / "report.html", configfile, *targets)
    assert "Missing metadata" not in report.stdout + report.stderr  # every file has its run record
    assert seconds < 60, f"the report took {seconds:.0f} s"
    walk = browse_report(tmp_path / "report.html", tmp_path / "browser")
    pngs = sorted(str(p) for p in results.rglob("*.png"))
    assert len(pngs) >= 5
    seen = check_browsed(walk, pngs, ["Simulation", "Training", "Evaluation"])
    for phase in ("initial", "finetune", "test"):
        assert f"{config['data_dir']}/sims/{phase}/manifest.csv" in seen, phase
    for name in ("table2.csv", "table2_vs_paper.csv", "methods.csv", "parameter_recovery.csv", "table2_fit.csv",
                 "parameter_recovery_fit.csv", "fit_summary.csv"):
        assert seen[str(results / "tables" / name)][0]["category"] == "Evaluation", name
