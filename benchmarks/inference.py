"""Inference speed of AstroRIM: milliseconds per 96 x 96 observation, 10 RIM iterations.

    python benchmarks/inference.py [--checkpoint CKPT] [--repeats 5] [--out results/benchmarks/inference.json]

Times ``astrorim.inference.reconstruct`` (normalisation, encoder, operator, RIM, model image, copies
back to numpy) for batch 1 and batch 64, on CPU with torch threads = available cores, and on CUDA
when present; plus one raw ``model(y)`` call on 64 observations at once.  Reports the median and
the minimum over repeats of wall-clock time and, on CPU, process CPU time divided by the thread
count (a contention-robust estimate of the uncontended wall time), with the load average, and the
same with one thread, beside
the paper's figures (300 ms per observation on an i7-12700H CPU, 50-100 ms on GPU).  Timings do not
depend on the weights, so an untrained default model is used unless a checkpoint is given.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from astrorim.inference import reconstruct
from astrorim.io.atomic import write_text_atomic
from astrorim.model import AstroRIM, count_parameters
from astrorim.model.checkpoint import load_model

PAPER = {"cpu_ms_per_obs": 300.0, "cpu": "Intel i7-12700H, batch 1",
         "gpu_ms_per_obs": [50.0, 100.0], "gpu": "unspecified GPU/batch"}


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _observations(n: int, npix: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:npix, :npix] - (npix - 1) / 2
    ring = np.exp(-0.5 * ((np.hypot(xx, yy) - npix / 4) / 2.0) ** 2)
    return (100.0 * ring + rng.normal(0.0, 1.0, (n, npix, npix))).astype(np.float32)


def _time(fn, repeats: int, n_obs: int, device: torch.device, threads: int) -> dict:
    fn()  # warm-up: allocator, oneDNN/cuDNN kernel selection
    walls, cpus = [], []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        w, c = time.perf_counter(), time.process_time()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        walls.append((time.perf_counter() - w) / n_obs * 1e3)
        cpus.append((time.process_time() - c) / n_obs * 1e3 / threads)
    out = {"wall_ms_per_obs_median": statistics.median(walls), "wall_ms_per_obs_min": min(walls),
           "repeats": repeats}
    if device.type == "cpu":
        out["cpu_time_ms_per_obs_per_thread_median"] = statistics.median(cpus)
    return out


def bench_device(model: AstroRIM, device: torch.device, repeats: int, n_iter: int, threads: int) -> dict:
    model = model.to(device).eval()
    npix = model.config.npix
    obs64 = _observations(64, npix)
    res = {"load_average_before": os.getloadavg() if hasattr(os, "getloadavg") else None}
    res["batch_1"] = _time(lambda: reconstruct(obs64[0], model, n_iter=n_iter, noise_sigma=1.0,
                                               device=device), repeats, 1, device, threads)
    res["batch_64"] = _time(lambda: reconstruct(obs64, model, n_iter=n_iter, noise_sigma=1.0,
                                                batch_size=64, device=device),
                            max(1, repeats // 2), 64, device, threads)
    y = torch.from_numpy(obs64 / np.quantile(obs64, 0.995, axis=(1, 2), keepdims=True)).to(device)
    sigma = torch.full((64,), 0.01, device=device)

    def raw():
        with torch.inference_mode():
            model(y, noise_sigma=sigma, n_iter=n_iter)

    res["raw_model_call_batch_64"] = _time(raw, max(1, repeats // 2), 64, device, threads)
    res["load_average_after"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    return res


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--n-iter", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: available cores)")
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks/inference.json"))
    args = parser.parse_args(argv)

    threads = args.threads or _cores()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = load_model(args.checkpoint)[0] if args.checkpoint else AstroRIM()
    report = {
        "what": "ms per 96x96 observation, astrorim.inference.reconstruct, torch.inference_mode",
        "n_iter": args.n_iter,
        "model_config": model.config.to_dict(),
        "parameters": count_parameters(model),
        "checkpoint": str(args.checkpoint) if args.checkpoint else None,
        "paper": PAPER,
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "python": sys.version.split()[0], "torch": str(torch.__version__),
                    "cores_available": threads, "torch_threads": torch.get_num_threads(),
                    "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
        "results": {},
    }
    report["results"]["cpu"] = bench_device(model, torch.device("cpu"), args.repeats, args.n_iter, threads)
    if threads > 1:
        # On a shared machine several threads can lose more to synchronisation than they gain;
        # one thread shows what the arithmetic alone costs.
        torch.set_num_threads(1)
        report["results"]["cpu_1_thread"] = bench_device(model, torch.device("cpu"), args.repeats,
                                                         args.n_iter, 1)
        torch.set_num_threads(threads)
    if torch.cuda.is_available():
        report["results"]["cuda"] = bench_device(model, torch.device("cuda"), args.repeats, args.n_iter, 1)
    write_text_atomic(args.out, json.dumps(report, indent=2) + "\n")
    for dev, r in report["results"].items():
        for key in ("batch_1", "batch_64", "raw_model_call_batch_64"):
            line = f"{dev:>4} {key:<24} wall {r[key]['wall_ms_per_obs_median']:7.1f} ms/obs (median)"
            if "cpu_time_ms_per_obs_per_thread_median" in r[key]:
                line += f", CPU time/thread {r[key]['cpu_time_ms_per_obs_per_thread_median']:6.1f} ms/obs"
            print(line)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
