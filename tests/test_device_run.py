"""benchmarks/device_run.py: its --smoke mode runs every stage of the GPU run on the CPU at toy sizes."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import torch

from astrorim.train.state import read_training_checkpoint

SCRIPT = "benchmarks/device_run.py"


def _env(repo_root, **extra):
    return {**os.environ, "PYTHONPATH": str(repo_root / "src"), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            **extra}


@pytest.fixture(scope="module")
def smoke(repo_root, tmp_path_factory):
    work = tmp_path_factory.mktemp("device_run")
    out = tmp_path_factory.mktemp("OUT")
    proc = subprocess.run([sys.executable, SCRIPT, "--smoke", "--work", str(work)], cwd=repo_root,
                          env=_env(repo_root, OUT=str(out)), capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = work / "results"
    return {"work": work, "out": out, "stdout": proc.stdout,
            **{name: json.loads((results / f"{name}.json").read_text()) for name in
               ("device_run", "training", "inference")}}


def test_every_stage_runs_and_is_recorded(smoke):
    record = smoke["device_run"]
    assert record["mode"] == "smoke"
    assert list(record["stages"]) == ["hardware", "simulate", "step_sweep", "inference", "cuda_tests",
                                      "encoder_pretraining", "training"]
    assert all(s["status"] == "ok" for s in record["stages"].values()), record["stages"]
    assert record["hardware"]["cpu_count"] == os.cpu_count() and record["hardware"]["torch"] == torch.__version__
    sim = record["simulation"]
    assert sim["complete"] and (sim["train_pairs"], sim["val_pairs"]) == (32, 16) and sim["processes"] >= 1
    manifest = pd.read_csv(sim["manifest"])
    assert sorted(set(manifest["version"])) == ["v1", "v2"] and set(manifest["split"]) == {"train", "val"}
    tests = record["cuda_tests"]
    assert tests["exit_code"] == 0 and tests["counts"].get("skipped", 0) > 0 and "failed" not in tests["counts"]
    assert (smoke["work"] / "cuda_tests.log").read_text().count("needs a CUDA GPU") > 0
    pre = record["encoder_pretraining"]
    assert pre["status"] == "timed" or pre["status"].startswith("not available in this revision")


def test_training_json_names_the_hardware_and_times_steps(smoke):
    doc = smoke["training"]
    assert doc["schema_version"] == 2 and doc["produced_by"] == "benchmarks/device_run.py"
    assert doc["hardware"]["cpu_count"] == os.cpu_count() and "cuda_available" in doc["hardware"]
    rows = doc["results"]
    assert [r["batch_size"] for r in rows] == [2, 4]
    for r in rows:
        assert r["device"] == "cpu" and r["precision"] == "fp32" and r["samples_per_s"] > 0 and r["steps_timed"] >= 2
        assert r["tf32_matmul"] is False and r["skipped_steps"] == 0
    assert doc["device_run"]["stages"]["step_sweep"]["status"] == "ok"
    inference = smoke["inference"]
    assert inference["hardware"]["cpu_count"] == os.cpu_count()
    assert set(inference["results"]["cpu"]) >= {"batch_1", "batch_4", "raw_model_call_batch_64", "target"}
    assert inference["results"]["cpu"]["batch_4"]["wall_ms_per_obs_median"] > 0


def test_training_stops_at_its_budget_and_leaves_a_resumable_checkpoint(smoke):
    run = smoke["device_run"]["training_run"]
    assert run["settings"]["device"] == "cpu" and run["settings"]["checkpoint_every_s"] < 60
    assert run["stopped"].startswith("stopped by the device_run deadline") and run["global_step"] > 0
    ckpt = read_training_checkpoint(run["checkpoint"])
    assert ckpt["global_step"] == run["global_step"] and ckpt["config_hash"] == run["config_hash"]
    steps = pd.read_csv(run["steps_csv"])
    assert len(steps) >= 1 and steps["step"].iloc[-1] <= run["global_step"]


def test_outputs_are_copied_to_the_device_tools_out_folder(smoke):
    files = sorted(p.name for p in smoke["out"].iterdir())
    assert files == sorted(["device_run.json", "training.json", "inference.json", "device_run_logs.tar.gz",
                            "last.pt", "model_ema.pt", "encoder.pt"])
    assert len(files) <= 8 and all((smoke["out"] / f).stat().st_size < 16 * 2 ** 20 for f in files)
    assert json.loads((smoke["out"] / "training.json").read_text()) == smoke["training"]


def test_without_smoke_a_machine_without_cuda_is_refused(repo_root, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    proc = subprocess.run([sys.executable, SCRIPT, "--work", str(tmp_path)], cwd=repo_root, env=_env(repo_root),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "needs a CUDA GPU" in proc.stderr and "--smoke" in proc.stderr
    assert not (tmp_path / "results").exists()


def test_operational_settings_follow_the_machine_and_the_deadline():
    sys.path.insert(0, "benchmarks")
    from device_run import operational_settings

    assert operational_settings(16, 300.0) == {"num_workers": 12, "checkpoint_every_s": 75.0}
    assert operational_settings(2, 30.0) == {"num_workers": 0, "checkpoint_every_s": 10.0}
    assert operational_settings(8, 1e5)["checkpoint_every_s"] == 600.0
