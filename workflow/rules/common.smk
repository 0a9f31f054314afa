# Helpers shared by all rule files (paths, the simulation plan).
import glob
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from astrorim.plan import PHASES, find_shard, shard_paths  # noqa: E402

DATA = config["data_dir"]
RESULTS = config["results_dir"]
LOGS = f"logs/{config['run_name']}"
# Snakemake's per-job timings (the `benchmark:` directive), beside the job's log; "benchmark" in this project
# means only benchmarks/*.py and their results/benchmarks/*.
TIMINGS = f"{LOGS}/timings"


def manifest_paths():
    return [f"{DATA}/sims/{phase}/manifest.csv" for phase in PHASES]


def phase_shards(wildcards):
    return [str(p) for p in shard_paths(config, wildcards.phase)]


def shard_spec(wildcards):
    return find_shard(
        config,
        wildcards.phase,
        wildcards.version,
        wildcards.split,
        int(wildcards.shard),
    )


def store_diagnostics(wildcards):
    """simulation.phases.<phase>.store_diagnostics (bool or list of splits) overrides the global key."""
    value = config["simulation"]["phases"][wildcards.phase].get("store_diagnostics")
    if value is None:
        return bool(config["simulation"].get("store_diagnostics", False))
    return wildcards.split in value if isinstance(value, list) else bool(value)


def baseline_astrorim_checkpoint(wildcards):
    """The AstroRIM checkpoint the baseline comparison runs: baseline.compare.checkpoint, else
    evaluation.checkpoint, else the finetuned best."""
    return (
        config.get("baseline", {}).get("compare", {}).get("checkpoint")
        or config.get("evaluation", {}).get("checkpoint")
        or f"{RESULTS}/models/finetune/best.pt"
    )


def study_names(table):
    """A wildcard constraint matching exactly the study names of a table in studies.smk."""
    import re

    return "|".join(re.escape(name) for name in table)


PHI_BIAS_SCRIPT = "studies/baseline_phi_bias_summary.py"


def phi_bias_fits(wildcards):
    """The committed fits the phi-bias summary reads (its MEASUREMENTS and MISFIT_SCAN), loaded only when the
    rule is wanted (the script imports matplotlib)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("phi_bias_summary", PHI_BIAS_SCRIPT)
    summary = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(summary)
    return [m.path for m in summary.MEASUREMENTS + summary.MISFIT_SCAN]
