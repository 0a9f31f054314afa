"""Run the whole baseline outside Snakemake, step by step, for one configuration file.

    python scripts/baseline_run.py CONFIG.yaml OUT_DIR [--vae TRAINED.pt] [--systems system1 ...]
                                   [--noises low med high] [--skip-nuts] [--threads 1]

Same steps and files as workflow/rules/baseline.smk (VAE data -> VAE -> mocks -> MAP -> NUTS -> report),
written under OUT_DIR instead of {results_dir}/baseline; the VAE data come from the Hubble Deep Field
only (simulation shards are a Snakemake dependency).  ``--vae`` reuses a trained VAE instead of training one.
Meant for demonstrations and for machines without Snakemake; the workflow is the reference.
"""

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import torch  # noqa: E402
import yaml  # noqa: E402

from astrorim.baseline import io, stages  # noqa: E402
from astrorim.baseline.settings import NOISE_LABELS, parse_settings  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config")
    ap.add_argument("out")
    ap.add_argument("--vae", help="a trained VAE to reuse (its data file must sit beside it as vae_data.h5)")
    ap.add_argument("--systems", nargs="*")
    ap.add_argument("--noises", nargs="*", default=list(NOISE_LABELS))
    ap.add_argument("--skip-nuts", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = parse_settings(yaml.safe_load(Path(args.config).read_text()))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    data = out / "vae_data.h5"
    model = out / "vae" / "vae.pt"
    if args.vae:
        src = Path(args.vae)
        (out / "vae").mkdir(exist_ok=True)
        shutil.copyfile(src, model)
        shutil.copyfile(src.parent / "vae_data.h5", data)
    else:
        print("VAE data", stages.build_vae_data(settings, {}, data), flush=True)
        stages.train_vae_stage(settings, data, model, out / "vae" / "training.json", out / "fig2_reconstructions.png",
                               out / "fig3_rotation.png", out / "vae" / "elbo.png")
    systems = args.systems or list(settings.systems)
    mocks = {s: out / "mocks" / f"{s}.npz" for s in systems}
    print(stages.mocks_stage(settings, data, mocks, out / "table1_snr.csv").to_string(index=False), flush=True)
    keys = [(s, n) for s in systems for n in args.noises]
    maps = {k: out / "map" / f"{k[0]}_{k[1]}.npz" for k in keys}
    nuts = {k: out / "nuts" / f"{k[0]}_{k[1]}.npz" for k in keys}
    nuts_json = {k: out / "nuts" / f"{k[0]}_{k[1]}.json" for k in keys}
    for k in keys:
        info = stages.map_stage(settings, model, mocks[k[0]], k[1], maps[k], maps[k].with_suffix(".json"))
        print(k, "MAP", round(info["wall_s"], 1), "s", {p: round(v, 2) for p, v in info["rel_error_pct"].items()},
              flush=True)
        if not args.skip_nuts:
            info = stages.nuts_stage(settings, model, mocks[k[0]], maps[k], k[1], nuts[k], nuts_json[k])
            print(k, "NUTS", round(info["sampling_s"], 1), "s", info["diagnostics"], flush=True)
    stages.report_stage(settings, model, mocks, maps, {} if args.skip_nuts else nuts,
                        {} if args.skip_nuts else nuts_json, {s: out / f"map_{s}.png" for s in systems},
                        {s: out / f"posterior_{s}.png" for s in systems}, out / "map_summary.csv",
                        out / "posterior_summary.csv")
    io.save_json(out / "run.json", {"config": str(args.config), "argv": sys.argv, "wall_s": time.perf_counter() - t0})
    print(f"done in {time.perf_counter() - t0:.0f} s -> {out}")


if __name__ == "__main__":
    main()
