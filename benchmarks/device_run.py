"""Everything a GPU machine should measure, in one command, within a deadline (docs/device-run.md).

    python benchmarks/device_run.py [--deadline-s 480] [--work WORK] [--results-dir results/benchmarks]
    python benchmarks/device_run.py --smoke          # the same code path on the CPU at toy sizes (< ~60 s)

Stages, in order, each with its own time budget and each recorded (with its error, if it fails) before the
next begins:

1. hardware: GPU name, memory and compute capability, torch / CUDA / cuDNN versions, CPU count (and
   ``nvidia-smi``'s line when it answers);
2. simulate: training pairs of all six simulator versions, in parallel on every core (one process per core,
   one shard per task, the workflow's simulator and shard format; ``config/config.yaml``'s seeds, so the
   pairs are the paper-scale dataset's first ones); shards still running at the stage's deadline are
   dropped, the finished ones make the manifest;
3. step_sweep: joint training steps (``benchmarks/training.py``) of the paper-scale model at batch 8-256 in
   bf16, fp16 + GradScaler and fp32 (TF32 off);
4. inference: ``benchmarks/inference.py`` at batch 1, 64 and 256 on the GPU (1 and 64 on the CPU);
5. cuda_tests: ``pytest -m cuda`` (tests/test_train_cuda.py and the other CUDA-marked tests);
6. encoder_pretraining: ``astrorim.train.pretrain`` on the simulated data when this revision has it, else
   recorded as not available;
7. training: the joint training (``astrorim.train.run.train_phase``, device ``cuda``: no CPU fallback) on the
   simulated data, DataLoader workers from the CPU count and a checkpoint interval below the remaining
   time, stopped by the deadline through the loop's SIGTERM path (a resumable checkpoint is written).

Outputs (JSON written atomically after every stage, so a run killed at its limit keeps what it measured):
``<results-dir>/training.json`` (benchmarks/training.py's schema, version 2, with the hardware named),
``<results-dir>/inference.json`` (benchmarks/inference.py's schema), ``<results-dir>/device_run.json``
(every stage: timings, counts, errors), and under ``--work`` the data, the training outputs and logs.
Where the environment variable OUT names a folder (the device tool's), the JSON files, the training
checkpoint and its EMA export and a tarball of the logs are copied there too (at most 8 files, none over
16 MiB).
"""

from __future__ import annotations

import os

# One thread per simulation worker and for every library, before numpy/torch load; torch's own thread count
# is set per stage.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import multiprocessing  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tarfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

BENCHMARKS = Path(__file__).resolve().parent
REPO = BENCHMARKS.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(BENCHMARKS))

SCHEMA_VERSION = 1
VERSIONS = ("v1", "v2", "v3", "v4", "v5", "v6")
MAX_OUT_FILE_BYTES = 16 * 2 ** 20


@dataclass(frozen=True)
class Plan:
    """Sizes and per-stage budgets [s] of one run (the full GPU run, or the CPU smoke run)."""

    device: str
    config: Path
    npix: int
    model: dict | None                 # None: the configuration's model section
    versions: tuple[str, ...]
    train_pairs_per_version: int
    val_pairs_per_version: int
    shard_size: int
    step_batch_sizes: tuple[int, ...]
    step_precisions: tuple[str, ...]
    step_min_time_s: float
    step_warmup_steps: int
    inference_batches: dict
    inference_n_iter: int | None       # None: the model's
    test_paths: tuple[str, ...]
    train_batch_size: int
    budgets: dict                      # stage -> seconds (training, when absent: whatever is left)
    reserve_s: float                   # kept back at the end for writing the outputs


