"""Train a paper-003 source prior and measure it at high S/N, in one command, without Snakemake.

    # here: a float16 copy of the VAE data, small enough to travel to the device machine (64 MiB in all)
    python studies/baseline_prior_study.py pack data/cpu_small/baseline/vae_data.h5 .devcarry/vae_data_f16.h5
    # there (or anywhere): the VAE stage, then the MAP convergence and fidelity studies with that VAE
    python studies/baseline_prior_study.py run --config config/cpu_small_vae64.yaml \
        --data .devcarry/vae_data_f16.h5 --mocks-from results/cpu_small/baseline/mocks --threads 3 \
        --fit-device auto --deadline-s 540 --out-dir OUT

For machines that have torch but not the workflow's tools (the GPU machine lent to some sessions has neither
Snakemake nor DVC).  ``run`` does what ``snakemake baseline_train_vae`` does for ``--config`` (the same
``stages.train_vae_stage``, so ``baseline.vae.device`` decides where it trains), takes the committed mocks
(``--mocks-from``: the mocks of cpu_small and its variants regenerate byte-identical, and the test split of a
packed file is rounded), then runs, in parallel processes, ``baseline_map_convergence.py`` for every mock
system at high S/N (the runs of docs/baseline-findings.md: the prior-centre start, and the truth start with an L-BFGS
polish, each in a process of its own, joined into one file per system) and
``baseline_source_prior_fidelity.py``.  The results go under the configuration's results_dir as the workflow
would write them, and the files a reader needs are copied flat into ``--out-dir``: training.json and the VAE
figures as soon as the training ends (should the fits outrun a machine's time limit, the training is on
record), then the benchmark JSONs and ``prior_study.json`` (times, device, epochs): eight files for two
systems, the most the device machine returns.

``--train-budget-s`` fits the training into a time limit: a pilot trains a few minibatches with the real code
and times them, and ``max_epochs`` is cut to the epochs that fit (the cosine schedule anneals over those).
``--deadline-s`` fits the whole run into one: pilots also time a MAP step of the configured width (rendered on
``--fit-device``) and the VAE stage's work after the training, the training gets what the fits and that work
leave (each estimate padded by a third; but at least half of the time left), and fits still running at the
deadline are stopped, so that a machine's time limit never takes the finished results with it.  The configured
and the budgeted epoch counts, and the estimates against the times taken, are in ``prior_study.json``: a cut run
is a shorter training, not the configured one.

``--fit-device cuda`` (or ``auto``) renders the fits' images on the GPU once the training has left it (the Pyro
model and Adam stay on the CPU), after a pilot fit there has worked; otherwise the fits run on the CPU and
``prior_study.json`` keeps the error.

``pack`` rounds every split's images to float16: at most 2.4e-4 of the peak on cpu_small's data, 1 % of the
decoder's noise sigma (0.02), so a prior trained on it is the same experiment; the file says so in its
attributes.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))  # baseline_map_convergence, also when imported from elsewhere
sys.path.insert(0, str(HERE.parent / "benchmarks"))  # _config, _machine (shared with benchmarks/)

from astrorim.baseline import data as vae_data  # noqa: E402
from astrorim.baseline import stages  # noqa: E402
from astrorim.baseline.io import load_json, save_json  # noqa: E402
from astrorim.baseline.latent_prior import encode_means, fit_latent_prior  # noqa: E402
from astrorim.baseline.map_fit import run_map  # noqa: E402
from astrorim.baseline.pyro_model import LensingModel  # noqa: E402
from astrorim.baseline.settings import parse_settings  # noqa: E402
from astrorim.baseline.train_vae import mean_elbo, train_vae  # noqa: E402
from astrorim.baseline.vae import VAE  # noqa: E402
from astrorim.train.step import resolve_device  # noqa: E402

from _config import load_config_or_exit  # noqa: E402
from baseline_map_convergence import schedule  # noqa: E402
from _machine import torch_machine  # noqa: E402


PLAN_MARGIN = 4 / 3  # the pilots time each piece alone; the fits then share the machine's cores
PROCESS_START_S = 20.0  # a fit process's imports, loading the VAE, the log posterior at the truth
MIN_TRAIN_SHARE = 0.5  # of the time left, whatever the fits would need
FIDELITY_STEPS = 500  # Adam steps of the fidelity benchmark's best decoder drawing (its default)


def pack(source: Path, out: Path) -> dict:
    """``source`` (a VAE data file) with its images rounded to float16, written atomically to ``out``."""
    ds = vae_data.read_dataset(source)
    half = vae_data.VAEDataset({s: v.astype(np.float16) for s, v in ds.images.items()}, ds.origin)
    rounding = max((float(np.abs(half.images[s].astype(np.float32) - ds.images[s]).max())
                    for s in ds.images if len(ds.images[s])), default=0.0)
    vae_data.write_dataset(out, half, attrs={"packed_from": str(source), "float16_max_rounding": rounding})
    return {"counts": ds.counts(), "max_rounding": rounding, "bytes": out.stat().st_size}


def pilot_epoch_seconds(settings, images: dict[str, np.ndarray], batches: int = 8) -> float:
    """Seconds one training epoch of ``settings`` takes here: ``batches`` minibatches (and validation images in
    the data's proportion) trained twice by the real training code, the second run timed (the first pays for the
    device's start: CUDA's context, cuDNN's choice of kernels), scaled to the whole training split."""
    train, val = images["train"], images["val"]
    n = min(len(train), batches * settings.train.batch_size)
    n_val = max(2, round(len(val) * n / len(train)))
    pilot = dataclasses.replace(settings.train, max_epochs=1, patience=1)
    for _ in range(2):
        _, history = train_vae(train[:n], val[:n_val], settings.vae, pilot, progress=False)
    return history.wall_s * len(train) / n


def pilot_fit_step_seconds(settings, mock_path: Path, threads: int, steps: int = 20, device: str = "cpu") -> float:
    """Seconds per Adam step of a one-start MAP fit of the mock's high-S/N image with ``threads`` CPU threads and
    the images rendered on ``device``, with an untrained decoder of the configured width (its cost does not
    depend on its weights)."""
    torch.set_num_threads(threads)
    mock = stages.load_mock(mock_path)
    j = settings.noise_index("high")
    vae = VAE(settings.vae)
    prior = fit_latent_prior(torch.randn(4 * settings.vae.latent_dim, settings.vae.latent_dim,
                                         generator=torch.Generator().manual_seed(0)), settings.prior_cov_factor)
    model = LensingModel(settings.forward(vae.decoder, device=device), prior, float(mock["noise_levels"][j]))
    obs = torch.as_tensor(mock["observations"][j])
    fit = dataclasses.replace(settings.map, n_starts=1, record_every=0, polish_iterations=0)
    run_map(model, obs, dataclasses.replace(fit, steps=3), progress=False)
    return run_map(model, obs, dataclasses.replace(fit, steps=steps), progress=False).wall_s / steps


def pilot_after_training_seconds(settings, images: dict[str, np.ndarray], threads: int, n: int = 64) -> float:
    """Seconds the VAE stage spends on the CPU after the training: encoding the training split for the latent
    prior, then the test ELBO and Figs. 2-3 (about 100 more images through the whole VAE), timed on ``n`` images
    with an untrained VAE."""
    torch.set_num_threads(threads)
    vae = VAE(settings.vae)
    sample = torch.as_tensor(images["train"][:n])
    t0 = time.perf_counter()
    encode_means(vae, sample)
    t1 = time.perf_counter()
    mean_elbo(vae, sample)
    encode_s, elbo_s = (t1 - t0) / len(sample), (time.perf_counter() - t1) / len(sample)
    return encode_s * len(images["train"]) + elbo_s * (len(images["test"]) + 100)


def fit_steps(args) -> float:
    """Adam-step equivalents of the longest process after the training (an L-BFGS iteration costs up to 1.25
    evaluations; a step of the fidelity benchmark's decoder fit costs less than a lens fit's)."""
    return max(schedule(args.schedule)[0], schedule(args.truth_start)[0] + 1.25 * args.truth_polish,
               FIDELITY_STEPS)


def plan_training(settings, args, images: dict[str, np.ndarray], mock_path: Path, started: float) -> dict:
    """The training budget [s] that leaves the fits and the rest of the VAE stage time to end by ``--deadline-s``
    (from ``started``), from pilots of each; each estimate is padded by ``PLAN_MARGIN``, and the fits' by how far
    their processes' threads outnumber the CPUs.  The training keeps at least ``MIN_TRAIN_SHARE`` of the time
    left after the stage's own work: should the fits need more than the rest, those still running at the deadline
    are stopped, and the training, the fidelity benchmark and the fits that ended are still on record."""
    # the fits' processes (two per system, and the fidelity benchmark) share the CPUs
    crowding = max(1.0, (2 * len(settings.systems) + 1) * args.threads / (os.cpu_count() or 1))
    fit_device = fit_device_or_cpu(settings, mock_path, args, steps=20)
    fit_s = PLAN_MARGIN * crowding * (PROCESS_START_S + fit_steps(args) * fit_device["fit_step_s"])
    after_s = PLAN_MARGIN * pilot_after_training_seconds(settings, images, args.train_threads)
    elapsed = time.perf_counter() - started
    left_s = args.deadline_s - elapsed - after_s
    if left_s <= 0:
        raise SystemExit(f"--deadline-s {args.deadline_s:.0f} leaves no time to train: {elapsed:.0f} s are spent "
                         f"and the VAE stage's work after the training needs ~{after_s:.0f} s")
    budget = max(left_s - fit_s, MIN_TRAIN_SHARE * left_s)
    fits_cut = budget > left_s - fit_s
    print(f"plan: of the {args.deadline_s:.0f} s, {elapsed:.0f} s are spent, the stage after the training needs "
          f"~{after_s:.0f} s and the fits ~{fit_s:.0f} s: {budget:.0f} s for the training"
          + (f" (its share of {MIN_TRAIN_SHARE:.0%}; fits still running at the deadline will be stopped: give a "
             f"later deadline, fewer --schedule steps, or render them on a GPU with --fit-device)" if fits_cut
             else ""), flush=True)
    return {"deadline_s": args.deadline_s, **fit_device, "cpu_crowding": crowding,
            "fits_estimate_s": fit_s, "after_training_estimate_s": after_s, "time_left_s": left_s,
            "train_budget_s": budget, "fits_expected_to_overrun": fits_cut}


def fit_device_or_cpu(settings, mock_path: Path, args, steps: int) -> dict:
    """Where the fits render their images and the seconds per MAP step there, from a pilot fit of ``steps`` steps
    on ``--fit-device``, or on the CPU should that fit fail (a GPU path that breaks must not cost the run); the
    error is kept for the record."""
    try:
        asked = args.fit_device
        if asked == "auto":
            asked = "cuda" if torch.cuda.is_available() else "cpu"
        device = str(resolve_device(asked, key="--fit-device"))
        step_s = pilot_fit_step_seconds(settings, mock_path, args.threads, steps=steps, device=device)
        return {"fit_device": device, "fit_device_error": None, "fit_step_s": step_s}
    except Exception as err:  # noqa: BLE001 -- any failure there means: fit on the CPU
        print(f"fits on the CPU: rendering on {args.fit_device!r} failed: {err!r}", flush=True)
        return {"fit_device": "cpu", "fit_device_error": repr(err),
                "fit_step_s": pilot_fit_step_seconds(settings, mock_path, args.threads, steps=steps)}


def budgeted_settings(settings, images: dict[str, np.ndarray], budget_s: float | None) -> tuple[object, dict]:
    """``settings`` with ``max_epochs`` cut to what fits in ``budget_s`` seconds of training, the pilot's own time
    included (the cosine schedule then anneals over the epochs that run), and what the pilot measured."""
    if budget_s is None:
        return settings, {"train_budget_s": None}
    t0 = time.perf_counter()
    epoch_s = pilot_epoch_seconds(settings, images)
    left_s = budget_s - (time.perf_counter() - t0)
    epochs = max(1, min(settings.train.max_epochs, int(left_s // epoch_s)))
    print(f"pilot: {epoch_s:.2f} s per epoch; {epochs} of the configured {settings.train.max_epochs} epochs fit "
          f"in the {left_s:.0f} s of the {budget_s:.0f} s budget that the pilot left", flush=True)
    cut = dataclasses.replace(settings, train=dataclasses.replace(settings.train, max_epochs=epochs))
    return cut, {"train_budget_s": budget_s, "pilot_epoch_s": epoch_s, "configured_epochs": settings.train.max_epochs,
                 "budgeted_epochs": epochs}


def join_runs(parts: list[Path], out: Path) -> dict:
    """One convergence report from the reports of its parts (the same system, run in separate processes)."""
    reports = [load_json(part) for part in parts]
    joined = {**reports[0], "runs": [run for r in reports for run in r["runs"]],
              "wall_s_parallel_parts": [sum(run["wall_s"] for run in r["runs"]) for r in reports]}
    save_json(out, joined)
    return joined


def run(args, parser) -> dict:
    started = time.perf_counter()
    config_path = Path(args.config)
    config = load_config_or_exit(parser, config_path)
    settings = parse_settings(config)
    if not Path(args.data).is_file():
        parser.error(f"{args.data}: VAE data file not found")
    for flag, value in (("--train-budget-s", args.train_budget_s), ("--deadline-s", args.deadline_s)):
        if value is not None and not value > 0:
            parser.error(f"{flag} must be > 0, got {value}")
    if args.train_budget_s is not None and args.deadline_s is not None:
        parser.error("give --train-budget-s or --deadline-s, not both")
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

    images = vae_data.read_dataset(args.data).images
    first_mock = mocks_dir / f"{next(iter(settings.systems))}.npz"
    plan = fit_device_or_cpu(settings, first_mock, args, steps=3) if args.deadline_s is None else plan_training(
        settings, args, images, first_mock, started)
    torch.set_num_threads(args.train_threads)
    t0 = time.perf_counter()
    settings, budget = budgeted_settings(settings, images, plan.get("train_budget_s", args.train_budget_s))
    record = {"config": str(config_path), "data": str(args.data), **plan, **budget,
              "threads_per_process": args.threads, "train_threads": args.train_threads}
    try:
        info = stages.train_vae_stage(settings, args.data, vae_dir / "vae.pt", vae_dir / "training.json",
                                      progress=not args.quiet, resumable=args.resumable, **figures)
    except FloatingPointError as err:
        # On record in the output folder: a machine that is given back keeps nothing else of a diverged run.
        save_json(out_dir / "prior_study.json", {
            **record, "training_error": str(err), "train_s": time.perf_counter() - t0, "machine": torch_machine(),
            "wall_s": time.perf_counter() - started})
        raise SystemExit(f"the VAE training failed: {err}") from err
    train_s = time.perf_counter() - t0
    history = info["history"]
    print(f"VAE: {len(history['val_elbo'])} epochs in {train_s:.0f} s on {history['device']} "
          f"(vae.device {settings.train.device!r}), best epoch "
          f"{history['best_epoch']}, test ELBO {info['test_elbo']:.1f}", flush=True)
    # Out before the fits start: should they outrun the machine's time, the training is still on record.
    for path in (vae_dir / "training.json", *figures.values()):
        shutil.copyfile(path, out_dir / path.name)

    run_name = config["run_name"]
    parts_dir = baseline_dir / "prior_study_parts"
    parts_dir.mkdir(parents=True, exist_ok=True)
    jobs, joined = {}, {}
    for name in settings.systems:
        joined[out_dir / f"baseline_map_convergence_{run_name}_{name}.json"] = parts = []
        for only in ("prior-centre", "truth"):
            part = parts_dir / f"{name}_{only}.json"
            parts.append(part)
            jobs[part] = [sys.executable, str(HERE / "baseline_map_convergence.py"), "--config", str(config_path),
                          "--system", name, "--noise", "high", "--schedule", args.schedule, "--only", only,
                          "--truth-start", args.truth_start, "--truth-polish", str(args.truth_polish),
                          "--device", plan["fit_device"], "--threads", str(args.threads), "--out", str(part)]
    fidelity = out_dir / f"baseline_source_prior_fidelity_{run_name}.json"
    jobs[fidelity] = [sys.executable, str(HERE / "baseline_source_prior_fidelity.py"), "--config", str(config_path),
                      "--vae", f"{run_name}={vae_dir / 'vae.pt'}", "--steps", str(FIDELITY_STEPS),
                      "--threads", str(args.threads),
                      "--out", str(fidelity)]
    # The fits' progress bars go to a log each; their result lines (stdout) stay in this command's output.
    logs = {out: open(parts_dir / f"{out.stem}.log", "w") for out in jobs}
    for part in (out for parts in joined.values() for out in parts):
        part.unlink(missing_ok=True)  # an earlier run's part must not stand in for one stopped at the deadline
    fits_started = time.perf_counter()
    running = {out: subprocess.Popen(cmd, stderr=logs[out]) for out, cmd in jobs.items()}
    unfinished = wait_until(running, None if args.deadline_s is None else started + args.deadline_s)
    fits_s = time.perf_counter() - fits_started
    for log in logs.values():
        log.close()
    failed = [str(out) for out, proc in running.items() if proc.returncode != 0 and str(out) not in unfinished]
    for out, parts in joined.items():
        # written atomically, a part that exists is whole, even if its process was stopped while it exited
        finished = [part for part in parts if part.is_file()]
        if not finished:
            continue
        for r in join_runs(finished, out)["runs"]:
            print(f"{out.stem}: {r['start']}: " + ", ".join(
                f"{p} {r['rel_error_pct'][p]:+.2f} %" for p in ("r_ein", "slope", "q", "phi")))
    summary = {**record, "train_s": train_s, "device": history["device"],
               "epochs": len(history["val_elbo"]), "best_epoch": history["best_epoch"],
               "test_elbo": info["test_elbo"], "fits_s": fits_s, "unfinished_at_deadline": unfinished, "failed": failed,
               "gpu": torch.cuda.get_device_name() if history["device"].startswith("cuda") else None,
               "machine": torch_machine(), "wall_s": time.perf_counter() - started}
    save_json(out_dir / "prior_study.json", summary)
    if failed or unfinished:
        raise SystemExit(f"studies failed: {failed}; stopped at the deadline: {unfinished} (logs in {parts_dir})")
    return summary


def wait_until(running: dict, deadline: float | None) -> list[str]:
    """Wait for every process; at ``deadline`` (perf_counter time; None: never) stop those still running.
    Returns the outputs of the stopped ones."""
    stopped = []
    for out, proc in running.items():
        try:
            proc.wait(timeout=None if deadline is None else max(deadline - time.perf_counter(), 0.0))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            stopped.append(str(out))
    return stopped


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
    r.add_argument("--train-threads", type=int, default=None,
                   help="torch threads of the training and the stage's work after it (default: --threads; on a "
                        "CPU the training runs alone and can use every core, where the fits share them)")
    r.add_argument("--train-budget-s", type=float, default=None,
                   help="train only the epochs that fit in this many seconds, as a pilot of a few minibatches "
                        "estimates them (default: the configured max_epochs)")
    r.add_argument("--fit-device", default="cpu",
                   help="where the MAP fits render their images (cpu, cuda[:N], auto); the CPU should a short "
                        "fit there fail")
    r.add_argument("--deadline-s", type=float, default=None,
                   help="end within this many seconds of the start: pilots time an epoch, a fit step and the rest "
                        "of the VAE stage, the training gets what the fits leave, and fits still running at the "
                        "deadline are stopped (and named in prior_study.json)")
    r.add_argument("--out-dir", required=True)
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.add_argument("--resumable", action="store_true",
                   help="keep the resumable training state, as the workflow does (off: on a machine that is given "
                        "back it only costs time, four times the weights written every epoch)")
    args = parser.parse_args(argv)
    if args.command == "run" and args.train_threads is None:
        args.train_threads = args.threads
    if args.command == "pack":
        result = pack(Path(args.source), Path(args.out))
        print(f"wrote {args.out}: {result}")
        return result
    return run(args, parser)


if __name__ == "__main__":
    main()
