"""How well can each trained VAE draw the workflow's mock sources?  The source prior's fidelity, per mock.

    python studies/baseline_source_prior_fidelity.py --config config/cpu_small.yaml \
        --vae w16=results/cpu_small/baseline/vae/vae.pt --map-dir w16=results/cpu_small/baseline/map

The paper-003 fit can only place and lens a source that its VAE decoder can draw; where the decoder cannot
draw the true source, the lens parameters absorb part of the mismatch, which is the bias a fit started
from the truth still shows.  For each ``--vae LABEL=PATH`` and each mock system of ``--config`` this measures,
on the 64 x 64 peak-normalised true source:

* ``rms_encoded``: rms of decoder(encoder mean) - source (what the VAE does unaided);
* ``rms_best``: rms of the best least-squares decoder image, the whitened latent optimised by Adam from the
  encoder mean (the closest the prior's decoder can come; no prior term, so a lower bound on the residual
  the fit sees), with ``white_norm_best`` = |eps|^2 / d of that latent (about 1 for a typical prior draw);
* ``orientation_error_deg``: the position angle of the best image's light (flux-weighted second moments)
  minus the source's, and ``axis_ratio_best`` / ``axis_ratio_true`` of those moments: a source drawn with
  the wrong elongation trades against the lens's q and phi.

With ``--map-dir LABEL=DIR`` (a workflow ``baseline/map`` folder) the high-S/N MAP errors of that VAE's fits
(``SYSTEM_high.json``) are put beside its fidelity.  Writes ``--out`` (default
results/studies/baseline_source_prior_fidelity.json) atomically.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # _config, _machine (shared with benchmarks/)

from astrorim.baseline.io import load_json, load_vae, save_json  # noqa: E402
from astrorim.baseline.latent_prior import encode_means  # noqa: E402
from astrorim.baseline.stages import load_mock  # noqa: E402

from _config import load_config_or_exit  # noqa: E402
from _machine import torch_machine  # noqa: E402

MAP_PARAMS = ("r_ein", "slope", "q", "phi")


def labelled(text: str) -> tuple[str, str]:
    label, sep, value = text.partition("=")
    if not sep or not label or not value:
        raise argparse.ArgumentTypeError(f"expected LABEL=PATH, got {text!r}")
    return label, value


def light_moments(image: np.ndarray) -> tuple[float, float]:
    """(position angle [deg, in (-90, 90]], minor/major axis ratio) of the positive light's second moments."""
    img = np.clip(np.asarray(image, dtype=np.float64), 0, None)
    n = img.shape[0]
    c = np.arange(n) - (n - 1) / 2
    yy, xx = np.meshgrid(c, c, indexing="ij")
    w = img / img.sum()
    xm, ym = (w * xx).sum(), (w * yy).sum()
    cxx, cyy = (w * (xx - xm) ** 2).sum(), (w * (yy - ym) ** 2).sum()
    cxy = (w * (xx - xm) * (yy - ym)).sum()
    eig = np.linalg.eigvalsh(np.array([[cxx, cxy], [cxy, cyy]]))
    angle = 0.5 * np.degrees(np.arctan2(2 * cxy, cxx - cyy))
    return float(angle), float(np.sqrt(eig[0] / eig[1]))


def wrapped_angle_deg(delta: float) -> float:
    """An orientation difference folded into (-90, 90] degrees."""
    return float((delta + 90.0) % 180.0 - 90.0)


def best_decoder_fit(vae, prior, source: np.ndarray, encoded_latent: torch.Tensor, steps: int, lr: float,
                     seed: int) -> tuple[np.ndarray, float]:
    """The decoder image closest (least squares) to ``source``, from the encoder mean ``encoded_latent`` (1, d);
    returns it and |eps|^2/d."""
    torch.manual_seed(seed)
    target = torch.as_tensor(np.asarray(source, dtype=np.float32))[None]
    white = prior.white_from_latent(encoded_latent).detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([white], lr=lr)
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = ((vae.decoder(prior.latent_from_white(white)) - target) ** 2).mean()
        loss.backward()
        opt.step()
    with torch.no_grad():
        best = vae.decoder(prior.latent_from_white(white))[0].numpy()
    return best, float((white.detach() ** 2).mean())