def full_plan(config: Path) -> Plan:
    return Plan(device="cuda", config=config, npix=96, model=None, versions=VERSIONS,
                train_pairs_per_version=6000, val_pairs_per_version=200, shard_size=500,
                step_batch_sizes=(8, 16, 32, 64, 128, 256), step_precisions=("bf16", "fp16", "fp32"),
                step_min_time_s=1.5, step_warmup_steps=3,
                inference_batches={"cuda": (1, 64, 256), "cpu": (1, 64)}, inference_n_iter=None,
                test_paths=("tests",), train_batch_size=64,
                budgets={"simulate": 100.0, "step_sweep": 95.0, "inference": 40.0, "cuda_tests": 100.0,
                         "encoder_pretraining": 70.0},
                reserve_s=20.0)


def smoke_plan(config: Path) -> Plan:
    from astrorim.train.testing import TINY_MODEL

    return Plan(device="cpu", config=config, npix=32, model=dict(TINY_MODEL), versions=("v1", "v2"),
                train_pairs_per_version=16, val_pairs_per_version=8, shard_size=8,
                step_batch_sizes=(2, 4), step_precisions=("fp32",), step_min_time_s=0.0, step_warmup_steps=1,
                inference_batches={"cpu": (1, 4)}, inference_n_iter=2,
                test_paths=("tests/test_train_cuda.py",), train_batch_size=4,
                budgets={"simulate": 40.0, "step_sweep": 20.0, "inference": 15.0, "cuda_tests": 40.0,
                         "encoder_pretraining": 10.0, "training": 8.0},
                reserve_s=2.0)


class Clock:
    """The run's deadline (time.monotonic())."""

    def __init__(self, deadline_s: float):
        self.start = time.monotonic()
        self.end = self.start + deadline_s

    def left(self) -> float:
        return self.end - time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.start


log = logging.getLogger("device_run")


# ----------------------------------------------------------------------------------------------- hardware
def hardware() -> dict:
    """What the numbers were measured on."""
    from training import machine_info

    info = machine_info()
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version,clocks.max.sm",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
        if smi.returncode == 0:
            info["nvidia_smi"] = smi.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    return info


# ----------------------------------------------------------------------------------------------- simulate
def _simulate_shard(job: dict) -> dict:
    """Worker: simulate one shard and write it (atomically) in the workflow's format; an error is returned,
    not raised, so that one bad shard does not lose the others."""
    t0 = time.perf_counter()
    try:
        from astrorim.io.shards import write_shard
        from astrorim.sim import simulate

        batch = simulate(job["version"], job["n"], job["seed"], phase=job["phase"], split=job["split"],
                         start_index=job["start_index"], npix=job["npix"])
        write_shard(job["path"], batch, {k: job[k] for k in ("version", "phase", "split", "seed", "start_index")})
    except Exception as exc:  # noqa: BLE001 - reported by the parent
        return {**job, "error": f"{type(exc).__name__}: {exc}", "seconds": time.perf_counter() - t0}
    return {**job, "seconds": time.perf_counter() - t0}


def shard_jobs(root: Path, plan: Plan, seed: int) -> list[dict]:
    """Validation shards first, then training shards round-robin over the versions (so a stage cut short by
    its budget still holds every version)."""
    jobs = []
    for split, per_version in (("val", plan.val_pairs_per_version), ("train", plan.train_pairs_per_version)):
        starts = list(range(0, per_version, plan.shard_size))
        for i, start in enumerate(starts):
            for version in plan.versions:
                n = min(plan.shard_size, per_version - start)
                path = root / "sims" / "initial" / version / split / f"shard-{i:05d}.h5"
                jobs.append({"version": version, "phase": "initial", "split": split, "seed": seed,
                             "start_index": start, "n": n, "npix": plan.npix, "path": str(path)})
    return jobs


