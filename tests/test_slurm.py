"""The workflow on SLURM: the profiles, the paper-scale plan, and real runs on a single-node localhost cluster.

The cluster tests start munged + slurmctld + slurmd (tests/slurm_cluster.py) and submit through
snakemake-executor-plugin-slurm exactly as on a real cluster, with the project's profile. They are skipped, with
the reason, where SLURM cannot run (binaries missing, not root, a daemon fails to start); set
ASTRORIM_REQUIRE_SLURM=1 (CI does) to turn those skips into failures.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from astrorim.io.shards import read_shard
from astrorim.plan import shard_plan

from slurm_cluster import LocalSlurmCluster, SlurmUnavailable, unavailable_reason
from snakemake_output import nothing_to_do

pytestmark = pytest.mark.workflow

REPO = Path(__file__).resolve().parents[1]
SLURM_PROFILE = REPO / "profiles" / "slurm"
DEFAULT_PROFILE = REPO / "profiles" / "default"
REQUIRE_SLURM = os.environ.get("ASTRORIM_REQUIRE_SLURM", "") not in ("", "0")

# The local cluster keeps finished jobs visible to squeue (MinJobAge=600) and has no slurmdbd, so job states
# are polled with squeue; the first poll comes after 2 s instead of 40 s so that small jobs finish quickly.
CLUSTER_ARGS = ("--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2")


def snakemake(*args, cwd=REPO, env=None, timeout=600):
    command = [sys.executable, "-m", "snakemake", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a Snakemake run or dry run: rule -> number of jobs."""
    counts = {}
    table = output.split("Job stats:", 1)[1]
    for line in table.splitlines()[3:]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        counts[parts[0]] = int(parts[1])
    return counts


# -- profiles -------------------------------------------------------------------------------------------------


def test_profiles_share_the_rerun_rules():
    """Both profiles use dvc.yaml's rerun triggers (no mtime) and rerun incomplete jobs; the SLURM profile
    retries and waits for a shared file system, the single-machine one limits GPU jobs to one at a time."""
    for profile in (DEFAULT_PROFILE, SLURM_PROFILE):
        settings = yaml.safe_load((profile / "config.yaml").read_text())
        assert "mtime" not in settings["rerun-triggers"], profile
        assert {"params", "input", "code"} <= set(settings["rerun-triggers"]), profile
        assert settings["rerun-incomplete"] is True, profile
    default = yaml.safe_load((DEFAULT_PROFILE / "config.yaml").read_text())
    assert default["resources"] == ["gpu=1"]
    slurm = yaml.safe_load((SLURM_PROFILE / "config.yaml").read_text())
    assert slurm["executor"] == "slurm" and slurm["retries"] >= 1 and slurm["latency-wait"] >= 30


