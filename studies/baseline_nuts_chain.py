"""A longer NUTS chain than the workflow's, from the workflow's own MAP point (paper-003 baseline).

    python studies/baseline_nuts_chain.py --config config/cpu_small_vae16_450.yaml --system system1 \
        --noise high --warmup 100 --samples 500 --max-tree-depth 6 \
        --out results/studies/baseline_nuts_chain_vae16_450_system1.json

The CPU-scale workflow runs 50 + 100 NUTS steps per (system, noise level), and their posterior means carry
a Monte Carlo error of ~0.3 posterior sd (effective sample size of phi 12-13, docs/baseline-findings.md).  This
runs the same sampler (``stages.nuts_stage``: same model, VAE, mock, MAP start and target acceptance) with
the warmup, sample count and tree depth given here, and reports each lens parameter's posterior against
the truth with its Monte Carlo standard error (sd / sqrt(ESS)) and the means of the chain's two halves,
so a reader can see whether the chain's mean has settled.  Needs the workflow's MAP file for that
(system, noise level): ``snakemake --cores 2 results/<run>/baseline/map/<system>_<noise>.npz
--configfile CONFIG``.  The samples go to ``--samples-out`` (default: beside ``--out``, ``.npz``).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # _config, _machine (shared with benchmarks/)

from astrorim.baseline import stages, summary  # noqa: E402
from astrorim.baseline.io import save_json  # noqa: E402
from astrorim.baseline.priors import LENS_PARAMS  # noqa: E402
from astrorim.baseline.settings import parse_settings  # noqa: E402

from _config import load_config_or_exit  # noqa: E402
from _machine import torch_machine  # noqa: E402


def half_means(x: np.ndarray) -> list[float]:
    """Means of the first and second half of a chain (a drifting chain has them apart)."""
    x = np.asarray(x, dtype=np.float64).ravel()
    h = len(x) // 2
    return [float(x[:h].mean()), float(x[h:].mean())]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="config/cpu_small.yaml")
    parser.add_argument("--system", default="system1")
    parser.add_argument("--noise", default="high", choices=("low", "med", "high"))
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--max-tree-depth", type=int, default=6)
    parser.add_argument("--seed", type=int, default=None, help="sampler seed (default: the configuration's)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", required=True, help="JSON summary")
    parser.add_argument("--samples-out", default=None, help="posterior samples (.npz; default: --out with .npz)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    config_path = Path(args.config)
    config = load_config_or_exit(parser, config_path)
    settings = parse_settings(config)
    nuts = dataclasses.replace(settings.nuts, warmup=args.warmup, samples=args.samples,
                               max_tree_depth=args.max_tree_depth,
                               seed=settings.nuts.seed if args.seed is None else args.seed)
    settings = dataclasses.replace(settings, nuts=nuts)
    baseline_dir = Path(config["results_dir"]) / "baseline"
    vae_path = baseline_dir / "vae" / "vae.pt"
    mock_path = baseline_dir / "mocks" / f"{args.system}.npz"
    map_path = baseline_dir / "map" / f"{args.system}_{args.noise}.npz"
    for path in (vae_path, mock_path, map_path):
        if not path.is_file():
            parser.error(f"{path} is missing: run `snakemake --cores 2 {map_path} --configfile {config_path}` first")
    out = Path(args.out)
    samples_out = Path(args.samples_out) if args.samples_out else out.with_suffix(".npz")

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:  # the stage's own JSON: its content is returned as info
        info = stages.nuts_stage(settings, vae_path, mock_path, map_path, args.noise, samples_out,
                                 Path(scratch) / "nuts.json")
    wall = time.perf_counter() - t0
    mock = stages.load_mock(mock_path)
    samples = stages.load_samples(samples_out)
    diag = info["diagnostics"]
    ess = {p: diag[f"ess_{p}"][0] for p in LENS_PARAMS if f"ess_{p}" in diag}
    rows = summary.posterior_rows(args.system, args.noise, info["sigma_noise"], mock["truth"], samples, ess)
    lens = []
    for row in rows:
        if row["param"] not in LENS_PARAMS:
            continue
        p = row["param"]
        mc_error = row["sd"] / np.sqrt(row["ess"]) if row["ess"] > 0 else float("nan")
        lens.append({**row, "mc_error": float(mc_error), "half_means": half_means(samples[p])})
    fit = stages.load_map(map_path)
    result = {"machine": torch_machine(),
              "config": str(config_path), "system": args.system, "noise": args.noise, "vae": str(vae_path),
              "map": str(map_path), "map_start": {p: float(fit["best_values"][p]) for p in LENS_PARAMS},
              "nuts": dataclasses.asdict(nuts), "wall_s": wall, "sampler": info,
              "samples_file": str(samples_out), "posterior": lens, "created_unix": time.time()}
    save_json(out, result)
    for row in lens:
        print(f"{row['param']:>7}: truth {row['truth']:+.4f}  mean {row['mean']:+.4f} ({row['rel_bias_pct']:+.2f} %, "
              f"{row['pull']:+.1f} sd, MC error {row['mc_error']:.4f}, ESS {row['ess']:.0f})")
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