def simulate_training_data(root: Path, plan: Plan, seed: int, processes: int, budget_s: float) -> dict:
    """Simulate :func:`shard_jobs` on ``processes`` worker processes until done or ``budget_s`` is spent;
    returns the stage record with the manifest of the finished shards."""
    from astrorim.manifest import build_manifest, write_manifest

    jobs = shard_jobs(root, plan, seed)
    existing = [j for j in jobs if Path(j["path"]).exists()]  # a rerun in the same --work keeps its shards
    todo = [j for j in jobs if not Path(j["path"]).exists()]
    done, failed, started = list(existing), [], time.monotonic()
    # spawn, not fork: the parent may already hold CUDA and torch threads; workers need neither.
    ctx = multiprocessing.get_context("spawn")
    pool = ctx.Pool(processes=processes)
    try:
        pending = pool.imap_unordered(_simulate_shard, todo)
        for _ in range(len(todo)):
            left = budget_s - (time.monotonic() - started)
            if left <= 0:
                break
            try:
                result = pending.next(timeout=left)
            except multiprocessing.TimeoutError:
                break
            (failed if "error" in result else done).append(result)
    finally:
        pool.terminate()
        pool.join()
    wall = time.monotonic() - started
    made = [d for d in done if d not in existing]
    by_split = {s: [d for d in done if d["split"] == s] for s in ("train", "val")}
    if not by_split["train"] or not by_split["val"]:
        raise RuntimeError(f"simulation produced no complete {'train' if not by_split['train'] else 'val'} shard "
                           f"within {budget_s:.0f} s ({len(failed)} failed"
                           + (f", e.g. {failed[0]['error']})" if failed else ")"))
    manifest = root / "sims" / "initial" / "manifest.csv"
    write_manifest(build_manifest(sorted(d["path"] for d in done)), manifest)
    pairs_made = sum(d["n"] for d in made)
    return {"manifest": str(manifest), "processes": processes, "wall_s": wall, "npix": plan.npix,
            "shards_planned": len(jobs), "shards_done": len(done), "shards_reused": len(existing),
            "train_pairs": sum(d["n"] for d in by_split["train"]), "val_pairs": sum(d["n"] for d in by_split["val"]),
            "pairs_simulated_now": pairs_made,
            "pairs_per_s": pairs_made / wall if wall > 0 and pairs_made else None,
            "ms_per_pair_per_process": (1e3 * sum(d["seconds"] for d in made) / pairs_made) if pairs_made else None,
            "complete": len(done) == len(jobs), "shards_failed": len(failed),
            "first_error": failed[0]["error"] if failed else None}


# ----------------------------------------------------------------------------------------------- step sweep
def load_config(plan: Plan) -> dict:
    import yaml

    config = yaml.safe_load(plan.config.read_text(encoding="utf-8"))
    config["npix"] = plan.npix
    if plan.model is not None:
        config["model"] = dict(plan.model)
    return config


def step_sweep(config: dict, plan: Plan, budget_s: float) -> list[dict]:
    from training import sweep_cuda, time_training_steps

    if plan.device == "cuda":
        return sweep_cuda(config, list(plan.step_batch_sizes), list(plan.step_precisions),
                          min_steps=10, min_time_s=plan.step_min_time_s, warmup_steps=plan.step_warmup_steps,
                          deadline=time.monotonic() + budget_s, log=log.info)
    results = []
    for bs in plan.step_batch_sizes:  # the CPU smoke path: in-process, fp32
        r = time_training_steps(config, "cpu", bs, "fp32", warmup_steps=plan.step_warmup_steps, min_steps=2)
        log.info("cpu batch %d: %.1f samples/s", bs, r["samples_per_s"])
        results.append(r)
    return results


# ----------------------------------------------------------------------------------------------- inference
def inference_benchmark(config: dict, plan: Plan) -> dict:
    import torch
    from inference import bench_device, report_header

    from astrorim.model import AstroRIM
    from astrorim.train.run import model_config_from

    torch.manual_seed(0)
    model = AstroRIM(model_config_from(config))
    n_iter = plan.inference_n_iter or model.config.n_iter
    threads = os.cpu_count() or 1
    report = report_header(model, None, n_iter, threads)
    report["schema_version"] = 2  # version 1 had no hardware section
    for device, batches in plan.inference_batches.items():
        torch.set_num_threads(threads if device == "cpu" else 1)
        report["results"][device] = bench_device(model, torch.device(device), 3, n_iter,
                                                 threads if device == "cpu" else 1, tuple(batches))
        for key, value in report["results"][device].items():
            if key.startswith("batch_"):
                log.info("inference %s %s: %.2f ms/obs", device, key, value["wall_ms_per_obs_median"])
    return report