def test_slurm_profile_maps_gpu_rules_to_the_gpu_partition(tmp_path):
    """Rules named train/finetune/baseline_train_vae that declare gpu=1 get the GPU partition and CPUs per GPU
    from the profile (checked on the resources Snakemake resolves, with a toy workflow standing in for the real
    rules)."""
    (tmp_path / "Snakefile").write_text(
        "rule all:\n    input: 'finetuned.pt', 'cpu.txt', 'vae.pt'\n"
        "rule train:\n    output: 'trained.pt'\n    resources: gpu=1\n    shell: 'touch {output}'\n"
        "rule finetune:\n    input: 'trained.pt'\n    output: 'finetuned.pt'\n    resources: gpu=1\n"
        "    shell: 'touch {output}'\n"
        "rule baseline_train_vae:\n    output: 'vae.pt'\n    resources: gpu=1\n    shell: 'touch {output}'\n"
        "rule cpu:\n    output: 'cpu.txt'\n    shell: 'touch {output}'\n")
    result = snakemake("-n", "--workflow-profile", str(SLURM_PROFILE), cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout + result.stderr
    resources = dict(re.findall(r"rule (\w+):.*?\n\s+resources: ([^\n]+)", out, flags=re.S))
    for rule, cpus in (("train", 8), ("finetune", 8), ("baseline_train_vae", 2)):
        assert "slurm_partition=gpu" in resources[rule] and f"cpus_per_gpu={cpus}" in resources[rule], resources
        assert "gpu=1" in resources[rule] and "gres" not in resources[rule], resources
    assert "slurm_partition" not in resources["cpu"] and "mem_mb=2000" in resources["cpu"], resources


# -- the paper-scale plan ------------------------------------------------------------------------------------


def test_paper_plan_dry_run_is_fast_and_sensible(tmp_path):
    """500k pairs plan into a few hundred shard jobs (not 500k, not 3), listed in well under 30 s."""
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config.update(run_name="plan_check", data_dir=str(tmp_path / "data"), results_dir=str(tmp_path / "results"))
    configfile = tmp_path / "config.yaml"
    configfile.write_text(yaml.safe_dump(config))

    start = time.monotonic()
    result = snakemake("-n", "--workflow-profile", str(SLURM_PROFILE), "--configfile", str(configfile),
                       "--quiet", "rules", timeout=120)
    elapsed = time.monotonic() - start
    assert result.returncode == 0, result.stderr[-3000:]
    assert elapsed < 30, f"dry run of the paper plan took {elapsed:.1f} s"

    plan = shard_plan(config)
    size = config["simulation"]["shard_size"]
    counts = job_counts(result.stdout + result.stderr)
    assert counts["simulate"] == len(plan)
    assert counts["manifest"] == 3
    assert 100 <= len(plan) <= 1000, len(plan)
    assert all(1 <= spec.n <= size for spec in plan)
    total = sum(sum(phase["counts"].values()) for phase in config["simulation"]["phases"].values())
    assert sum(spec.n for spec in plan) == total == 500_900
    # Shards are full except the last of each (phase, version, split) stream.
    assert sum(spec.n < size for spec in plan) <= len({(s.phase, s.version, s.split) for s in plan})


def test_simulate_scaling_benchmark_writes_its_report(tmp_path):
    """benchmarks/simulate_scaling.py end to end on one simulator and one pair (the numbers are not judged)."""
    from astrorim import sim

    if not hasattr(sim, "simulate"):
        pytest.skip("astrorim.sim.simulate is not implemented yet")
    out = tmp_path / "simulate_scaling.json"
    result = subprocess.run([sys.executable, str(REPO / "benchmarks/simulate_scaling.py"), "--pairs", "1",
                             "--versions", "v1", "--repeats", "1", "--npix", "32", "--out", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert [r["workers"] for r in report["results"]] == [1, 2]
    assert [r["pairs"] for r in report["results"]] == [1, 2]
    assert all(r["pairs_per_s"] > 0 for r in report["results"])
    assert report["speedup_2_vs_1"] == pytest.approx(report["results"][1]["pairs_per_s"]
                                                     / report["results"][0]["pairs_per_s"], rel=1e-2)
    assert report["target_speedup"] == 1.8 and isinstance(report["meets_target"], bool)
    assert all(r["cpu_s"] > 0 and r["cores_used"] > 0 for r in report["results"])
    assert report["projected_speedup_on_2_free_cores"] == pytest.approx(2 * report["cpu_efficiency_2_vs_1"],
                                                                         rel=1e-2)
    assert set(report["seconds_per_2000_pair_shard_1_worker"]) == {"v1"}


# -- real runs on a local SLURM cluster ---------------------------------------------------------------------


def _skip_or_fail(reason: str):
    if REQUIRE_SLURM:
        pytest.fail(f"ASTRORIM_REQUIRE_SLURM is set but SLURM cannot run: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def slurm_cluster():
    reason = unavailable_reason()
    if reason:
        _skip_or_fail(reason)
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        _skip_or_fail("snakemake-executor-plugin-slurm is not installed (pip install "
                      "snakemake-executor-plugin-slurm==2.8.0)")
    cluster = LocalSlurmCluster()
    try:
        cluster.start()
    except SlurmUnavailable as err:
        cluster.stop()
        _skip_or_fail(f"the local SLURM cluster did not start: {err}")
    try:
        yield cluster
    finally:
        cluster.stop()


def slurm_jobs(cluster) -> list[tuple[str, str]]:
    """(job id, state) of every job the cluster knows (finished ones stay for MinJobAge)."""
    out = cluster.run("squeue", "--states=all", "--noheader", "--format=%i|%T", timeout=30, check=True).stdout
    return [tuple(line.split("|", 1)) for line in out.split()]


def tiny_config(tmp_path: Path) -> dict:
    """The quick study cut to two versions (v1, the simplest; v6, the most elaborate) with 1-4 pairs per shard:
    10 shards (one per phase/version/split stream) and 3 manifests, so 13 SLURM jobs.

    Each SLURM job parses the Snakefile twice (the batch script's Snakemake, then the one srun starts) before the
    simulator runs, about 10 s on a 2-core CI machine that also runs the other pytest worker: the job count is
    kept small so that the test stays well inside its time-out. The simulate rule is the same for every version.
    """
    config = yaml.safe_load((REPO / "config/quick.yaml").read_text())
    config.update(run_name="slurm_ci", data_dir=str(tmp_path / "data"), results_dir=str(tmp_path / "results"))
    phases = config["simulation"]["phases"]
    for phase, count in (("initial", 5), ("finetune", 5), ("test", 1)):
        phases[phase]["counts"] = {"v1": count, "v6": count}
    config["simulation"]["shard_size"] = 10
    return config


def test_simulate_stage_on_slurm(slurm_cluster, tmp_path):
    """The simulate stage through the SLURM executor with the project profile: every shard is a SLURM job."""
    pytest.importorskip("astrorim.sim", reason="the simulators (astrorim.sim) are not available")
    from astrorim import sim

    if not hasattr(sim, "simulate"):
        pytest.skip("astrorim.sim.simulate is not implemented yet")
    config = tiny_config(tmp_path)
    configfile = tmp_path / "config.yaml"
    configfile.write_text(yaml.safe_dump(config))
    before = {job for job, _ in slurm_jobs(slurm_cluster)}
    args = ("--workflow-profile", str(SLURM_PROFILE), *CLUSTER_ARGS, "--slurm-logdir", str(tmp_path / "slurm_logs"),
            "--configfile", str(configfile), "--until", "manifest")

    result = snakemake(*args, env=slurm_cluster.env, timeout=540)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:] + "\n" + slurm_cluster.tail_logs()

    plan = shard_plan(config)
    assert job_counts(output) == {"simulate": len(plan), "manifest": 3, "total": len(plan) + 3}
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", output)
    assert len(submitted) == len(plan) + 3, output[-3000:]
    states = dict(slurm_jobs(slurm_cluster))
    assert {states[job] for job in submitted} == {"COMPLETED"}, states
    assert not set(submitted) & before

    for spec in plan:
        shard = read_shard(Path(config["data_dir"]) / spec.relative_path())
        assert len(shard) == spec.n
        assert (shard.attrs["version"], shard.attrs["phase"], shard.attrs["split"]) == (spec.version, spec.phase,
                                                                                        spec.split)
        assert shard.attrs["start_index"] == spec.start_index and shard.attrs["seed"] == spec.seed
        assert shard.arrays["observed"].shape == (spec.n, config["npix"], config["npix"])
    for phase in ("initial", "finetune", "test"):
        manifest = (Path(config["data_dir"]) / "sims" / phase / "manifest.csv").read_text().splitlines()
        assert len(manifest) - 1 == sum(spec.phase == phase for spec in plan)

    again = snakemake("-n", *args, env=slurm_cluster.env, timeout=120)
    assert again.returncode == 0 and nothing_to_do(again.stdout + again.stderr), again.stdout[-3000:]


def test_transient_failure_is_retried_on_slurm(slurm_cluster, tmp_path):
    """A job that fails on its first attempt is seen FAILED through squeue and resubmitted (profile `retries`)."""
    (tmp_path / "Snakefile").write_text(
        "rule all:\n    input: expand('out/{i}.txt', i=range(2))\n"
        "rule flaky:\n    output: 'out/{i}.txt'\n"
        "    resources: mem_mb=200, runtime=5, try_=lambda wildcards, attempt: attempt\n"
        "    shell: 'if [ {resources.try_} = 1 ] && [ {wildcards.i} = 0 ]; then exit 3; fi; "
        "echo attempt={resources.try_} job=$SLURM_JOB_ID > {output}'\n")
    result = snakemake("--workflow-profile", str(SLURM_PROFILE), *CLUSTER_ARGS,
                       "--slurm-logdir", str(tmp_path / "slurm_logs"),
                       cwd=tmp_path, env=slurm_cluster.env, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:] + "\n" + slurm_cluster.tail_logs()
    first = (tmp_path / "out/0.txt").read_text().split()
    second = (tmp_path / "out/1.txt").read_text().split()
    assert first[0] == "attempt=2" and second[0] == "attempt=1"
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", output)
    states = dict(slurm_jobs(slurm_cluster))
    assert sorted(states[job] for job in submitted) == ["COMPLETED", "COMPLETED", "FAILED"], states
    retried_job = first[1].removeprefix("job=")
    assert retried_job in submitted and states[retried_job] == "COMPLETED"
