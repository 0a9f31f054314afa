"""A shared DVC remote: reproduce the simulate stage, push, clone elsewhere, pull, and find nothing to redo.

Runs in a throw-away git repository holding a copy of this working tree (tracked and untracked-but-not-ignored
files), with a local-directory remote standing in for S3/GCS (docs/cluster.md). The stage is the real
`simulate@quick` from dvc.yaml; only the copy's configuration is shrunk to seven shards.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from astrorim.io.shards import read_shard
from astrorim.plan import shard_plan
from snakemake_output import nothing_to_do

pytestmark = pytest.mark.workflow

REPO = Path(__file__).resolve().parents[1]
GIT_IDENTITY = ("-c", "user.name=astrorim-ci", "-c", "user.email=ci@astrorim.invalid", "-c", "commit.gpgsign=false")


def tiny_config() -> dict:
    """config/quick.yaml with two simulators and seven shards in all."""
    config = yaml.safe_load((REPO / "config/quick.yaml").read_text())
    phases = config["simulation"]["phases"]
    phases["initial"]["counts"] = {"v1": 4, "v2": 4}
    phases["finetune"]["counts"] = {"v1": 2}
    phases["test"]["counts"] = {"v2": 1}
    config["simulation"]["shard_size"] = 10
    return config


def run(*args, cwd: Path, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    result = subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(map(str, args))} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def copy_working_tree(dest: Path) -> None:
    """Tracked files plus untracked files git does not ignore (work in progress included), as they are now."""
    listing = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                             capture_output=True, timeout=60, check=True).stdout.decode().split("\0")
    for rel in filter(None, listing):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def checksums(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_dvc_remote_push_clone_pull(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    pytest.importorskip("dvc", reason="dvc is not installed (pip install -e '.[workflow]')")
    from astrorim import sim

    if not hasattr(sim, "simulate"):
        pytest.skip("astrorim.sim.simulate is not implemented yet")

    first, second, remote = tmp_path / "first", tmp_path / "second", tmp_path / "remote"
    env = dict(os.environ, DVC_NO_ANALYTICS="1", DVC_SITE_CACHE_DIR=str(tmp_path / "dvc-site"),
               GIT_CONFIG_NOSYSTEM="1", GIT_TERMINAL_PROMPT="0",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    dvc = (sys.executable, "-m", "dvc")

    # A repository like a fresh clone of this project. A --configfile is deep-merged into config/config.yaml
    # (the Snakefile's `configfile:`), so the copy's config.yaml gets the tiny config too; otherwise the versions
    # left out of it would come back at paper scale.
    first.mkdir()
    copy_working_tree(first)
    config = tiny_config()
    for name in ("config/quick.yaml", "config/config.yaml"):
        (first / name).write_text(yaml.safe_dump(config))
    for stale in ("data", "logs", ".snakemake", ".dvc/cache", ".dvc/tmp"):
        shutil.rmtree(first / stale, ignore_errors=True)
    run("git", "init", "-q", cwd=first, env=env)
    run("git", *GIT_IDENTITY, "add", "-A", cwd=first, env=env)
    run("git", *GIT_IDENTITY, "commit", "-q", "-m", "copy of the working tree", cwd=first, env=env)

    # The shared remote, as in docs/cluster.md (a directory here; s3:// or gs:// on a cluster).
    run(*dvc, "remote", "add", "-d", "shared", str(remote), cwd=first, env=env)
    run(*dvc, "repro", "simulate@quick", cwd=first, env=env, timeout=300)
    run(*dvc, "push", "simulate@quick", cwd=first, env=env)
    run("git", *GIT_IDENTITY, "add", "-A", cwd=first, env=env)
    run("git", *GIT_IDENTITY, "commit", "-q", "-m", "simulate@quick", cwd=first, env=env)
    assert any(remote.rglob("*")), "dvc push left the remote empty"

    # A second machine: clone the git repository, pull the data.
    run("git", "clone", "-q", str(first), str(second), cwd=tmp_path, env=env)
    assert not (second / "data").exists()
    # Only this stage's outputs: simulate@paper was never run, so a bare `dvc pull` would fail on it.
    run(*dvc, "pull", "simulate@quick", cwd=second, env=env)

    sims = Path("data/quick/sims")
    original, pulled = checksums(first / sims), checksums(second / sims)
    plan = shard_plan(config)
    assert len(original) == len(plan) + 3  # shards + one manifest per phase
    assert pulled == original
    for spec in plan:
        assert len(read_shard(second / "data/quick" / spec.relative_path())) == spec.n
    status = run(*dvc, "status", "simulate@quick", cwd=second, env=env)
    assert "up to date" in status.stdout, status.stdout

    # Pulled files get fresh timestamps in whatever order DVC writes them; make it the awkward order (every shard
    # newer than the manifests built from it). Snakemake 9 compares input and output mtimes whatever
    # --rerun-triggers says (MTIME is not consulted, and a fresh clone has no recorded checksums to excuse the
    # newer inputs), so the documented step after a pull is `snakemake --touch` with the same arguments: it
    # re-stamps the existing outputs in DAG order without running anything. Then there is nothing to do.
    past = min(os.path.getmtime(shard) for shard in (second / sims).rglob("*.h5")) - 3600
    for manifest in (second / sims).glob("*/manifest.csv"):
        os.utime(manifest, (past, past))
    smk = (sys.executable, "-m", "snakemake", "--configfile", "config/quick.yaml", "--until", "manifest")
    run(*smk, "--touch", "--cores", "1", cwd=second, env=env)
    dry_run = run(*smk, "-n", cwd=second, env=env)
    assert nothing_to_do(dry_run.stdout + dry_run.stderr), dry_run.stdout[-3000:]
    assert checksums(second / sims) == original  # --touch changed timestamps only
    status = run(*dvc, "status", "simulate@quick", cwd=second, env=env)
    assert "up to date" in status.stdout, status.stdout