# ----------------------------------------------------------------------------------------------- tests
def cuda_tests(plan: Plan, budget_s: float, log_path: Path) -> dict:
    """``pytest -m cuda`` in a subprocess; its output goes to ``log_path``."""
    # A test module that cannot be imported there (one needing snakemake, say) must not stop the others.
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "cuda", "-rfEs",
           "--continue-on-collection-errors", *plan.test_paths]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    t0 = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=max(budget_s, 5.0))
        output, code = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as exc:
        output = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        code = "timeout"
    log_path.write_text(output, encoding="utf-8")
    outcome = re.compile(r"(\d+) (passed|failed|skipped|errors?|deselected|xfailed|xpassed)")
    summary = [line for line in output.strip().splitlines() if outcome.search(line)][-1:]
    counts = {word.rstrip("s") if word.startswith("error") else word: int(n)
              for n, word in outcome.findall(summary[0] if summary else "")}
    return {"command": " ".join(cmd[1:]), "exit_code": code, "wall_s": time.monotonic() - t0,
            "summary": summary[0] if summary else None, "counts": counts,
            "failures": [line for line in output.splitlines() if line.startswith(("FAILED", "ERROR"))][:20]}


# ----------------------------------------------------------------------------------------------- pre-training
def time_encoder_pretraining(data_dir: Path, manifest: Path, config: dict, device: str, budget_s: float,
                             out_dir: Path) -> dict:
    """Time the supervised encoder pre-training (``astrorim.train.pretrain``, issue 23 item 2) on the
    simulated data, when this revision has it.

    Merge point: this calls ``pretrain_encoder(config, out_dir=, manifests={'initial': manifest}, device=)``
    with ``config['pretrain']['deadline_s']`` set to the budget; a revision whose interface differs records
    the error here instead of a timing.
    """
    if importlib.util.find_spec("astrorim.train.pretrain") is None:
        return {"status": "not available in this revision (no astrorim.train.pretrain)"}
    from astrorim.train import pretrain

    if not hasattr(pretrain, "pretrain_encoder"):
        return {"status": "astrorim.train.pretrain has no pretrain_encoder(); wire this stage at merge"}
    section = {**(config.get("pretrain") or {}), "deadline_s": max(1.0, budget_s)}
    t0 = time.monotonic()
    summary = pretrain.pretrain_encoder({**config, "pretrain": section}, out_dir=out_dir,
                                        manifests={"initial": manifest}, device=device)
    wall = time.monotonic() - t0
    return {"status": "timed", "wall_s": wall, "data_dir": str(data_dir), "out_dir": str(out_dir),
            "summary": summary}


# ----------------------------------------------------------------------------------------------- training
def operational_settings(cpu_count: int, seconds_left: float) -> dict:
    """DataLoader workers from the CPU count (the main process keeps one core, the simulator may still hold
    none by then) and a mid-epoch checkpoint interval well below the time left."""
    workers = max(1, min(12, cpu_count - 2)) if cpu_count >= 3 else 0
    every_s = float(min(600.0, max(10.0, seconds_left / 4.0)))
    return {"num_workers": workers, "checkpoint_every_s": every_s}


