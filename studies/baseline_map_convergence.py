"""Does the paper-003 MAP fit converge?  One workflow mock, one start, several (steps, learning rate) schedules.

    python studies/baseline_map_convergence.py --config config/cpu_small.yaml --system system1 --noise high

Reads the mock and the trained VAE the workflow wrote under the configuration's results_dir (run
``snakemake baseline_mocks baseline_train_vae --configfile CONFIG`` first).  Each schedule ``STEPS:LR`` runs one
MAP start from the prior centre (start 0 of the workflow's multi-start fit); ``--truth-start STEPS:LR`` also runs
one from the truth, with the VAE latent set to the encoder's mean of the true source.  That start is not a
fit (it knows the answer): it shows whether the fits from the prior centre stop short of a better optimum, and
how far the best optimum the model reaches lies from the truth (the bias that the VAE's imperfect source model
leaves).  ``--well-specified`` is the control for that bias: the mock is re-observed (same truth, same noise
seed) with its source replaced by the VAE's own drawing of it, decoder(encoder mean), so that the model
holds the exact source and only noise and the lens model's degeneracies keep the fit from the truth.
``--misfit-fraction F`` runs between that control and the real mock: the source is (1 - F) x the VAE's drawing
+ F x the mock source, so F scales the part of the source that the VAE cannot draw (0: ``--well-specified``,
1: the mock source itself, re-observed to the same observation).  How the bias grows with F says how much better a
source prior has to draw the source to bring the lens within a given error.
``--seen-source`` asks whether the VAE's failure to draw the mock source is one of generalisation: the mock's
source is replaced by an image the VAE was trained on (picked from the training split by the same rule and of
the same kind as the workflow picks the held-out mock source), the intensity recalibrated to the system's medium
S/N, and the mock re-observed with the same truth and noise seed.
``--phi-start PHI`` (repeatable) also runs the first schedule from the prior centre with only the orientation
phi [rad] changed to PHI: a scan of where the fit ends as a function of where phi starts, which maps the
local optima that the workflow's few starts can fall into.
``--device cuda`` (or ``auto``) renders the images on a GPU (decoder, ray tracing, PSF) while the Pyro model and
Adam stay on the CPU: the fits are the same up to floating-point rounding.
``--pin-shear`` is a diagnostic, not a fit: the external shear's priors are replaced by ones of half width
PIN_HALF_WIDTH about the true (gamma1, gamma2), so the shear cannot absorb the source misfit and the fit shows
what the lens orientation does without that freedom.  Its log p values include those narrow priors and compare
only with other pinned runs.
``--only prior-centre`` or ``--only truth`` runs one side alone, so that the two can run in parallel processes
(``baseline_prior_study.py`` does, and joins their files).
For each run: the log posterior log p(obs, Theta) [nats], the nats gained over the last tenth of
the steps, wall and CPU seconds, and the relative errors of the lens parameters.

Writes ``--out`` (default results/studies/baseline_map_convergence.json) atomically.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # _config, _machine (shared with benchmarks/)

from astrorim.baseline.io import load_vae, save_json  # noqa: E402
from astrorim.baseline.latent_prior import encode_means  # noqa: E402
from astrorim.baseline.map_fit import initial_values, run_map  # noqa: E402
from astrorim.baseline import data as vae_data  # noqa: E402
from astrorim.baseline import stages  # noqa: E402
from astrorim.baseline.mocks import observe, render  # noqa: E402
from astrorim.baseline.priors import LATENT_SITE, LENS_PRIORS, PRIORS, SCALAR_PARAMS, PriorSpec  # noqa: E402
from astrorim.baseline.pyro_model import LensingModel, log_joint  # noqa: E402
from astrorim.baseline.settings import parse_settings  # noqa: E402
from astrorim.train.step import resolve_device  # noqa: E402

from _config import load_config_or_exit  # noqa: E402
from _machine import torch_machine  # noqa: E402

REPORTED = ("r_ein", "slope", "q", "phi", "gamma1", "gamma2")
SHEAR_PARAMS = ("gamma1", "gamma2")
PIN_HALF_WIDTH = 1e-4  # of each shear component: 0.3 % of system 1's gamma1 = 0.03


def pinned_shear_priors(truth: dict) -> dict[str, PriorSpec]:
    """The workflow's priors with each shear component confined to +-PIN_HALF_WIDTH about its true value."""
    pinned = dict(PRIORS)
    for name in SHEAR_PARAMS:
        value = float(truth[name])
        pinned[name] = PriorSpec(value, PIN_HALF_WIDTH, value - PIN_HALF_WIDTH, value + PIN_HALF_WIDTH, "", "pinned")
    return pinned