def high_snr_map_errors(map_dir: str, system: str) -> dict[str, float]:
    """Relative error [%] of the lens parameters of the workflow's high-S/N MAP fit of ``system``."""
    path = Path(map_dir) / f"{system}_high.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no high-S/N MAP result of {system} in --map-dir {map_dir}")
    errors = load_json(path).get("rel_error_pct")
    if not isinstance(errors, dict):
        raise KeyError(f"{path}: no 'rel_error_pct' (is it a workflow baseline/map result?)")
    return {p: float(errors[p]) for p in MAP_PARAMS if p in errors}


def measure(vae_path: str, mocks: dict[str, dict], steps: int, lr: float, seed: int) -> dict:
    vae, prior, _ = load_vae(vae_path)
    vae.eval()
    for p in vae.parameters():
        p.requires_grad_(False)
    out = {"vae": vae_path, "vae_width": vae.config.width, "systems": {}}
    for name, mock in mocks.items():
        source = np.asarray(mock["source"], dtype=np.float32)
        latent = encode_means(vae, torch.as_tensor(source)[None])
        with torch.no_grad():
            encoded = vae.decoder(latent)[0].numpy()
        best, white_norm = best_decoder_fit(vae, prior, source, latent, steps, lr, seed)
        angle_true, ratio_true = light_moments(source)
        angle_best, ratio_best = light_moments(best)
        out["systems"][name] = {
            "source_origin": str(mock["source_origin"]),
            "rms_encoded": float(np.sqrt(np.mean((encoded - source) ** 2))),
            "rms_best": float(np.sqrt(np.mean((best - source) ** 2))),
            "white_norm_best": white_norm,
            "orientation_error_deg": wrapped_angle_deg(angle_best - angle_true),
            "axis_ratio_true": ratio_true, "axis_ratio_best": ratio_best}
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="config/cpu_small.yaml", help="names the mocks (its results_dir)")
    parser.add_argument("--vae", type=labelled, action="append", required=True, help="LABEL=PATH (repeatable)")
    parser.add_argument("--map-dir", type=labelled, action="append", default=[],
                        help="LABEL=DIR: that VAE's workflow baseline/map folder (optional, repeatable)")
    parser.add_argument("--steps", type=int, default=500, help="Adam steps of the best decoder fit")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="results/studies/baseline_source_prior_fidelity.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    config_path = Path(args.config)
    config = load_config_or_exit(parser, config_path)
    mock_dir = Path(config["results_dir"]) / "baseline" / "mocks"
    systems = sorted(config.get("baseline", {}).get("systems", {}))
    if not systems:
        parser.error(f"{config_path}: no baseline.systems")
    mocks = {}
    for name in systems:
        path = mock_dir / f"{name}.npz"
        if not path.is_file():
            parser.error(f"{path} is missing: run `snakemake --cores 2 baseline_mocks --configfile {config_path}`")
        mocks[name] = load_mock(path)
    map_dirs = dict(args.map_dir)
    unknown = sorted(set(map_dirs) - {label for label, _ in args.vae})
    if unknown:
        parser.error(f"--map-dir labels {unknown} name no --vae")
    results = {}
    for label, vae_path in args.vae:
        if not Path(vae_path).is_file():
            parser.error(f"--vae {label}={vae_path}: no such file")
        t0 = time.perf_counter()
        results[label] = measure(vae_path, mocks, args.steps, args.lr, args.seed)
        if label in map_dirs:
            results[label]["map_dir"] = map_dirs[label]
            for name in systems:
                results[label]["systems"][name]["map_high_snr_rel_error_pct"] = \
                    high_snr_map_errors(map_dirs[label], name)
        results[label]["wall_s"] = time.perf_counter() - t0
        for name, r in results[label]["systems"].items():
            print(f"{label} {name}: rms encoded {r['rms_encoded']:.4f}, best {r['rms_best']:.4f}, "
                  f"orientation {r['orientation_error_deg']:+.2f} deg, axis ratio {r['axis_ratio_best']:.3f} "
                  f"(true {r['axis_ratio_true']:.3f}); high-S/N MAP errors [%] {r.get('map_high_snr_rel_error_pct')}")
    result = {"machine": torch_machine(),
              "config": str(config_path), "steps": args.steps, "lr": args.lr, "vaes": results,
              "created_unix": time.time()}
    save_json(args.out, result)
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
