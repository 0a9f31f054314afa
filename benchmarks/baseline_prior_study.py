"""Train a paper-003 source prior and measure it at high S/N, in one command, without Snakemake.

    # here: a float16 copy of the VAE data, small enough to travel to the device machine (64 MiB in all)
    python benchmarks/baseline_prior_study.py pack data/cpu_small/baseline/vae_data.h5 .devcarry/vae_data_f16.h5
    # there (or anywhere): the VAE stage, then the MAP convergence and fidelity benchmarks with that VAE
    python benchmarks/baseline_prior_study.py run --config config/cpu_small_vae64.yaml \
        --data .devcarry/vae_data_f16.h5 --mocks-from results/cpu_small/baseline/mocks --threads 8 --out-dir OUT

For machines that have torch but not the workflow's tools (the GPU machine lent to some sessions has neither
Snakemake nor DVC).  ``run`` does what ``snakemake baseline_train_vae`` does for ``--config`` (the same
``stages.train_vae_stage``, so ``baseline.vae.device`` decides where it trains), takes the committed mocks
(``--mocks-from``: the mocks of cpu_small and its variants regenerate byte-identical, and the test split of a
packed file is rounded), then runs, in parallel processes, ``baseline_map_convergence.py`` for every mock
system at high S/N (the runs of docs/baseline.md: the prior-centre start, the truth start with an L-BFGS
polish) and ``baseline_source_prior_fidelity.py``.  The results go under the configuration's results_dir as
the workflow would write them, and the files a reader needs (training.json, the VAE figures, the benchmark
JSONs) are copied flat into ``--out-dir``.

``pack`` rounds every split's images to float16: at most 2.4e-4 of the peak on cpu_small's data, 1 % of the
decoder's noise sigma (0.02), so a prior trained on it is the same experiment; the file says so in its
attributes.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))  # _config, also when imported from elsewhere

from astrorim.baseline import data as vae_data  # noqa: E402
from astrorim.baseline import stages  # noqa: E402
from astrorim.baseline.io import load_json  # noqa: E402
from astrorim.baseline.settings import parse_settings  # noqa: E402

from _config import load_config_or_exit  # noqa: E402


def pack(source: Path, out: Path) -> dict:
    """``source`` (a VAE data file) with its images rounded to float16, written atomically to ``out``."""
    ds = vae_data.read_dataset(source)
    half = vae_data.VAEDataset({s: v.astype(np.float16) for s, v in ds.images.items()}, ds.origin)
    rounding = max((float(np.abs(half.images[s].astype(np.float32) - ds.images[s]).max())
                    for s in ds.images if len(ds.images[s])), default=0.0)
    vae_data.write_dataset(out, half, attrs={"packed_from": str(source), "float16_max_rounding": rounding})
    return {"counts": ds.counts(), "max_rounding": rounding, "bytes": out.stat().st_size}


def run(args, parser) -> dict:
    config_path = Path(args.config)
    config = load_config_or_exit(parser, config_path)
    settings = parse_settings(config)
    if not Path(args.data).is_file():
        parser.error(f"{args.data}: VAE data file not found")
    baseline_dir = Path(config["results_dir"]) / "baseline"
    mocks_dir = baseline_dir / "mocks"
    mocks_dir.mkdir(parents=True, exist_ok=True)
    for name in settings.systems:
        target = mocks_dir / f"{name}.npz"
        if args.mocks_from:
            given = Path(args.mocks_from) / f"{name}.npz"
            if not given.is_file():
                parser.error(f"{given}: no mock of {name} there")
            shutil.copyfile(given, target)
        elif not target.is_file():
            parser.error(f"{target} is missing: give --mocks-from")
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    vae_dir = baseline_dir / "vae"
    figures = {"fig_recon": baseline_dir / "fig2_reconstructions.png",
               "fig_rotation": baseline_dir / "fig3_rotation.png", "fig_training": vae_dir / "elbo.png"}

    t0 = time.perf_counter()
    torch.set_num_threads(args.threads)
    info = stages.train_vae_stage(settings, args.data, vae_dir / "vae.pt", vae_dir / "training.json",
                                  progress=not args.quiet, resumable=args.resumable, **figures)
    train_s = time.perf_counter() - t0
    history = info["history"]
    print(f"VAE: {len(history['val_elbo'])} epochs in {train_s:.0f} s on {history['device']} "
          f"(vae.device {settings.train.device!r}), best epoch "
          f"{history['best_epoch']}, test ELBO {info['test_elbo']:.1f}", flush=True)

    run_name = config["run_name"]
    jobs = {}
    for name in settings.systems:
        out = out_dir / f"baseline_map_convergence_{run_name}_{name}.json"
        jobs[out] = [sys.executable, str(HERE / "baseline_map_convergence.py"), "--config", str(config_path),
                     "--system", name, "--noise", "high", "--schedule", args.schedule,
                     "--truth-start", args.truth_start, "--truth-polish", str(args.truth_polish),
                     "--threads", str(args.threads), "--out", str(out)]
    fidelity = out_dir / f"baseline_source_prior_fidelity_{run_name}.json"
    jobs[fidelity] = [sys.executable, str(HERE / "baseline_source_prior_fidelity.py"), "--config", str(config_path),
                      "--vae", f"{run_name}={vae_dir / 'vae.pt'}", "--threads", str(args.threads),
                      "--out", str(fidelity)]
    running = {out: subprocess.Popen(cmd) for out, cmd in jobs.items()}
    failed = [str(out) for out, proc in running.items() if proc.wait() != 0]
    for path in (vae_dir / "training.json", *figures.values()):
        shutil.copyfile(path, out_dir / path.name)
    if failed:
        raise SystemExit(f"benchmarks failed: {failed}")
    summary = {"train_s": train_s, "device": history["device"], "test_elbo": info["test_elbo"],
               "best_epoch": history["best_epoch"], "wall_s": time.perf_counter() - t0}
    for out in jobs:
        if out != fidelity:
            for r in load_json(out)["runs"]:
                print(f"{out.stem}: {r['start']}: " + ", ".join(
                    f"{p} {r['rel_error_pct'][p]:+.2f} %" for p in ("r_ein", "slope", "q", "phi")))
    return summary


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="a float16 copy of a VAE data file")
    p.add_argument("source")
    p.add_argument("out")
    r = sub.add_parser("run", help="train the VAE of --config and measure it")
    r.add_argument("--config", required=True)
    r.add_argument("--data", required=True, help="the VAE data file (as written by the workflow, or packed)")
    r.add_argument("--mocks-from", default=None, help="a folder with the mocks (SYSTEM.npz) to fit")
    r.add_argument("--schedule", default="3000:0.05", help="STEPS:LR of the prior-centre MAP start")
    r.add_argument("--truth-start", default="1500:0.02", help="STEPS:LR of the MAP start from the truth")
    r.add_argument("--truth-polish", type=int, default=500, help="L-BFGS iterations after the truth start")
    r.add_argument("--threads", type=int, default=1, help="torch threads of each process")
    r.add_argument("--out-dir", required=True)
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.add_argument("--resumable", action="store_true",
                   help="keep the resumable training state, as the workflow does (off: on a machine that is given "
                        "back it only costs time, four times the weights written every epoch)")
    args = parser.parse_args(argv)
    if args.command == "pack":
        result = pack(Path(args.source), Path(args.out))
        print(f"wrote {args.out}: {result}")
        return result
    return run(args, parser)


if __name__ == "__main__":
    main()