def train_until_deadline(config: dict, plan: Plan, manifest: Path, out_dir: Path, seconds: float) -> dict:
    """Joint training from scratch on the simulated data; stopped after ``seconds`` by the loop's own
    SIGTERM path (finish the batch, write resume/last.pt), so what it leaves can be resumed."""
    import torch

    from astrorim.train.loop import StopFlag, TrainingInterrupted
    from astrorim.train.run import configure_logging, train_phase

    configure_logging()
    # The main process only feeds the GPU (workers read the shards); on the CPU one thread (shared machines).
    torch.set_num_threads(min(4, os.cpu_count() or 1) if plan.device == "cuda" else 1)
    training = dict(config.get("training") or {})
    training.update(operational_settings(os.cpu_count() or 1, seconds))
    training.update(device=plan.device, batch_size=plan.train_batch_size,
                    initial={**(training.get("initial") or {}), "epochs": 1000}, log_every_steps=10)
    config = {**config, "training": training}
    flag = StopFlag()

    def stop():
        flag.requested, flag.signal_name = True, "the device_run deadline"

    timer = threading.Timer(max(1.0, seconds), stop)
    timer.daemon = True
    t0 = time.monotonic()
    timer.start()
    try:
        summary = train_phase(config, "initial", out_dir=out_dir, manifest=manifest, stop_flag=flag, progress=False)
        stopped = "finished"
    except TrainingInterrupted as exc:
        summary, stopped = None, str(exc)
    finally:
        timer.cancel()
    wall = time.monotonic() - t0
    record = {"out_dir": str(out_dir), "wall_s": wall, "stopped": stopped, "settings": {
        k: training[k] for k in ("device", "batch_size", "num_workers", "checkpoint_every_s", "log_every_steps")}}
    state = out_dir / "resume" / "last.pt"
    if not state.exists():
        state = out_dir / "last.pt"
    if state.exists():
        from astrorim.model.checkpoint import read_checkpoint

        ckpt = read_checkpoint(state)
        record.update(checkpoint=str(state), global_step=int(ckpt["global_step"]), epoch=int(ckpt["epoch"]),
                      batch_in_epoch=int(ckpt["batch_in_epoch"]), config_hash=ckpt["config_hash"],
                      samples_seen=int(ckpt["global_step"]) * plan.train_batch_size,
                      precision=(ckpt.get("meta") or {}).get("precision"))
        record["samples_per_s_overall"] = record["samples_seen"] / wall if wall > 0 else None
    steps = out_dir / "resume" / "steps.csv"
    if not steps.exists():
        steps = out_dir / "steps.csv"
    if steps.exists():
        import pandas as pd

        table = pd.read_csv(steps)
        if len(table):
            record["steps_csv"] = str(steps)
            record["last_logged"] = {k: (v.item() if hasattr(v, "item") else v) for k, v in table.iloc[-1].items()}
    if summary is not None:
        record["summary"] = summary
    return record


# ----------------------------------------------------------------------------------------------- outputs
def write_json(path: Path, document: dict) -> None:
    from astrorim.io.atomic import write_text_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(_clean(document), indent=2) + "\n")


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def copy_to_out(paths: list[Path], out: Path, notes: list[str]) -> None:
    """Copy files into the device tool's $OUT (flat, atomically: temp name, then rename)."""
    out.mkdir(parents=True, exist_ok=True)
    for path in paths:
        if not path.exists():
            continue
        if path.stat().st_size > MAX_OUT_FILE_BYTES:
            notes.append(f"{path.name}: {path.stat().st_size / 2 ** 20:.1f} MiB, over the 16 MiB $OUT limit: not copied")
            continue
        tmp = out / f".{path.name}.partial"
        shutil.copyfile(path, tmp)
        os.replace(tmp, out / path.name)


def log_tarball(work: Path, target: Path) -> Path:
    """The run's small text outputs (logs, steps.csv, metrics.csv, summaries) in one .tar.gz."""
    names = [p for p in sorted(work.rglob("*")) if p.is_file() and p.suffix in (".log", ".csv", ".json", ".txt")
             and "sims" not in p.parts]
    tmp = target.with_name(target.name + ".partial")
    with tarfile.open(tmp, "w:gz") as tar:
        for p in names:
            tar.add(p, arcname=str(p.relative_to(work)))
    os.replace(tmp, target)
    return target


