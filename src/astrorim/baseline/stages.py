"""The baseline's workflow steps as functions of (settings, input paths, output paths).

The Snakemake scripts ``scripts/baseline_*.py`` are thin wrappers around these; tests call them directly.
Every output is written atomically.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from astrorim.baseline import data as vae_data
from astrorim.baseline import io, mocks, plots, summary
from astrorim.baseline.latent_prior import encode_means, fit_latent_prior
from astrorim.baseline.map_fit import run_map
from astrorim.baseline.nuts import run_nuts
from astrorim.baseline.priors import SCALAR_PARAMS
from astrorim.baseline.pyro_model import LensingModel
from astrorim.baseline.settings import NOISE_LABELS, PAPER_SNR, BaselineSettings
from astrorim.baseline.snr import signal_to_noise
from astrorim.baseline.source_model import source_plane_grid, stamp_half_width
from astrorim.baseline.train_vae import train_vae
from astrorim.baseline.validation import reconstruct, rotation_test
from astrorim.io.atomic import write_text_atomic

PathLike = str | os.PathLike


# --------------------------------------------------------------------------------------------- VAE
def build_vae_data(settings: BaselineSettings, shards: dict[str, Sequence[PathLike]], out: PathLike) -> dict:
    """Simulator sources of ``shards`` (split -> files) + HDF cutouts -> the VAE data file."""
    max_sim = settings.max_sim_per_split or None
    ds = vae_data.build_dataset({k: list(v) for k, v in shards.items()}, settings.use_hdf, seed=settings.seed,
                                hdf_val_fraction=settings.hdf_val_fraction,
                                hdf_test_fraction=settings.hdf_test_fraction, max_sim=max_sim)
    vae_data.write_dataset(out, ds, attrs={"seed": settings.seed, "sim_versions": ",".join(settings.sim_versions),
                                           "hdf": settings.use_hdf})
    return ds.counts()


def train_vae_stage(settings: BaselineSettings, data_path: PathLike, model_out: PathLike, history_out: PathLike,
                    fig_recon: PathLike, fig_rotation: PathLike, fig_training: PathLike, progress: bool = True,
                    resumable: bool = True) -> dict:
    """Train the VAE, fit the latent prior on the training set, write model + history + Figs. 2-3.

    With ``resumable``, the training state is kept in ``resume/vae_training_state.pt`` beside ``model_out`` until
    the outputs are written, so a rerun after an interruption continues the training (Snakemake deletes a failed
    job's declared outputs, never this file).  Writing it costs four times the weights per epoch (640 MB at the
    paper's width), which on a machine that is given back after the run buys nothing."""
    ds = vae_data.read_dataset(data_path)
    resume_path = vae_resume_path(model_out)
    vae, history = train_vae(ds.images["train"], ds.images["val"], settings.vae, settings.train, progress=progress,
                             resume_path=resume_path if resumable else None)
    prior = fit_latent_prior(encode_means(vae, ds.images["train"]).numpy(), settings.prior_cov_factor)
    test = ds.images["test"] if len(ds.images["test"]) else ds.images["val"]
    test_origin = ds.origin["test"] if len(ds.images["test"]) else ds.origin["val"]
    # Fig. 2: up to 8 held-out images, alternating between the data sets present.
    order = _interleave_by_prefix(test_origin, 8)
    recon = reconstruct(vae, test[order], seed=settings.seed)
    plots.save_figure(plots.figure_reconstructions(test[order], recon, test_origin[order]), fig_recon)
    # Fig. 3: of the images shown in Fig. 2, the one with the largest light radius.
    pick = order[int(np.argmax([mocks.light_radius(test[i]) for i in order]))]
    rot = rotation_test(vae, test[pick], [0, 45, 90, 135, 180, 270], settings.vae.decoder_sigma, settings.seed)
    plots.save_figure(plots.figure_rotation(rot, str(test_origin[pick])), fig_rotation)
    plots.save_figure(plots.figure_training(history.to_dict()), fig_training)
    from astrorim.baseline.train_vae import mean_elbo

    info = {"history": history.to_dict(), "counts": ds.counts(), "vae": settings.vae.to_dict(),
            "train": settings.train.to_dict(),
            "test_elbo": mean_elbo(vae, torch.as_tensor(test), seed=settings.seed),
            "reconstruction_rms": float(np.sqrt(np.mean((recon - test[order]) ** 2))),
            "rotation": {"origin": str(test_origin[pick]), "angles_deg": rot.angles_deg, "rms_error": rot.rms_error},
            "latent_prior": {"cov_factor": prior.cov_factor, "trace_cov": float(torch.trace(prior.cov))}}
    io.save_vae(model_out, vae, prior, extra={"history": history.to_dict(), "counts": ds.counts()})
    io.save_json(history_out, info)
    resume_path.unlink(missing_ok=True)
    if resume_path.parent.is_dir() and not any(resume_path.parent.iterdir()):
        resume_path.parent.rmdir()
    return info


def vae_resume_path(model_out: PathLike) -> Path:
    """Where :func:`train_vae_stage` keeps the resumable training state of the VAE written to ``model_out``."""
    return Path(model_out).parent / "resume" / "vae_training_state.pt"


def _interleave_by_prefix(origins: np.ndarray, n: int) -> np.ndarray:
    groups: dict[str, list[int]] = {}
    for i, o in enumerate(np.asarray(origins).astype(str)):
        groups.setdefault(o.split("/")[0], []).append(i)
    out, k = [], 0
    while len(out) < min(n, len(origins)):
        for g in groups.values():
            if k < len(g) and len(out) < n:
                out.append(g[k])
        k += 1
    return np.asarray(out, dtype=int)


# ------------------------------------------------------------------------------------------- mocks
def mock_source(settings: BaselineSettings, system: str, images: np.ndarray, origins: np.ndarray,
                forward, medium_noise_seed: int) -> tuple[np.ndarray, str, dict[str, float]]:
    """The source of mock ``system`` among ``images`` (its ``select`` rule or ``origin``, among images of the
    configured kind), denoised, and its truth with iota calibrated so that the medium-noise observation, drawn
    with ``medium_noise_seed``, has the system's ``target_snr_medium``."""
    sys_cfg = settings.systems[system]
    prefix = "hdf/" if settings.use_hdf else "sim/"
    idx = mocks.select_source(images, origins, select=sys_cfg.select, origin=sys_cfg.origin, prefix=prefix)
    source = mocks.denoise_source(images[idx], mocks.needs_denoising(origins[idx]))
    truth = dict(sys_cfg.truth)
    if sys_cfg.target_snr_medium is not None:
        truth["iota"] = mocks.calibrate_iota(forward, source, truth, settings.noise_levels[NOISE_LABELS.index("med")],
                                             float(sys_cfg.target_snr_medium), medium_noise_seed)
    return source, str(origins[idx]), truth


def mocks_stage(settings: BaselineSettings, data_path: PathLike, out_paths: dict[str, PathLike],
                table1_out: PathLike) -> pd.DataFrame:
    """Mock systems (one npz per system) and Table 1 (S/N of every observation)."""
    ds = vae_data.read_dataset(data_path)
    test, origins = ds.images["test"], ds.origin["test"]
    if len(test) == 0:
        raise ValueError(f"{data_path}: the VAE test split is empty; mock sources come from it")
    forward = settings.forward(None)
    rows = []
    for k, (name, sys_cfg) in enumerate(settings.systems.items()):
        if name not in out_paths:
            continue
        seed = settings.seed + 1000 * (k + 1)
        source, origin, truth = mock_source(settings, name, test, origins, forward,
                                            medium_noise_seed=seed + NOISE_LABELS.index("med"))
        system = mocks.make_system(name, forward, source, origin, truth, list(settings.noise_levels), seed)
        io.save_npz(out_paths[name], truth_names=np.asarray(SCALAR_PARAMS),
                    truth_values=np.asarray([system.truth[p] for p in SCALAR_PARAMS]), source=system.source,
                    source_origin=np.asarray(system.source_origin), noiseless=system.noiseless,
                    observations=system.observations, noise_levels=np.asarray(system.noise_levels),
                    seeds=np.asarray(system.seeds), pixel_scale=np.asarray(settings.grid.pixel_scale))
        for j, (sigma, obs) in enumerate(zip(system.noise_levels, system.observations)):
            snr = signal_to_noise(obs, sigma, settings.grid.pixel_scale)
            paper = PAPER_SNR.get(name, (np.nan,) * 3)
            rows.append({"system": name, "noise": NOISE_LABELS[j], "sigma_noise": sigma, "snr": round(snr.snr, 1),
                         "snr_paper": paper[j] if j < len(paper) else np.nan, "mask_pixels": snr.mask_pixels,
                         "iota": system.truth["iota"], "source_origin": system.source_origin})
    table = pd.DataFrame(rows)
    write_text_atomic(table1_out, table.to_csv(index=False))
    return table


def load_mock(path: PathLike) -> dict:
    d = io.load_npz(path)
    d["truth"] = {str(k): float(v) for k, v in zip(d["truth_names"], d["truth_values"])}
    d["source_origin"] = str(d["source_origin"])
    return d


# ----------------------------------------------------------------------------------------- MAP / NUTS
def _model(settings: BaselineSettings, vae_path: PathLike, sigma: float) -> LensingModel:
    vae, prior, _ = io.load_vae(vae_path)
    return LensingModel(settings.forward(vae.decoder), prior, sigma)


def map_stage(settings: BaselineSettings, vae_path: PathLike, mock_path: PathLike, noise: str, npz_out: PathLike,
              json_out: PathLike, progress: bool = True) -> dict:
    """Multi-start MAP of one (system, noise level); writes every start's values and the best one."""
    mock = load_mock(mock_path)
    j = settings.noise_index(noise)
    sigma = float(mock["noise_levels"][j])
    model = _model(settings, vae_path, sigma)
    result = run_map(model, torch.as_tensor(mock["observations"][j]), settings.map, progress=progress)
    io.save_npz(npz_out, **{f"value_{k}": v for k, v in result.values.items()}, log_joint=result.log_joint,
                best=np.asarray(result.best), history_steps=np.asarray(result.history_steps),
                history_log_joint=np.asarray(result.history_log_joint), wall_s=np.asarray(result.wall_s))
    best = result.best_params()
    info = {"noise": noise, "sigma_noise": sigma, "steps": result.steps, "n_starts": settings.map.n_starts,
            "wall_s": result.wall_s, "seconds_per_step": result.wall_s / result.steps, "best_start": result.best,
            "log_joint": result.log_joint.tolist(), "log_joint_gain_last_tenth": result.late_gain(0.1),
            "polish_iterations": settings.map.polish_iterations,
            "log_joint_polish_gain": None if result.polish_gain is None else result.polish_gain.tolist(),
            "best": best, "truth": mock["truth"],
            "rel_error_pct": {p: 100 * (best[p] - mock["truth"][p]) / abs(mock["truth"][p])
                              for p in SCALAR_PARAMS if mock["truth"][p] != 0}}
    io.save_json(json_out, info)
    return info


def load_map(path: PathLike) -> dict:
    d = io.load_npz(path)
    best = int(d["best"])
    values = {k[len("value_"):]: v for k, v in d.items() if k.startswith("value_")}
    return {"values": values, "best": best, "best_values": {k: v[best] for k, v in values.items()},
            "log_joint": d["log_joint"], "wall_s": float(d["wall_s"]),
            "history_steps": d["history_steps"], "history_log_joint": d["history_log_joint"]}


def nuts_stage(settings: BaselineSettings, vae_path: PathLike, mock_path: PathLike, map_path: PathLike, noise: str,
               npz_out: PathLike, json_out: PathLike, progress: bool = True) -> dict:
    """NUTS from the best MAP start of one (system, noise level)."""
    mock = load_mock(mock_path)
    j = settings.noise_index(noise)
    sigma = float(mock["noise_levels"][j])
    model = _model(settings, vae_path, sigma)
    fit = load_map(map_path)
    init = {k: v[None] for k, v in fit["best_values"].items() if k != "z"}
    result = run_nuts(model, torch.as_tensor(mock["observations"][j]), init, settings.nuts, progress=progress)
    io.save_npz(npz_out, **{f"sample_{k}": v for k, v in result.samples.items()})
    info = {"noise": noise, "sigma_noise": sigma, "warmup": settings.nuts.warmup, "samples": result.n_samples,
            "max_tree_depth": settings.nuts.max_tree_depth, "warmup_s": result.warmup_s,
            "sampling_s": result.sampling_s, "seconds_per_sample": result.seconds_per_sample,
            "gradients_per_sample": result.gradients_per_sample, "diagnostics": result.diagnostics}
    io.save_json(json_out, info)
    return info


def load_samples(path: PathLike) -> dict[str, np.ndarray]:
    return {k[len("sample_"):]: v for k, v in io.load_npz(path).items() if k.startswith("sample_")}


# ------------------------------------------------------------------------------------------ report
def report_stage(settings: BaselineSettings, vae_path: PathLike, mock_paths: dict[str, PathLike],
                 map_paths: dict[tuple[str, str], PathLike], nuts_paths: dict[tuple[str, str], PathLike],
                 nuts_json: dict[tuple[str, str], PathLike], fig_map: dict[str, PathLike],
                 fig_post: dict[str, PathLike], map_csv: PathLike, post_csv: PathLike) -> None:
    """Figs. 6-9 and the MAP / posterior accuracy tables."""
    vae, prior, _ = io.load_vae(vae_path)
    forward = settings.forward(vae.decoder)
    map_rows, post_rows = [], []
    for name, mock_path in mock_paths.items():
        mock = load_mock(mock_path)
        truth = mock["truth"]
        ext = float(stamp_half_width(torch.tensor(truth["scale"]), settings.stamp_width_per_scale)) * 1.15
        sx, sy = source_plane_grid(ext, 128)
        true_src = forward.source_on_grid(torch.as_tensor(mock["source"])[None],
                                          mocks.truth_tensors(truth), sx, sy)[0].numpy()
        rows, sample_sets, labels = [], [], []
        for j, sigma in enumerate(mock["noise_levels"]):
            noise = NOISE_LABELS[j]
            fit = load_map(map_paths[(name, noise)])
            best = {k: torch.as_tensor(np.asarray(v))[None].float() for k, v in fit["best_values"].items()}
            with torch.no_grad():
                stamps = forward.stamps(best["z"])
                model_img = forward.image_from_stamps(stamps, best)[0].numpy()
                fit_src = forward.source_on_grid(stamps, best, sx, sy)[0].numpy()
            snr = signal_to_noise(mock["observations"][j], float(sigma), settings.grid.pixel_scale).snr
            rows.append({"label": noise, "sigma": float(sigma), "snr": snr, "obs": mock["observations"][j],
                         "fit": model_img, "src_true": true_src, "src_fit": fit_src, "extent": ext,
                         "fov": 0.5 * settings.grid.fov_arcsec})
            est = {p: float(fit["best_values"][p]) for p in SCALAR_PARAMS}
            map_rows += summary.map_rows(name, noise, float(sigma), truth, est, fit["wall_s"],
                                         int(fit["history_steps"][-1]))
            if (name, noise) in nuts_paths:
                samples = load_samples(nuts_paths[(name, noise)])
                ess = {}
                if (name, noise) in nuts_json:
                    diag = io.load_json(nuts_json[(name, noise)]).get("diagnostics", {})
                    ess = {p: diag[f"ess_{p}"][0] for p in SCALAR_PARAMS if f"ess_{p}" in diag}
                post_rows += summary.posterior_rows(name, noise, float(sigma), truth, samples, ess)
                sample_sets.append(samples)
                labels.append(f"{noise} S/N ({snr:.0f})")
        plots.save_figure(plots.figure_map(rows, name, mock["source_origin"]), fig_map[name])
        if sample_sets and name in fig_post:
            plots.save_figure(plots.figure_posteriors(sample_sets, labels, truth, name, mock["source_origin"]),
                              fig_post[name])
    write_text_atomic(map_csv, summary.to_frame(map_rows).to_csv(index=False))
    write_text_atomic(post_csv, summary.to_frame(post_rows).to_csv(index=False))


# ----------------------------------------------------------------------------------------- compare
def _round_robin_examples(shard_paths: Sequence[PathLike], n_max: int) -> list[tuple[str, "object", int]]:
    """Up to ``n_max`` (example id, shard, index) taken in turn from each shard (one per version)."""
    from astrorim.io.shards import read_shard

    shards = [read_shard(path, diagnostics=True) for path in shard_paths]
    picked, i = [], 0
    while len(picked) < n_max and any(i < len(s) for s in shards):
        for shard in shards:
            if i < len(shard) and len(picked) < n_max:
                a = shard.attrs
                picked.append((f"{a['phase']}/{a['version']}/{int(a['start_index']) + i:06d}", shard, i))
        i += 1
    return picked


def compare_stage(settings: BaselineSettings, vae_path: PathLike, checkpoint: PathLike,
                  shard_paths: Sequence[PathLike], mock_paths: dict[str, PathLike],
                  map_paths: dict[tuple[str, str], PathLike], nuts_json: dict[tuple[str, str], PathLike],
                  nuts_paths: dict[tuple[str, str], PathLike], table_out: PathLike, summary_out: PathLike,
                  fig_out: PathLike, progress: bool = True) -> pd.DataFrame:
    """AstroRIM, AstroRIM + fit (``astrorim_fit``), the paper-003 MAP fit and (on the mocks) NUTS, lens by lens,
    on two sets:

    - ``mock``: every (system, noise level) of the baseline's mock systems; MAP and NUTS results are the
      baseline's own stages' (``map_paths``, ``nuts_*``); AstroRIM sees the mock rebinned onto its grid.
    - ``test``: the first ``compare.n_examples`` held-out test examples of ``shard_paths`` (taken in turn
      from each shard); AstroRIM sees the observation as simulated, the MAP fit (``compare.map_steps``
      steps) the observation minus the true lens light, since paper 003's model has none.

    Writes the per-lens table, the per-(set, method) summary and the figure; returns the summary.
    """
    from dataclasses import replace

    from tqdm import tqdm

    from astrorim.baseline.compare import (COMMON_PARAMS, AstroRIMTimer, Panel, astrorim_lens_params,
                                           comparison_figure, comparison_row, comparison_summary, fit_image,
                                           mock_on_model_grid)
    from astrorim.baseline.compare_fit import AstroRIMFitRunner, mock_psf_kernel

    vae, prior, _ = io.load_vae(vae_path)
    forward = settings.forward(vae.decoder)
    rim = AstroRIMTimer(checkpoint)
    rim_fit = AstroRIMFitRunner(rim.model, rim.device)  # "AstroRIM + fit": the network's estimate refined
    rows, panels = [], []

    for name, mock_path in mock_paths.items():
        mock = load_mock(mock_path)
        truth = {COMMON_PARAMS[k]: v for k, v in mock["truth"].items() if k in COMMON_PARAMS}
        for j, sigma in enumerate(mock["noise_levels"]):
            noise = NOISE_LABELS[j]
            example = f"{name}/{noise}"
            grid = mock_on_model_grid(mock["observations"][j], float(sigma), settings.grid.fov_arcsec, rim.npix)
            with torch.no_grad():
                true_source = forward.source_on_grid(torch.as_tensor(mock["source"])[None].float(),
                                                     mocks.truth_tensors(mock["truth"]), grid.x, grid.y)[0].numpy()
                fit = load_map(map_paths[(name, noise)])
                best = {k: torch.as_tensor(np.asarray(v))[None].float() for k, v in fit["best_values"].items()}
                map_source = forward.source_on_grid(forward.stamps(best["z"]), best, grid.x, grid.y)[0].numpy()
            true_source, map_source = true_source * grid.flux_ratio, map_source * grid.flux_ratio
            rim_source, rim_params, rim_wall = rim(grid.image, grid.noise_sigma)
            extra = {"sigma_noise": float(sigma)}
            rows.append(comparison_row("mock", example, "astrorim", truth,
                                       astrorim_lens_params(rim_params, rim.npix, grid.pixel_scale), rim_wall,
                                       true_source, rim_source, **extra))
            fit_source, fit_params, fit_wall, fit_extra = rim_fit(
                grid.image, grid.noise_sigma, mock_psf_kernel(settings.psf_sigma_arcsec, grid.pixel_scale),
                grid.pixel_scale)
            rows.append(comparison_row("mock", example, "astrorim_fit", truth, fit_params, fit_wall, true_source,
                                       fit_source, **extra, **fit_extra))
            map_est = {COMMON_PARAMS[k]: float(fit["best_values"][k]) for k in COMMON_PARAMS}
            rows.append(comparison_row("mock", example, "paper003_map", truth, map_est, fit["wall_s"],
                                       true_source, map_source, **extra))
            if (name, noise) in nuts_paths and (name, noise) in nuts_json:
                samples = load_samples(nuts_paths[(name, noise)])
                info = io.load_json(nuts_json[(name, noise)])
                post_mean = {COMMON_PARAMS[k]: float(np.mean(samples[k])) for k in COMMON_PARAMS if k in samples}
                rows.append(comparison_row("mock", example, "paper003_nuts", truth, post_mean,
                                           info["warmup_s"] + info["sampling_s"], **extra))
            if noise == "med":
                panels.append(Panel(f"{example} (mock)", grid.image, true_source, rim_source, map_source))

    map_cfg = replace(settings.map, steps=int(settings.compare.get("map_steps", settings.map.steps)))
    examples = _round_robin_examples(shard_paths, int(settings.compare.get("n_examples", 1)))
    for example, shard, i in tqdm(examples, desc="compare: test examples", disable=not progress):
        t = shard.truth.iloc[i]
        observed = shard.arrays["observed"][i].astype(np.float64)
        sigma = float(shard.arrays["noise_sigma"][i])
        pixel_scale = float(t["pixel_scale"])
        diag = shard.diagnostics
        if not ("noiseless" in diag and "lensed_source_noiseless" in diag):
            raise ValueError(f"{shard.path}: the comparison needs the lens light, i.e. shards simulated with "
                             "store_diagnostics (simulation.phases.test.store_diagnostics: true)")
        without_lens_light = observed - (diag["noiseless"][i] - diag["lensed_source_noiseless"][i])
        fit = fit_image(without_lens_light, sigma, pixel_scale, vae.decoder, prior, psf_sigma_arcsec=None,
                        psf_kernel=shard.arrays["psf"][i], map_config=map_cfg,
                        stamp_width_per_scale=settings.stamp_width_per_scale)
        rim_source, rim_params, rim_wall = rim(observed.astype(np.float32), sigma)
        truth = {p: float(t[p]) for p in COMMON_PARAMS.values()}
        true_source = shard.arrays["source"][i]
        extra = {"sigma_noise": sigma}
        rows.append(comparison_row("test", example, "astrorim", truth,
                                   astrorim_lens_params(rim_params, rim.npix, pixel_scale), rim_wall, true_source,
                                   rim_source, **extra))
        fit_source, fit_params, fit_wall, fit_extra = rim_fit(observed, sigma, shard.arrays["psf"][i], pixel_scale,
                                                              gain=float(t["gain"]) if "gain" in t.index else None)
        rows.append(comparison_row("test", example, "astrorim_fit", truth, fit_params, fit_wall, true_source,
                                   fit_source, **extra, **fit_extra))
        rows.append(comparison_row("test", example, "paper003_map", truth,
                                   {COMMON_PARAMS[k]: fit.params[k] for k in COMMON_PARAMS}, fit.wall_s,
                                   true_source, fit.source, **extra))
        if len(panels) < len(mock_paths) + 2:
            panels.append(Panel(f"{example} (test)", observed, true_source, rim_source, fit.source))

    table = pd.DataFrame(rows)
    summary_frame = comparison_summary(table)
    write_text_atomic(table_out, table.to_csv(index=False))
    write_text_atomic(summary_out, summary_frame.to_csv(index=False))
    plots.save_figure(comparison_figure(panels, summary_frame, "AstroRIM vs the paper-003 baseline (MAP, NUTS)"),
                      fig_out)
    return summary_frame
