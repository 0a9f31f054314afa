"""MAP fits of several lens systems in one batched pass versus one after another (paper-003 baseline).

    python benchmarks/baseline_map_batch.py --config config/cpu_small.yaml --steps 300 --threads 1 \
        --out results/benchmarks/baseline_map_batch.json

Paper 003's conclusion asks for pipelines that analyse many lenses at once.  The baseline's Pyro model
batches its multi-start MAP in one plate, and :func:`astrorim.baseline.map_fit.run_map_batch` puts several
systems' images (same grid and PSF) in that plate.  This fits every (system, noise level) of the
configuration's mocks -- 2 systems x 3 noise levels = 6 images -- twice with the same MAP settings
(``--steps`` Adam steps, the configuration's starts, rate and seed): one image at a time, then all in
one pass.  It reports the wall and CPU seconds per image of each, and how far the batched fits' lens
parameters lie from the one-at-a-time fits' (they should agree to float32 round-off amplified by the
optimiser; the best start can differ where two starts end within that of each other).  Needs the mocks
and the VAE: ``snakemake --cores 2 baseline_mocks baseline_train_vae --configfile CONFIG``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from astrorim.baseline import stages  # noqa: E402
from astrorim.baseline.io import load_vae, save_json  # noqa: E402
from astrorim.baseline.map_fit import run_map, run_map_batch  # noqa: E402
from astrorim.baseline.priors import LENS_PARAMS  # noqa: E402
from astrorim.baseline.pyro_model import LensingModel  # noqa: E402
from astrorim.baseline.settings import NOISE_LABELS, parse_settings  # noqa: E402

from _config import load_config_or_exit  # noqa: E402
from _machine import cpu_affinity, torch_machine  # noqa: E402


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="config/cpu_small.yaml")
    parser.add_argument("--steps", type=int, default=300, help="Adam steps per fit")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="results/benchmarks/baseline_map_batch.json")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps must be >= 1, got {args.steps}")
    torch.set_num_threads(args.threads)
    config_path = Path(args.config)
    config = load_config_or_exit(parser, config_path)
    settings = parse_settings(config)
    map_config = dataclasses.replace(settings.map, steps=args.steps, polish_iterations=0)
    baseline_dir = Path(config["results_dir"]) / "baseline"
    vae_path = baseline_dir / "vae" / "vae.pt"
    mock_paths = {name: baseline_dir / "mocks" / f"{name}.npz" for name in settings.systems}
    for path in (vae_path, *mock_paths.values()):
        if not path.is_file():
            parser.error(f"{path} is missing: run `snakemake --cores 2 baseline_mocks baseline_train_vae "
                         f"--configfile {config_path}` first")
    vae, prior, _ = load_vae(vae_path)
    forward = settings.forward(vae.decoder)
    labels, images, sigmas, truths = [], [], [], []
    for name, path in mock_paths.items():
        mock = stages.load_mock(path)
        for j, sigma in enumerate(mock["noise_levels"]):
            labels.append(f"{name}/{NOISE_LABELS[j]}")
            images.append(torch.as_tensor(mock["observations"][j]))
            sigmas.append(float(sigma))
            truths.append(mock["truth"])

    one_by_one, t0, c0 = [], time.perf_counter(), time.process_time()
    for label, image, sigma in zip(labels, images, sigmas):
        print(f"{label}: alone")
        one_by_one.append(run_map(LensingModel(forward, prior, sigma), image, map_config, progress=True))
    alone_wall, alone_cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"all {len(images)} in one pass")
    t0, c0 = time.perf_counter(), time.process_time()
    batched = run_map_batch(forward, prior, torch.stack(images), sigmas, map_config, progress=True)
    batch_wall, batch_cpu = time.perf_counter() - t0, time.process_time() - c0

    fits = []
    for label, truth, alone, together in zip(labels, truths, one_by_one, batched):
        a, b = alone.best_params(), together.best_params()
        fits.append({"image": label, "best_start_alone": alone.best, "best_start_batched": together.best,
                     "log_joint_alone": float(alone.log_joint[alone.best]),
                     "log_joint_batched": float(together.log_joint[together.best]),
                     "rel_error_pct_alone": {p: 100 * (a[p] - truth[p]) / abs(truth[p]) for p in LENS_PARAMS
                                             if truth[p] != 0},
                     "batched_minus_alone": {p: b[p] - a[p] for p in LENS_PARAMS}})
    same_best = [f for f in fits if f["best_start_alone"] == f["best_start_batched"]]
    n = len(images)
    result = {"machine": {**torch_machine(), "cpu_affinity": cpu_affinity(), "device": "cpu"},
              "config": str(config_path), "vae": str(vae_path), "vae_width": vae.config.width,
              "images": labels, "map": dataclasses.asdict(map_config),
              "one_by_one": {"wall_s": alone_wall, "cpu_s": alone_cpu, "wall_s_per_image": alone_wall / n,
                             "cpu_s_per_image": alone_cpu / n},
              "batched": {"wall_s": batch_wall, "cpu_s": batch_cpu, "wall_s_per_image": batch_wall / n,
                          "cpu_s_per_image": batch_cpu / n, "plate_elements": n * map_config.n_starts},
              "speed_up_wall": alone_wall / batch_wall, "speed_up_cpu": alone_cpu / batch_cpu,
              "max_abs_difference_same_best_start": {
                  p: max((abs(f["batched_minus_alone"][p]) for f in same_best), default=None) for p in LENS_PARAMS},
              "fits": fits, "created_unix": time.time()}
    save_json(args.out, result)
    print(f"one by one: {alone_wall / n:.1f} s wall, {alone_cpu / n:.1f} s CPU per image; batched: "
          f"{batch_wall / n:.1f} s wall, {batch_cpu / n:.1f} s CPU per image (x{alone_wall / batch_wall:.2f} wall)")
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