# ----------------------------------------------------------------------------------------------- main
def run(args) -> dict:
    import torch

    plan = smoke_plan(args.config) if args.smoke else full_plan(args.config)
    clock = Clock(args.deadline_s)
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    results_dir = args.results_dir.resolve()
    out = Path(os.environ["OUT"]) if os.environ.get("OUT") else None
    handler = logging.FileHandler(work / "device_run.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    log.addHandler(handler)

    if plan.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"device_run needs a CUDA GPU: torch {torch.__version__} (CUDA build {torch.version.cuda}) "
                         f"sees none. On the CPU, run with --smoke.")
    config = load_config(plan)
    record = {"schema_version": SCHEMA_VERSION, "mode": "smoke" if args.smoke else "full",
              "deadline_s": args.deadline_s, "config": str(plan.config), "npix": plan.npix,
              "work": str(work), "stages": {}}
    training_doc: dict = {}
    inference_doc: dict | None = None
    out_notes: list[str] = []

    def save():
        record["elapsed_s"] = clock.elapsed()
        write_json(results_dir / "device_run.json", record)
        files = [results_dir / "device_run.json"]
        if training_doc:
            write_json(results_dir / "training.json", training_doc)
            files.append(results_dir / "training.json")
        if inference_doc is not None:
            write_json(results_dir / "inference.json", inference_doc)
            files.append(results_dir / "inference.json")
        if out is not None:
            copy_to_out(files, out, out_notes)

    def stage(name: str, fn, budget: float | None = None):
        left = clock.left() - plan.reserve_s
        if left <= 0:
            record["stages"][name] = {"status": "skipped: the deadline was reached"}
            log.info("%s: skipped (deadline)", name)
            save()
            return None
        budget = min(budget, left) if budget is not None else left
        log.info("%s: starting (budget %.0f s, %.0f s left)", name, budget, clock.left())
        t0 = time.monotonic()
        try:
            value = fn(budget)
            status = "ok"
        except Exception as exc:  # noqa: BLE001 - recorded; the next stages still run
            value, status = None, f"error: {type(exc).__name__}: {exc}"
            (work / f"{name}.traceback.txt").write_text(traceback.format_exc(), encoding="utf-8")
            log.info("%s: %s", name, status)
        record["stages"][name] = {"status": status, "wall_s": time.monotonic() - t0, "budget_s": budget}
        log.info("%s: %s in %.1f s", name, status, time.monotonic() - t0)
        save()
        return value

    hw = stage("hardware", lambda b: hardware())
    record["hardware"] = hw
    log.info("hardware: %s", json.dumps(hw))

    processes = max(1, (os.cpu_count() or 1) if plan.device == "cuda" else min(2, os.cpu_count() or 1))
    seed = int(config["simulation"]["phases"]["initial"]["seed"]) if "simulation" in config else 1001
    sim = stage("simulate", lambda b: simulate_training_data(work / "data", plan, seed, processes, b),
                plan.budgets["simulate"])
    record["simulation"] = sim

    training_doc.update(_training_doc_base(plan, config))

    def sweep(budget):
        rows = step_sweep(config, plan, budget)
        training_doc["results"] = rows
        return rows

    stage("step_sweep", sweep, plan.budgets["step_sweep"])

    def infer(budget):
        nonlocal inference_doc
        inference_doc = inference_benchmark(config, plan)
        inference_doc["hardware"] = hw
        return True

    stage("inference", infer, plan.budgets["inference"])
    record["cuda_tests"] = stage("cuda_tests", lambda b: cuda_tests(plan, b, work / "cuda_tests.log"),
                                 plan.budgets["cuda_tests"])
    tests = record["cuda_tests"] or {}
    counts = tests.get("counts", {})
    if counts.get("failed") or counts.get("error") or tests.get("exit_code") == "timeout":
        # the stage ran, but failing tests must show in the stage list and the exit status, not only in the log
        record["stages"]["cuda_tests"]["status"] = f"error: {tests.get('summary') or tests.get('exit_code')}"
        save()
    if sim is not None:
        manifest = Path(sim["manifest"])
        record["encoder_pretraining"] = stage(
            "encoder_pretraining",
            lambda b: time_encoder_pretraining(work / "data", manifest, config, plan.device, b, work / "pretrain"),
            plan.budgets["encoder_pretraining"])
        training_doc["encoder_pretraining"] = record["encoder_pretraining"]
        out_dir = work / "models" / "initial"
        record["training_run"] = stage(
            "training", lambda b: train_until_deadline(config, plan, manifest, out_dir, b),
            plan.budgets.get("training"))
        training_doc["training_run"] = record["training_run"]
    else:
        record["stages"]["encoder_pretraining"] = record["stages"]["training"] = {
            "status": "skipped: no simulated data"}
    training_doc["hardware"] = {**(hw or {}), "load_average_1min_at_end": os.getloadavg()[0]}
    training_doc["device_run"] = {k: record[k] for k in ("mode", "deadline_s", "stages")}
    save()

    if out is not None:
        files = [log_tarball(work, work / "device_run_logs.tar.gz")]
        pretrained = work / "pretrain" / "encoder.pt"
        if pretrained.is_file():
            # held-out accuracy of the GPU-pretrained encoder is measured afterwards on the CPU machine
            files.append(pretrained)
        run_record = record.get("training_run") or {}
        if run_record.get("checkpoint"):
            state = Path(run_record["checkpoint"])
            files.append(state)
            try:
                from astrorim.train.export import export_ema

                files.append(export_ema(state, work / "model_ema.pt"))
            except Exception as exc:  # noqa: BLE001
                out_notes.append(f"EMA export failed: {exc}")
        copy_to_out(files, out, out_notes)
        record["out_files"] = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
        record["out_notes"] = out_notes
        save()
    return record


