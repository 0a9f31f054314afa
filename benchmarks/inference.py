"""Inference speed of AstroRIM: milliseconds per 96 x 96 observation, 10 RIM iterations.

    python benchmarks/inference.py [--checkpoint CKPT] [--repeats 5] [--batches 1,64]
                                   [--out results/benchmarks/inference.json]

Times ``astrorim.inference.reconstruct`` (normalisation, encoder, operator, RIM, model image, copies
back to numpy) for batches 1 and 64 on CPU (torch threads = available cores) and 1, 64 and 256 on
CUDA when present, or the ``--batches`` given (then on every device); plus one raw ``model(y)``
call on 64 observations at once.  The JSON records the CUDA target (<= 1 ms per observation at
batch >= 256) and, per device, whether the timed batches meet it (null when none is >= 256).  Reports the median and
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
TARGET = {"ms_per_obs_max": 1.0, "batch_min": 256, "device": "cuda",
          "statistic": "wall_ms_per_obs_median"}
# CPU keeps batches 1 and 64 so its run time does not grow; CUDA adds the target's batch.
DEFAULT_BATCHES = {"cpu": (1, 64), "cuda": (1, 64, 256)}


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


def _parse_batches(text: str) -> tuple[int, ...]:
    """"1,64,256" -> (1, 64, 256); argparse error naming the value otherwise."""
    try:
        batches = tuple(sorted({int(b) for b in text.split(",") if b.strip()}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--batches must be comma-separated integers, got {text!r}") from None
    if not batches or batches[0] < 1:
        raise argparse.ArgumentTypeError(f"--batches must be integers >= 1, got {text!r}")
    return batches


def target_check(res: dict) -> dict:
    """Whether one device's timings meet TARGET: met if some timed batch >= batch_min has a median
    at or below ms_per_obs_max; None when no such batch was timed."""
    timed = {int(k.split("_")[1]): v[TARGET["statistic"]] for k, v in res.items()
             if k.startswith("batch_") and int(k.split("_")[1]) >= TARGET["batch_min"]}
    if not timed:
        return {"met": None, "why": f"no batch >= {TARGET['batch_min']} timed", "ms_per_obs_by_batch": {}}
    met = {b: ms <= TARGET["ms_per_obs_max"] for b, ms in timed.items()}
    return {"met": any(met.values()), "ms_per_obs_by_batch": {str(b): ms for b, ms in timed.items()},
            "met_by_batch": {str(b): m for b, m in met.items()}}


def bench_device(model: AstroRIM, device: torch.device, repeats: int, n_iter: int, threads: int,
                 batches: tuple[int, ...]) -> dict:
    model = model.to(device).eval()
    npix = model.config.npix
    obs = _observations(max(64, *batches), npix)
    obs64 = obs[:64]
    res = {"load_average_before": os.getloadavg() if hasattr(os, "getloadavg") else None}
    for n in batches:
        if n == 1:
            res["batch_1"] = _time(lambda: reconstruct(obs[0], model, n_iter=n_iter, noise_sigma=1.0,
                                                       device=device), repeats, 1, device, threads)
        else:
            res[f"batch_{n}"] = _time(lambda n=n: reconstruct(obs[:n], model, n_iter=n_iter, noise_sigma=1.0,
                                                              batch_size=n, device=device),
                                      max(1, repeats // 2), n, device, threads)
    y = torch.from_numpy(obs64 / np.quantile(obs64, 0.995, axis=(1, 2), keepdims=True)).to(device)
    sigma = torch.full((64,), 0.01, device=device)

    def raw():
        with torch.inference_mode():
            model(y, noise_sigma=sigma, n_iter=n_iter)

    res["raw_model_call_batch_64"] = _time(raw, max(1, repeats // 2), 64, device, threads)
    res["load_average_after"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    res["target"] = target_check(res)
    return res


def report_header(model: AstroRIM, checkpoint, n_iter: int, threads: int) -> dict:
    """The JSON document's fixed part (what, model, paper, target, machine); ``results`` filled per device."""
    npix = model.config.npix
    return {
        "what": f"ms per {npix}x{npix} observation, astrorim.inference.reconstruct, torch.inference_mode",
        "n_iter": n_iter,
        "model_config": model.config.to_dict(),
        "parameters": count_parameters(model),
        "checkpoint": str(checkpoint) if checkpoint else None,
        "paper": PAPER,
        "target": TARGET,
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "python": sys.version.split()[0], "torch": str(torch.__version__),
                    "cores_available": threads, "torch_threads": torch.get_num_threads(),
                    "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
        "results": {},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--n-iter", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: available cores)")
    parser.add_argument("--batches", type=_parse_batches, default=None,
                        help="comma-separated batch sizes for every device (default: 1,64 on CPU, "
                             "1,64,256 on CUDA)")
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks/inference.json"))
    args = parser.parse_args(argv)

    threads = args.threads or _cores()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = load_model(args.checkpoint)[0] if args.checkpoint else AstroRIM()
    report = report_header(model, args.checkpoint, args.n_iter, threads)
    cpu_batches = args.batches or DEFAULT_BATCHES["cpu"]
    report["results"]["cpu"] = bench_device(model, torch.device("cpu"), args.repeats, args.n_iter, threads,
                                            cpu_batches)
    if threads > 1:
        # On a shared machine several threads can lose more to synchronisation than they gain;
        # one thread shows what the arithmetic alone costs.
        torch.set_num_threads(1)
        report["results"]["cpu_1_thread"] = bench_device(model, torch.device("cpu"), args.repeats,
                                                         args.n_iter, 1, cpu_batches)
        torch.set_num_threads(threads)
    if torch.cuda.is_available():
        report["results"]["cuda"] = bench_device(model, torch.device("cuda"), args.repeats, args.n_iter, 1,
                                                 args.batches or DEFAULT_BATCHES["cuda"])
    write_text_atomic(args.out, json.dumps(report, indent=2) + "\n")
    for dev, r in report["results"].items():
        for key in [k for k in r if k.startswith(("batch_", "raw_model_call_"))]:
            line = f"{dev:>4} {key:<24} wall {r[key]['wall_ms_per_obs_median']:7.1f} ms/obs (median)"
            if "cpu_time_ms_per_obs_per_thread_median" in r[key]:
                line += f", CPU time/thread {r[key]['cpu_time_ms_per_obs_per_thread_median']:6.1f} ms/obs"
            print(line)
        print(f"{dev:>4} target <= {TARGET['ms_per_obs_max']} ms/obs at batch >= {TARGET['batch_min']}: "
              f"met = {r['target']['met']}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
