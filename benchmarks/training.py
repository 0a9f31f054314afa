"""Benchmark AstroRIM training throughput: samples/s of full training steps vs batch size and precision, peak memory.

    python benchmarks/training.py [--device cuda|cpu|all] [--config CONFIG] [--batch-sizes 8 16 32 64 128 256]
                                  [--precisions bf16 fp16 fp32] [--min-time-s 3] [--steps N] [--threads 2]
                                  [--out results/benchmarks/training.json]

A step is what the trainer does per batch (astrorim.train.step.train_step): per-example normalisation,
encoder + RIM forward, the loss of eq. 43-49, backward, gradient clipping, AdamW, EMA update and the
running loss sums, none of which waits for the GPU.  Batches are simulated v1 examples tiled to the batch
size.  The GPU comes first when there is one, with the paper-scale model of config/config.yaml; the CPU
times config/quick.yaml's smaller model (``--config`` sets both).

On CUDA each precision is timed: ``bf16`` (autocast), ``fp16`` (autocast + GradScaler), ``fp32`` (TF32
off, IEEE float32 as on the CPU; what training runs with amp: off) and, when asked for, ``tf32`` (float32
with TF32 matmuls and convolutions).  After ``--warmup-steps`` (cuDNN picks its kernels), steps run in
chunks, synchronising only at chunk ends, until at least ``--min-steps`` steps and ``--min-time-s``
seconds are timed.  Peak memory is ``torch.cuda.max_memory_allocated``.  A batch size that runs out of
memory ends that precision's sweep.

On the CPU each batch size runs in its own subprocess so that its peak resident memory is its own; after
one warm-up step ``--steps`` (default 3) steps are timed.  CPU time (user + system of all threads) is
reported next to wall time because the machine may be shared: samples per CPU-second is the
contention-robust figure.  Batch sizes are skipped on the CPU once one step takes longer than
``--max-step-s`` or the peak memory, extrapolated linearly in the batch size, would exceed half the
available memory.

The JSON (schema_version 2; version 1 had one configuration for all devices and no ``config`` per row)
names the hardware and is written atomically.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

from _machine import cpu_model

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

SCHEMA_VERSION = 2
DEFAULT_CONFIGS = {"cuda": REPO / "config" / "config.yaml", "cpu": REPO / "config" / "quick.yaml"}
CUDA_PRECISIONS = ("bf16", "fp16", "fp32", "tf32")


def machine_info() -> dict:
    import torch

    info = {"platform": platform.platform(), "cpu_model": cpu_model(), "cpu_count": os.cpu_count(),
            "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "load_average_1min_at_start": os.getloadavg()[0], "python": sys.version.split()[0],
            "torch": torch.__version__, "torch_cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available()}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_memory_gib"] = round(props.total_memory / 2 ** 30, 1)
        info["gpu_compute_capability"] = f"{props.major}.{props.minor}"
        info["gpu_multiprocessors"] = props.multi_processor_count
        info["gpu_count"] = torch.cuda.device_count()
        info["bf16_supported"] = torch.cuda.is_bf16_supported()
        info["cudnn"] = torch.backends.cudnn.version()
    return info


_BASE_BATCHES: dict[int, dict] = {}


def simulated_batch(npix: int, batch_size: int) -> dict:
    """``batch_size`` examples: 16 simulated v1 pairs (made once per npix), tiled."""
    import numpy as np
    import torch

    if npix not in _BASE_BATCHES:
        from astrorim.sim import simulate
        from astrorim.train.data import TRUTH_COLUMNS

        sim = simulate("v1", 16, 12345, phase="initial", split="train", npix=npix)
        _BASE_BATCHES[npix] = {"observed": sim.observed, "source": sim.source, "noise_sigma": sim.noise_sigma,
                               "params": sim.truth[list(TRUTH_COLUMNS)].to_numpy()}
    base = _BASE_BATCHES[npix]
    reps = -(-batch_size // 16)

    def tile(a):
        return torch.from_numpy(np.concatenate([np.asarray(a)] * reps)[:batch_size].astype(np.float32))

    return {k: tile(v) for k, v in base.items()}


def make_precision(device, label: str, amp: str = "auto"):
    """The :class:`astrorim.train.step.Precision` a label names ('auto': what training would use)."""
    import torch

    from astrorim.train.step import Precision, resolve_precision

    if label == "auto":
        return resolve_precision(device, amp)
    if device.type != "cuda" and label != "fp32":
        raise ValueError(f"precision {label!r} is only timed on CUDA")
    return {"bf16": Precision(device.type, torch.bfloat16, False),
            "fp16": Precision(device.type, torch.float16, True),
            "fp32": Precision(device.type, None, False),
            "tf32": Precision(device.type, None, False, tf32=True)}[label]


def time_training_steps(config: dict, device: str, batch_size: int, precision: str = "auto", *,
                        warmup_steps: int = 1, min_steps: int = 3, min_time_s: float = 0.0,
                        max_steps: int = 10_000, threads: int | None = None,
                        slow_first_step_s: float | None = None) -> dict:
    """Time ``train_step`` + EMA + running sums of ``config``'s model and training section, in this process.

    Steps run in chunks (1, 2, 4, ... steps) with one device synchronisation per chunk, until at least
    ``min_steps`` steps and ``min_time_s`` seconds are timed (at most ``max_steps``); only one when the first
    step took longer than ``slow_first_step_s``."""
    import torch

    from astrorim.model import AstroRIM
    from astrorim.train.config import TrainingConfig
    from astrorim.train.optim import EMA, make_optimizer
    from astrorim.train.run import model_config_from
    from astrorim.train.step import StepSums, train_step

    if threads:
        torch.set_num_threads(threads)
    training = TrainingConfig.from_dict(config.get("training"))
    dev = torch.device(device)
    prec = make_precision(dev, precision, training.amp)
    tf32 = prec.apply_tf32()
    torch.manual_seed(0)
    model = AstroRIM(model_config_from(config)).to(dev)
    ema = EMA(model, training.ema_decay, training.ema_warmup)
    opt = make_optimizer(model, training.initial.lr_rim, training.initial.lr_forward, training.weight_decay)
    scaler = torch.amp.GradScaler(dev.type, enabled=prec.use_scaler)
    sums = StepSums(dev)
    batch = simulated_batch(int(config["npix"]), batch_size)
    if dev.type == "cuda":
        batch = {k: v.pin_memory() for k, v in batch.items()}
    n_iter = training.n_iter or None

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def steps(k):
        for _ in range(k):
            r = train_step(model, batch, opt, scaler, prec, loss_cfg=training.loss, grad_clip=training.grad_clip,
                           n_iter=n_iter, noise="truth", device=dev)
            ema.update(model, applied=1.0 - r["skipped"])
            sums.add(r, batch_size)

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    steps(1)
    sync()
    first_step_s = time.perf_counter() - t0
    if slow_first_step_s is not None and first_step_s > slow_first_step_s:
        min_steps, min_time_s = 1, 0.0
    steps(max(0, warmup_steps - 1))
    sync()
    done, chunk, wall, cpu = 0, 1, 0.0, 0.0
    while done < min(min_steps, max_steps) or (wall < min_time_s and done < max_steps):
        k = min(chunk, max_steps - done)
        w0, c0 = time.perf_counter(), time.process_time()
        steps(k)
        sync()
        wall += time.perf_counter() - w0
        cpu += time.process_time() - c0
        done += k
        chunk *= 2
    stats = sums.read("epoch")
    out = {"device": device, "batch_size": batch_size, "precision": prec.label, **tf32,
           "steps_timed": done, "threads": torch.get_num_threads(), "warmup_step_s": first_step_s,
           "warmup_steps": warmup_steps, "step_s": wall / done, "samples_per_s": batch_size * done / wall,
           "cpu_s_per_step": cpu / done, "samples_per_cpu_s": batch_size * done / cpu if cpu > 0 else None,
           "skipped_steps": int(stats["skipped"]), "final_loss": stats["total"] / max(stats["n"], 1),
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
           "load_average_1min": os.getloadavg()[0]}
    if dev.type == "cuda":
        out["peak_cuda_allocated_mb"] = torch.cuda.max_memory_allocated() / 2 ** 20
    del model, ema, opt, scaler, batch
    gc.collect()
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    return out


def sweep_cuda(config: dict, batch_sizes: list[int], precisions: list[str], *, min_steps: int, min_time_s: float,
               warmup_steps: int, deadline: float | None = None, log=print) -> list[dict]:
    """Every (precision, batch size) on CUDA, in this process; an out-of-memory batch ends its precision's
    sweep, and nothing new starts after ``deadline`` (time.monotonic())."""
    import torch

    results = []
    for label in precisions:
        for bs in sorted(batch_sizes):
            if deadline is not None and time.monotonic() > deadline:
                results.append({"device": "cuda", "precision": label, "batch_size": bs,
                                "skipped": "benchmark deadline reached"})
                continue
            try:
                r = time_training_steps(config, "cuda", bs, label, warmup_steps=warmup_steps, min_steps=min_steps,
                                        min_time_s=min_time_s)
            except torch.cuda.OutOfMemoryError as exc:
                gc.collect()
                torch.cuda.empty_cache()
                note = f"out of memory: {str(exc).splitlines()[0]}"
                log(f"cuda {label} batch {bs}: {note}")
                results.append({"device": "cuda", "precision": label, "batch_size": bs, "error": note})
                break
            results.append(r)
            log(f"cuda {r['precision']:>15} batch {bs:4d}: {r['samples_per_s']:9.1f} samples/s, step "
                f"{r['step_s'] * 1e3:7.1f} ms ({r['steps_timed']} steps), peak {r['peak_cuda_allocated_mb']:.0f} MiB"
                + (f", {r['skipped_steps']} skipped" if r["skipped_steps"] else ""))
    return results


def sweep_cpu(config: dict, batch_sizes: list[int], *, steps: int, threads: int, max_step_s: float,
              log=print) -> list[dict]:
    """Each batch size in its own subprocess (its own peak RSS), smallest first, stopping when too slow or big."""
    results, previous = [], None
    for bs in sorted(batch_sizes):
        avail = available_memory_mb()
        if previous and avail:
            estimate = previous["peak_rss_mb"] * bs / previous["batch_size"]
            if estimate > 0.5 * avail:
                note = f"skipped: estimated peak RSS {estimate:.0f} MB > half the available {avail:.0f} MB"
                log(f"cpu batch {bs}: {note}")
                results.append({"device": "cpu", "batch_size": bs, "skipped": note})
                break
        cmd = [sys.executable, __file__, "--one", "--device", "cpu", "--batch-size", str(bs), "--steps", str(steps),
               "--threads", str(threads), "--max-step-s", str(max_step_s), "--config-json", json.dumps(config)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = proc.stderr.strip().splitlines()[-1:] or ["?"]
            log(f"cpu batch {bs}: failed ({tail[0]})")
            results.append({"device": "cpu", "batch_size": bs, "error": tail[0]})
            break  # out of memory or similar: larger batches will fail too
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(r)
        previous = r
        log(f"cpu batch {bs:4d}: {r['samples_per_s']:8.2f} samples/s, "
            f"{r['samples_per_cpu_s'] or float('nan'):.2f} samples/CPU-s, step {r['step_s']:.2f} s, "
            f"peak RSS {r['peak_rss_mb']:.0f} MB, load {r['load_average_1min']:.1f}")
        if r["step_s"] > max_step_s:
            note = f"larger batches skipped: one step took {r['step_s']:.0f} s > --max-step-s {max_step_s}"
            log(f"cpu: {note}")
            results.append({"device": "cpu", "skipped": note})
            break
    return results


def available_memory_mb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def load_yaml(path: str | os.PathLike) -> dict:
    import yaml

    return yaml.safe_load(Path(path).read_text(encoding="utf-8"))


def report(sections: dict[str, dict], results: list[dict]) -> dict:
    """The JSON document: ``sections`` maps each device timed to its {config, npix, model}."""
    first = next(iter(sections.values())) if sections else {"config": None, "npix": None, "model": {}}
    return {"benchmark": "training step throughput (astrorim.train.step.train_step + EMA update + running sums)",
            "schema_version": SCHEMA_VERSION,
            "config": first["config"], "npix": first["npix"], "model": first["model"],  # the first device's
            "configs": sections,
            "hardware": {**machine_info(), "load_average_1min_at_end": os.getloadavg()[0]},
            "results": results}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=None,
                        help="configuration whose model and training sections are timed (default: config/config.yaml "
                             "on CUDA, config/quick.yaml on the CPU)")
    parser.add_argument("--npix", type=int, default=0, help="image size (default: the configuration's npix)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 16, 32, 64, 128, 256])
    parser.add_argument("--precisions", nargs="+", choices=CUDA_PRECISIONS, default=["bf16", "fp16", "fp32"],
                        help="CUDA precisions to time (the CPU is always fp32)")
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps at least (default: 3 on the CPU, 20 on CUDA)")
    parser.add_argument("--min-time-s", type=float, default=3.0, help="CUDA: time at least this long per batch size")
    parser.add_argument("--warmup-steps", type=int, default=3, help="CUDA: untimed steps first (cuDNN autotuning)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", choices=("cpu", "cuda", "all"), default="all")
    parser.add_argument("--max-step-s", type=float, default=60.0,
                        help="on the CPU, skip larger batches once one step takes longer than this")
    parser.add_argument("--out", default=str(REPO / "results" / "benchmarks" / "training.json"))
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--config-json", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        r = time_training_steps(json.loads(args.config_json), args.device, args.batch_size, "auto",
                                min_steps=args.steps or 3, threads=args.threads, warmup_steps=1,
                                slow_first_step_s=args.max_step_s)
        print(json.dumps(r))
        return 0

    import torch

    from astrorim.io.atomic import write_text_atomic

    devices = ["cuda", "cpu"] if args.device == "all" else [args.device]  # the GPU first: it is what matters there
    if "cuda" in devices and not torch.cuda.is_available():
        if args.device == "cuda":
            raise SystemExit(f"--device cuda but torch {torch.__version__} sees no CUDA device")
        devices.remove("cuda")
    sections, results = {}, []
    for device in devices:
        path = args.config or DEFAULT_CONFIGS[device]
        config = load_yaml(path)
        if args.npix:
            config["npix"] = args.npix
        sections[device] = {"config": str(path), "npix": config["npix"], "model": config.get("model", {})}
        print(f"{device}: {path} (npix {config['npix']})", flush=True)
        if device == "cuda":
            results += sweep_cuda(config, args.batch_sizes, args.precisions, min_steps=args.steps or 20,
                                  min_time_s=args.min_time_s, warmup_steps=args.warmup_steps,
                                  log=lambda m: print(m, flush=True))
        else:
            results += sweep_cpu(config, args.batch_sizes, steps=args.steps or 3, threads=args.threads,
                                 max_step_s=args.max_step_s, log=lambda m: print(m, flush=True))
    write_text_atomic(args.out, json.dumps(report(sections, results), indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
