"""Wall time of the quick study, stage by stage, against the issues' targets.

    python benchmarks/quick_study.py [--config config/quick.yaml] [--cores 2] [--work DIR]
                                     [--out results/benchmarks/quick_study.json]

Runs the quick configuration from nothing (fresh data and results folders under ``--work``, a scratch
directory by default) as five successive Snakemake invocations, one per stage, and times each:
simulation (``--until manifest``), training (``train_all``), evaluation (``evaluate``), real lenses
(``table1``) and the paper-003 baseline (``baseline_all``).  Together they are the whole quick study
(``rule all``).  Targets: simulation <= 3 min, training <= 6 min, evaluation <= 2 min, baseline <= 4 min,
everything <= 15 min on 2 cores.  Other load on the machine slows every stage; the 1-minute load average
before and after each stage is recorded beside its time.  The JSON is written atomically.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _machine import cpu_affinity, cpu_model

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from astrorim.io.atomic import write_text_atomic  # noqa: E402

STAGES = [  # (name, snakemake targets/options, target seconds)
    ("simulate", ["--until", "manifest"], 180.0),
    ("train", ["train_all"], 360.0),
    ("evaluate", ["evaluate"], 120.0),
    ("real_lenses", ["table1"], None),
    ("baseline", ["baseline_all"], 240.0),
]
TOTAL_TARGET_S = 900.0


def run_stage(name: str, targets: list[str], config: Path, cores: int, work: Path, log_dir: Path) -> dict:
    """One Snakemake invocation on the scratch folders; raises with the log's path if it fails."""
    overrides = ["run_name=bench_quick", f"data_dir={work / 'data'}", f"results_dir={work / 'results'}"]
    # targets first: --configfile and --config take every word that follows them
    cmd = [sys.executable, "-m", "snakemake", "--cores", str(cores), *targets, "--configfile", str(config),
           "--config", *overrides]
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    log_path = log_dir / f"{name}.log"
    with open(log_path, "w") as log:
        proc = subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"stage {name} failed (exit {proc.returncode}); see {log_path}")
    return {"wall_s": round(wall, 1), "load_average_1min_before": load_before,
            "load_average_1min_after": os.getloadavg()[0], "command": " ".join(cmd[1:])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("config/quick.yaml"))
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a new temporary one)")
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks/quick_study.json"))
    args = parser.parse_args(argv)

    work = (args.work or Path(tempfile.mkdtemp(prefix="astrorim-quick-bench-"))).resolve()
    if (work / "data").exists() or (work / "results").exists():
        parser.error(f"--work {work} already holds data/ or results/: the benchmark starts from nothing")
    work.mkdir(parents=True, exist_ok=True)
    stages = {}
    for name, targets, target_s in STAGES:
        print(f"[quick_study] {name} ...", flush=True)
        stages[name] = run_stage(name, targets, args.config.resolve(), args.cores, work, work)
        stages[name]["target_s"] = target_s
        stages[name]["meets_target"] = None if target_s is None else stages[name]["wall_s"] <= target_s
        print(f"[quick_study] {name}: {stages[name]['wall_s']:.0f} s", flush=True)
    total = sum(s["wall_s"] for s in stages.values())
    report = {
        "benchmark": "quick_study",
        "config": str(args.config), "cores": args.cores,
        "machine": {"platform": platform.platform(), "cpu_model": cpu_model(), "cpu_count": os.cpu_count(),
                    "cpu_affinity": cpu_affinity(), "python": platform.python_version()},
        "stages": stages,
        "total_wall_s": round(total, 1), "total_target_s": TOTAL_TARGET_S, "meets_total_target": total <= TOTAL_TARGET_S,
        "work_dir": str(work),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out, json.dumps(report, indent=1) + "\n")
    print(f"[quick_study] total {total:.0f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
