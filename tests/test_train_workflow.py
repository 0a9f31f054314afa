"""The train rules under Snakemake: a job killed with SIGKILL resumes from resume/last.pt when rerun."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from astrorim.model.checkpoint import read_checkpoint
from astrorim.train.testing import make_tiny_dataset, tiny_config

pytestmark = [pytest.mark.workflow, pytest.mark.slow]

EPOCHS = 8


def _harness(repo_root: Path, tmp: Path, config: dict) -> Path:
    """A Snakefile with the repository's common.smk and train.smk (independent of the top-level Snakefile)."""
    (tmp / "config.yaml").write_text(yaml.safe_dump(config))
    snakefile = tmp / "Snakefile"
    snakefile.write_text(
        f'configfile: "{tmp / "config.yaml"}"\n'
        f'include: "{repo_root / "workflow" / "rules" / "common.smk"}"\n'
        f'include: "{repo_root / "workflow" / "rules" / "train.smk"}"\n')
    return snakefile


def _command(snakefile: Path, tmp: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "--snakefile", str(snakefile), "--directory", str(tmp),
            "--cores", "1", *extra, f"{tmp}/results/models/initial/best.pt"]


def test_killed_training_job_resumes_on_rerun(repo_root, tmp_path):
    make_tiny_dataset(tmp_path / "data", counts={"initial": {"train": 32, "val": 8}})
    config = tiny_config(tmp_path / "data", tmp_path / "results", checkpoint_every_batches=1,
                         initial={"epochs": EPOCHS})
    snakefile = _harness(repo_root, tmp_path, config)
    env = {**os.environ, "PYTHONPATH": str(repo_root / "src"), "OMP_NUM_THREADS": "1"}
    state = tmp_path / "results" / "models" / "initial" / "resume" / "last.pt"

    proc = subprocess.Popen(_command(snakefile, tmp_path), cwd=tmp_path, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed_at = None
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if state.exists():
                try:
                    ckpt = read_checkpoint(state)
                except Exception:  # noqa: BLE001 - being replaced right now; try again
                    ckpt = None
                if ckpt is not None and ckpt["global_step"] >= 6:
                    os.killpg(proc.pid, signal.SIGKILL)  # no chance to clean up: like a power cut
                    killed_at = ckpt["global_step"]
                    break
            time.sleep(0.05)
    finally:
        if proc.poll() is None and killed_at is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert killed_at is not None, "the job finished (or failed) before it could be killed"
    assert killed_at < EPOCHS * 4

    # A SIGKILLed Snakemake leaves its lock behind: unlock, then rerun the incomplete job (as a user would).
    unlock = subprocess.run(_command(snakefile, tmp_path, "--unlock"), cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=120)
    assert unlock.returncode == 0, unlock.stderr[-2000:]
    rerun = subprocess.run(_command(snakefile, tmp_path, "--rerun-incomplete"), cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=300)
    log = (tmp_path / "logs" / "tiny" / "train" / "initial.log").read_text()
    assert rerun.returncode == 0, rerun.stderr[-3000:] + log[-3000:]
    assert "resumed from" in log and f"{state}" in log
    out = tmp_path / "results" / "models" / "initial"
    assert read_checkpoint(out / "last.pt")["epoch"] == EPOCHS
    assert pd.read_csv(out / "metrics.csv")["epoch"].tolist() == list(range(1, EPOCHS + 1))
    assert not (out / "resume").exists()
