"""Benchmark AstroRIM training throughput: samples/s of full training steps vs batch size, peak memory.

    python benchmarks/training.py [--config config/quick.yaml] [--batch-sizes 8 16 32 64 128 256]
                                  [--steps 3] [--threads 2] [--device cpu|cuda|all]
                                  [--out results/benchmarks/training.json]

A step is what the trainer does per batch (astrorim.train.step.train_step): per-example normalisation,
encoder + RIM forward, the loss of eq. 43-49, backward, gradient clipping, AdamW, EMA update.  Batches
are simulated v1 examples (``--npix``), tiled to the batch size.  Each (device, batch size) runs in its
own subprocess so that the peak resident memory (CPU) or peak allocated memory (CUDA) is its own; after
one warm-up step ``--steps`` steps are timed.  CPU time (user + system of all threads) is reported next
to wall time because the machine may be shared: samples per CPU-second is the contention-robust figure.
Batch sizes are skipped on the CPU once one step takes longer than ``--max-step-s`` or the peak memory,
extrapolated linearly in the batch size, would exceed half the available memory.  The JSON names the
hardware and is written atomically.
"""

from __future__ import annotations

import argparse
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




def machine_info() -> dict:
    import torch

    info = {"platform": platform.platform(), "cpu_model": cpu_model(), "cpu_count": os.cpu_count(),
            "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "load_average_1min_at_start": os.getloadavg()[0], "python": sys.version.split()[0],
            "torch": torch.__version__, "cuda_available": torch.cuda.is_available()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2 ** 30, 1)
        info["bf16_supported"] = torch.cuda.is_bf16_supported()
    return info


def _batch(npix: int, batch_size: int):
    import numpy as np
    import torch

    from astrorim.sim import simulate
    from astrorim.train.data import TRUTH_COLUMNS

    sim = simulate("v1", 16, 12345, phase="initial", split="train", npix=npix)
    reps = -(-batch_size // 16)

    def tile(a):
        return torch.from_numpy(np.concatenate([np.asarray(a)] * reps)[:batch_size].astype(np.float32))

    return {"observed": tile(sim.observed), "source": tile(sim.source), "noise_sigma": tile(sim.noise_sigma),
            "params": tile(sim.truth[list(TRUTH_COLUMNS)].to_numpy())}


def available_memory_mb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def run_one(args) -> dict:
    """One (device, batch size) measurement, in this process."""
    import torch

    from astrorim.model import AstroRIM
    from astrorim.train.config import TrainingConfig
    from astrorim.train.optim import EMA, make_optimizer
    from astrorim.train.run import model_config_from
    from astrorim.train.step import resolve_precision, train_step

    torch.set_num_threads(args.threads)
    config = json.loads(args.config_json)
    training = TrainingConfig.from_dict(config.get("training"))
    device = torch.device(args.device)
    precision = resolve_precision(device, training.amp)
    torch.manual_seed(0)
    model = AstroRIM(model_config_from(config)).to(device)
    ema = EMA(model, training.ema_decay, training.ema_warmup)
    opt = make_optimizer(model, training.initial.lr_rim, training.initial.lr_forward, training.weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=precision.use_scaler)
    batch = _batch(config["npix"], args.batch_size)
    n_iter = training.n_iter or None

    def step():
        train_step(model, batch, opt, scaler, precision, loss_cfg=training.loss, grad_clip=training.grad_clip,
                   n_iter=n_iter, noise="truth", device=device)
        ema.update(model)
        if device.type == "cuda":
            torch.cuda.synchronize()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    step()
    warmup_s = time.perf_counter() - t0
    steps = args.steps if warmup_s < args.max_step_s else 1
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    out = {"device": args.device, "batch_size": args.batch_size, "steps_timed": steps, "threads": args.threads,
           "precision": precision.label, "warmup_step_s": warmup_s, "step_s": wall / steps,
           "samples_per_s": args.batch_size * steps / wall, "cpu_s_per_step": cpu / steps,
           "samples_per_cpu_s": args.batch_size * steps / cpu if cpu > 0 else None,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
           "load_average_1min": os.getloadavg()[0]}
    if device.type == "cuda":
        out["peak_cuda_allocated_mb"] = torch.cuda.max_memory_allocated() / 2 ** 20
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO / "config" / "quick.yaml"),
                        help="configuration whose model and training sections are benchmarked")
    parser.add_argument("--npix", type=int, default=0, help="image size (default: the configuration's npix)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 16, 32, 64, 128, 256])
    parser.add_argument("--steps", type=int, default=3)
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
        print(json.dumps(run_one(args)))
        return 0

    import torch
    import yaml

    from astrorim.io.atomic import write_text_atomic

    config = yaml.safe_load(Path(args.config).read_text())
    if args.npix:
        config["npix"] = args.npix
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    if "cuda" in devices and not torch.cuda.is_available():
        if args.device == "cuda":
            raise SystemExit("--device cuda but torch sees no CUDA device")
        devices.remove("cuda")
    results = []
    for device in devices:
        previous = None
        for bs in sorted(args.batch_sizes):
            avail = available_memory_mb()
            if device == "cpu" and previous and avail:
                estimate = previous["peak_rss_mb"] * bs / previous["batch_size"]
                if estimate > 0.5 * avail:
                    note = f"skipped: estimated peak RSS {estimate:.0f} MB > half the available {avail:.0f} MB"
                    print(f"cpu batch {bs}: {note}")
                    results.append({"device": device, "batch_size": bs, "skipped": note})
                    break
            cmd = [sys.executable, __file__, "--one", "--device", device, "--batch-size", str(bs),
                   "--steps", str(args.steps), "--threads", str(args.threads), "--max-step-s", str(args.max_step_s),
                   "--config-json", json.dumps(config)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                tail = proc.stderr.strip().splitlines()[-1:] or ["?"]
                print(f"{device} batch {bs}: failed ({tail[0]})", flush=True)
                results.append({"device": device, "batch_size": bs, "error": tail[0]})
                break  # out of memory or similar: larger batches will fail too
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            results.append(r)
            previous = r
            print(f"{device} batch {bs:4d}: {r['samples_per_s']:8.2f} samples/s, "
                  f"{r['samples_per_cpu_s'] or float('nan'):.2f} samples/CPU-s, step {r['step_s']:.2f} s, "
                  f"peak RSS {r['peak_rss_mb']:.0f} MB, load {r['load_average_1min']:.1f}", flush=True)
            if device == "cpu" and r["step_s"] > args.max_step_s:
                note = f"larger batches skipped: one step took {r['step_s']:.0f} s > --max-step-s {args.max_step_s}"
                print(f"cpu: {note}")
                results.append({"device": device, "skipped": note})
                break
    report = {"benchmark": "training step throughput (astrorim.train.step.train_step + EMA update)",
              "config": str(args.config), "npix": config["npix"], "model": config.get("model", {}),
              "hardware": {**machine_info(), "load_average_1min_at_end": os.getloadavg()[0]},
              "results": results}
    write_text_atomic(args.out, json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
