"""dvc.yaml: the stage commands' word order (Snakemake's --configfile takes every following word as a config file,
so a target written after it is read as a missing config file), and the metrics and plots `dvc metrics show` /
`dvc plots show` find: a few headline numbers per stage of every run, stages' and committed runs' alike."""

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def _rendered_commands():
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    runs = {k: v for entry in dvc["vars"] for k, v in entry["runs"].items()}
    for stage, spec in dvc["stages"].items():
        for run, item in runs.items():
            cmd = spec["do"]["cmd"]
            for key, value in item.items():
                cmd = cmd.replace("${item.%s}" % key, value)
            yield f"{stage}@{run}", cmd


@pytest.mark.parametrize("name, cmd", list(_rendered_commands()))
def test_configfile_is_followed_by_one_file_then_an_option(name, cmd):
    words = shlex.split(cmd)
    assert "${" not in cmd, f"{name}: unresolved variable in {cmd!r}"
    i = words.index("--configfile")
    assert (REPO / words[i + 1]).is_file(), f"{name}: --configfile {words[i + 1]} does not exist"
    rest = words[i + 2:]
    assert not rest or rest[0].startswith("-"), (
        f"{name}: {rest[0]!r} after --configfile {words[i + 1]} would be read as another config file; "
        "put targets before --configfile")


def _metric_paths(entries):
    return [next(iter(e)) if isinstance(e, dict) else e for e in entries or []]


def test_stage_metrics_are_headlines():
    """`dvc metrics show` gets a handful of numbers per stage, not the ~700 of evaluate.json."""
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    for stage in ("evaluate", "fit", "real_lenses", "baseline"):
        paths = _metric_paths(dvc["stages"][stage]["do"].get("metrics"))
        assert paths and all("/metrics/headline_" in p for p in paths), (stage, paths)
        cmd = dvc["stages"][stage]["do"]["cmd"]
        for path in paths:  # the stage's command runs the rule that writes each headline
            assert "headline_" + path.rsplit("headline_", 1)[1].removesuffix(".json") in cmd, (stage, path)


def test_every_committed_run_is_declared():
    """Each committed results/<run>/ with outputs of a stage has that stage's headline and figures declared."""
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    metrics = set(_metric_paths(dvc.get("metrics")))
    plots = set(_metric_paths(dvc.get("plots")))
    sources = {"evaluation": "metrics/evaluate.json", "fit": "metrics/fit.json", "real_lenses": "tables/table1.csv",
               "vae": "baseline/vae/training.json", "comparison": "baseline/comparison_summary.csv"}
    runs = [p for p in sorted((REPO / "results").iterdir()) if (REPO / "config" / f"{p.name}.yaml").exists()]
    assert {"cpu_medium", "cpu_small"} <= {r.name for r in runs}
    for run in runs:
        rel = f"results/{run.name}"
        for kind, source in sources.items():
            if (run / source).exists():
                assert f"{rel}/metrics/headline_{kind}.json" in metrics, (run.name, kind)
                assert (run / "metrics" / f"headline_{kind}.json").exists(), (run.name, kind)
        for png in run.rglob("*.png"):
            path = png.relative_to(REPO).as_posix()
            if "/real_lenses/" in path and png.name == "reference_fit.png":
                continue  # the reference fits are shown beside the model's figure of each lens
            assert path in plots or any(path.startswith(d + "/") for d in plots), path


def test_dvc_metrics_show_is_readable(repo_root):
    result = subprocess.run([sys.executable, "-m", "dvc", "metrics", "show", "--json"], cwd=repo_root,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    revisions = json.loads(result.stdout)
    shown = revisions.get("workspace", revisions.get(""))["data"]  # the workspace is "" in DVC 3
    for run in ("cpu_medium", "cpu_small", "cpu_small_vae32"):
        assert any(path.startswith(f"results/{run}/") for path in shown), run
    for path, entry in shown.items():
        if "data" in entry:
            assert len(entry["data"]) <= 8, f"{path}: {len(entry['data'])} numbers"


def test_dvc_plots_output_is_ignored(repo_root):
    result = subprocess.run(["git", "check-ignore", "-q", "dvc_plots/index.html"], cwd=repo_root)
    assert result.returncode == 0, "dvc plots show writes dvc_plots/: .gitignore must ignore it"