def schedule(text: str) -> tuple[int, float]:
    try:
        steps, lr = text.split(":")
        return int(steps), float(lr)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"schedule must be STEPS:LR (e.g. 3000:0.05), got {text!r}") from err


def run_one(model, obs, map_config, steps, lr, init, truth, start_name, polish=0, phi_start=None) -> dict:
    config = dataclasses.replace(map_config, n_starts=1, steps=steps, lr=lr, polish_iterations=polish)
    result = run_map(model, obs, config, init=init, progress=True)
    best = result.best_params()
    row = {"start": start_name, "phi_start": phi_start, "steps": steps, "lr": lr, "polish_iterations": polish,
           "log_joint": float(result.log_joint[0]),
           "log_joint_polish_gain": None if result.polish_gain is None else float(result.polish_gain[0]),
           "log_joint_gain_last_tenth": result.late_gain(0.1), "wall_s": result.wall_s, "cpu_s": result.cpu_s,
           "rel_error_pct": {k: 100 * (best[k] - truth[k]) / abs(truth[k]) for k in REPORTED}}
    where = start_name if phi_start is None else f"{start_name} to {phi_start:+.2f} rad"
    print(f"{where} start, {steps} steps, lr {lr}, polish {polish}: log p {row['log_joint']:.1f} (last tenth "
          f"+{row['log_joint_gain_last_tenth']:.1f}), {result.wall_s:.0f} s; errors [%] "
          + ", ".join(f"{k} {v:+.2f}" for k, v in row["rel_error_pct"].items()), flush=True)
    return row