def _training_doc_base(plan: Plan, config: dict) -> dict:
    from training import SCHEMA_VERSION as TRAINING_SCHEMA

    return {"benchmark": "training step throughput (astrorim.train.step.train_step + EMA update + running sums)",
            "schema_version": TRAINING_SCHEMA, "produced_by": "benchmarks/device_run.py",
            "config": str(plan.config), "npix": plan.npix, "model": config.get("model", {}),
            "configs": {plan.device: {"config": str(plan.config), "npix": plan.npix, "model": config.get("model", {})}},
            "results": []}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deadline-s", type=float, default=None,
                        help="stop everything after this many seconds (default 480; --smoke: 150, of which it "
                             "needs ~50)")
    parser.add_argument("--smoke", action="store_true", help="the same stages on the CPU at toy sizes")
    parser.add_argument("--config", type=Path, default=REPO / "config" / "config.yaml",
                        help="configuration whose model and training sections are used (default: paper scale)")
    parser.add_argument("--work", type=Path, default=None,
                        help="data, training outputs and logs (default: device_run_work/ in the repository; "
                             "--smoke: a new temporary folder)")
    parser.add_argument("--results-dir", type=Path, default=None,
                        help="where training.json, inference.json and device_run.json go (default "
                             "results/benchmarks; --smoke: <work>/results)")
    args = parser.parse_args(argv)
    if args.deadline_s is None:
        args.deadline_s = 150.0 if args.smoke else 480.0
    if args.work is None:
        import tempfile

        args.work = Path(tempfile.mkdtemp(prefix="device-run-smoke-")) if args.smoke else REPO / "device_run_work"
    if args.results_dir is None:
        args.results_dir = args.work / "results" if args.smoke else REPO / "results" / "benchmarks"
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S",
                        stream=sys.stdout)
    record = run(args)
    failed = [name for name, s in record["stages"].items() if str(s.get("status", "")).startswith("error")]
    print(f"device_run: {len(record['stages'])} stages in {record['elapsed_s']:.0f} s; "
          f"{'errors in ' + ', '.join(failed) if failed else 'no stage failed'}; results in {args.results_dir}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