def seen_source(settings, data_path: Path, system: str, forward, noise_seeds, parser):
    """A training-split source picked as the workflow picks the mock's (:func:`stages.mock_source`), and the
    truth with iota recalibrated so that the medium-noise observation keeps the system's S/N."""
    if not data_path.is_file():
        parser.error(f"{data_path} is missing: run `snakemake --cores 2 baseline_vae_data` with this configuration")
    if settings.systems[system].select is None:
        parser.error(f"--seen-source needs baseline.systems.{system}.select (the system names its source by origin)")
    ds = vae_data.read_dataset(data_path)
    return stages.mock_source(settings, system, ds.images["train"], ds.origin["train"], forward,
                              medium_noise_seed=int(noise_seeds[settings.noise_index("med")]))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="config/cpu_small.yaml")
    parser.add_argument("--system", default="system1")
    parser.add_argument("--noise", default="high", choices=("low", "med", "high"))
    parser.add_argument("--schedule", type=schedule, action="append", default=None,
                        help="STEPS:LR of a run from the prior centre (repeatable; default 1500:0.02 6000:0.02 "
                             "3000:0.05)")
    parser.add_argument("--truth-start", type=schedule, default=(1500, 0.02),
                        help="STEPS:LR of the run from the truth")
    parser.add_argument("--polish", type=int, action="append", default=None,
                        help="L-BFGS polish iterations after each prior-centre schedule; repeatable, each value "
                             "adds one more run of every schedule (0 = none; default: 0 only)")
    parser.add_argument("--seen-source", action="store_true",
                        help="replace the mock's source by a training-split image picked like it (the VAE has seen "
                             "it), recalibrate the intensity to the medium S/N and re-observe")
    parser.add_argument("--phi-start", type=float, action="append", default=None,
                        help="also run the first schedule (and the first --polish value) from the prior centre with "
                             "phi [rad] set to this value (repeatable; must lie inside the prior's support)")
    parser.add_argument("--truth-polish", type=int, default=0, help="L-BFGS polish iterations of the truth start")
    parser.add_argument("--well-specified", action="store_true",
                        help="replace the mock's source by the VAE's drawing of it (decoder of the encoder mean) "
                             "and re-observe with the same noise seed: a control with no source-model error")
    parser.add_argument("--misfit-fraction", type=float, default=None,
                        help="replace the mock's source by (1 - F) x the VAE's drawing + F x the source and "
                             "re-observe with the same noise seed (0 <= F <= 1; 0 is --well-specified)")
    parser.add_argument("--pin-shear", action="store_true",
                        help="diagnostic: hold the external shear within 1e-4 of the truth (see above)")
    parser.add_argument("--only", choices=("prior-centre", "truth"), default=None,
                        help="run only the prior-centre starts (schedules and --phi-start) or only the truth start")
    parser.add_argument("--device", default="cpu", help="where the images are rendered: cpu, cuda[:N] or auto")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="results/studies/baseline_map_convergence.json")
    args = parser.parse_args(argv)
    phi_support = LENS_PRIORS["phi"]
    for phi in args.phi_start or []:
        if not phi_support.low < phi < phi_support.high:
            parser.error(f"--phi-start {phi} lies outside phi's support "
                         f"({phi_support.low:.4f}, {phi_support.high:.4f})")
    if args.misfit_fraction is not None:
        if args.well_specified:
            parser.error("--well-specified is --misfit-fraction 0; give one")
        if not 0.0 <= args.misfit_fraction <= 1.0:
            parser.error(f"--misfit-fraction {args.misfit_fraction} lies outside [0, 1]")
    misfit_fraction = 0.0 if args.well_specified else args.misfit_fraction
    torch.set_num_threads(args.threads)
    config_path = Path(args.config)
    config = load_config_or_exit(parser, config_path)
    settings = parse_settings(config)
    baseline_dir = Path(config["results_dir"]) / "baseline"
    mock_path, vae_path = baseline_dir / "mocks" / f"{args.system}.npz", baseline_dir / "vae" / "vae.pt"
    for path in (mock_path, vae_path):
        if not path.is_file():
            parser.error(f"{path} is missing: run `snakemake --cores 2 baseline_mocks baseline_train_vae "
                         f"--configfile {config_path}` first")
    mock = stages.load_mock(mock_path)
    j = settings.noise_index(args.noise)
    sigma = float(mock["noise_levels"][j])
    obs = torch.as_tensor(mock["observations"][j])
    vae, prior, _ = load_vae(vae_path)
    forward = settings.forward(vae.decoder, device=resolve_device(args.device, key="--device"))
    truth = mock["truth"]
    source_note, source_origin = "mock source", str(mock["source_origin"])
    if args.seen_source:
        if misfit_fraction is not None:
            parser.error("--seen-source and --well-specified / --misfit-fraction are separate controls; give one")
        source, source_origin, truth = seen_source(settings, Path(config["data_dir"]) / "baseline" / "vae_data.h5",
                                                   args.system, forward, mock["seeds"], parser)
        obs = torch.as_tensor(observe(render(forward, source, truth), sigma, int(mock["seeds"][j])))
        mock = {**mock, "source": source}
        source_note = (f"training-split image {source_origin} (seen by the VAE), iota recalibrated to "
                       f"{truth['iota']:.4f}")

    model = LensingModel(forward, prior, sigma, pinned_shear_priors(truth) if args.pin_shear else PRIORS)
    latent = encode_means(vae, mock["source"][None])
    if misfit_fraction is not None:
        with torch.no_grad():
            drawn_source = vae.decoder(latent)[0].numpy()
        # as a weighted sum, so that the ends are the drawing and the source exactly
        source = (1.0 - misfit_fraction) * drawn_source + misfit_fraction * mock["source"]
        obs = torch.as_tensor(observe(render(forward, source, truth), sigma, int(mock["seeds"][j])))
        source_note = ("VAE drawing of the mock source (well-specified control)" if misfit_fraction == 0.0 else
                       f"VAE drawing of the mock source + {misfit_fraction:g} x its misfit (source - drawing)")
    truth_init = {k: torch.tensor([truth[k]], dtype=torch.float32) for k in SCALAR_PARAMS}
    truth_init[LATENT_SITE] = prior.white_from_latent(latent).float()
    log_joint_truth = float(log_joint(model, obs, {**truth_init, "z": latent})[0])
    print(f"log p at the truth (encoded source): {log_joint_truth:.1f}")

    schedules = args.schedule or [(1500, 0.02), (6000, 0.02), (3000, 0.05)]
    centre = args.only != "truth"
    runs = [run_one(model, obs, settings.map, steps, lr, None, truth, "prior centre", polish)
            for steps, lr in (schedules if centre else []) for polish in (args.polish or [0])]
    for phi in (args.phi_start or []) if centre else []:
        init = initial_values(model, 1, settings.map.init_jitter, settings.map.seed)
        init["phi"] = torch.tensor([phi], dtype=torch.float32)
        runs.append(run_one(model, obs, settings.map, *schedules[0], init, truth, "prior centre, phi moved",
                            (args.polish or [0])[0], phi_start=phi))
    if args.only != "prior-centre":
        runs.append(run_one(model, obs, settings.map, *args.truth_start, truth_init, truth, "truth",
                            args.truth_polish))
    result = {"machine": torch_machine(),
              "config": str(config_path), "system": args.system, "noise": args.noise, "sigma_noise": sigma,
              "source": source_note, "source_origin": source_origin, "misfit_fraction": misfit_fraction,
              "pinned_shear_half_width": PIN_HALF_WIDTH if args.pin_shear else None,
              "vae": str(vae_path), "vae_width": vae.config.width, "render_device": str(forward.device),
              "log_joint_at_truth_encoded_source": log_joint_truth, "runs": runs, "created_unix": time.time()}
    save_json(args.out, result)
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
