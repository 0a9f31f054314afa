"""Per-example rows of "AstroRIM" and "AstroRIM + fit" on one held-out test shard (rule fit_shard).

    settings = FitSettings.from_config(config["evaluation"].get("fit"))
    n = examples_to_fit(spec.start_index, spec.n, settings.max_per_version)   # this shard's share
    rows = fit_shard_rows(model, shard_path, n)                              # long frame, 2 rows per example

Every example is reconstructed once by :func:`astrorim.inference.reconstruct` with ``refine=True``, batch 1,
given its shard's PSF, noise sigma, pixel scale and gain (the Poisson term), so the network's estimate
("astrorim": its source and its amortised lens parameters) and the fit's ("astrorim_fit": the fit's regularised
source and its lens parameters with Laplace errors) come from the same call on the same examples.

The fit's source lives on a grid spanning +-``FitConfig.source_radius`` of the half field (docs/fit.md); for the
Table 2 metrics it is interpolated bilinearly onto the truth's grid (the image grid, outer pixel edges at +-1),
zero outside its support.  Both are surface brightness in the input's units per pixel, so no flux rescaling.

Columns (one row per (method, example)): ``method``, the evaluation's ID columns and ``shard``, the metric
columns of :mod:`astrorim.evaluate.metrics`, ``true_/pred_/err_`` of the nine parameters and theta_E
(:func:`astrorim.evaluate.recovery.parameter_frame`), ``true_/pred_`` of e1, e2, gamma1, gamma2 (lenstronomy
conventions), the fit's 1-sigma errors ``sigma_<name>`` (NaN for the network), ``chi2_per_pixel``,
``log_evidence``, ``converged``, ``flag``, ``fit_reason`` (the fit's) and ``seconds`` (network + fit, per lens).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from astrorim.evaluate.metrics import batch_metrics
from astrorim.evaluate.recovery import parameter_frame
from astrorim.params import PARAMETER_NAMES, ellipticity_from_q_phi, shear_components

METHODS = ("astrorim", "astrorim_fit")
METHOD_LABELS = {"astrorim": "AstroRIM", "astrorim_fit": "AstroRIM + fit"}
COMPONENTS = ("e1", "e2", "gamma1", "gamma2")
# Parameters with Laplace errors scored for calibration: column stem of the prediction, of the truth.
CALIBRATED = ("theta_E", "e1", "e2", "gamma1", "gamma2")


@dataclass(frozen=True)
class FitSettings:
    """Config ``evaluation.fit`` (config/schema.yaml): whether the fit rows are made, on how many examples."""

    enabled: bool = True
    max_per_version: int = 50   # the first n test examples of each version (seed order): a stratified subset
    threads: int = 1

    @classmethod
    def from_config(cls, section: dict | None) -> "FitSettings":
        section = dict(section or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(section) - known)
        if unknown:
            raise KeyError(f"config evaluation.fit: unknown keys {unknown}; known: {sorted(known)}")
        settings = cls(**section)
        if settings.max_per_version < 1 or settings.threads < 1:
            raise ValueError(f"config evaluation.fit: max_per_version and threads must be >= 1, got {settings}")
        return settings


def examples_to_fit(start_index: int, n: int, max_per_version: int) -> int:
    """How many of a shard's ``n`` examples (stream indices ``start_index``..) are among the first
    ``max_per_version`` of their version."""
    return int(max(0, min(n, max_per_version - start_index)))


def resample_fit_source(fit_source: np.ndarray, source_radius: float | None, npix: int) -> np.ndarray:
    """The fit's (n, m, m) source on its +-``source_radius`` grid, bilinearly interpolated onto the (n, npix,
    npix) image grid (outer pixel edges at +-1); zero outside the fit's grid.  ``None``: same extent."""
    src = torch.as_tensor(np.asarray(fit_source, dtype=np.float64))
    if src.ndim != 3:
        raise ValueError(f"fit_source must be (n, m, m), got shape {tuple(src.shape)}")
    radius = 1.0 if source_radius is None else float(source_radius)
    centres = (torch.arange(npix, dtype=torch.float64) + 0.5) / npix * 2.0 - 1.0   # image grid, normalised
    u = centres / radius                                                             # fit-grid coordinates
    gy, gx = torch.meshgrid(u, u, indexing="ij")
    grid = torch.stack([gx, gy], dim=-1).expand(src.shape[0], npix, npix, 2)
    out = torch.nn.functional.grid_sample(src[:, None], grid, mode="bilinear", padding_mode="zeros",
                                          align_corners=False)[:, 0]
    return out.numpy()


def _components(table: pd.DataFrame, prefix: str = "") -> dict[str, np.ndarray]:
    e1, e2 = ellipticity_from_q_phi(table[f"{prefix}q"].to_numpy(float), table[f"{prefix}phi"].to_numpy(float))
    g1, g2 = shear_components(table[f"{prefix}gamma"].to_numpy(float),
                              table[f"{prefix}gamma_phi"].to_numpy(float))
    return {"e1": np.asarray(e1, float), "e2": np.asarray(e2, float),
            "gamma1": np.asarray(g1, float), "gamma2": np.asarray(g2, float)}


def method_rows(method: str, ids: pd.DataFrame, truth: pd.DataFrame, npix: int, metrics: list[dict],
                nine: dict[str, np.ndarray], components: dict[str, np.ndarray],
                sigma: dict[str, np.ndarray] | None = None, fit_columns: dict[str, np.ndarray] | None = None,
                seconds: np.ndarray | None = None) -> pd.DataFrame:
    """Rows of one method: IDs, metrics, parameter recovery, components with truth, errors, fit diagnostics."""
    n = len(ids)
    frame = pd.concat([ids.reset_index(drop=True), pd.DataFrame(metrics)], axis=1)
    rec = parameter_frame(truth.reset_index(drop=True), nine, npix).reset_index(drop=True)
    frame = pd.concat([frame, rec], axis=1)
    for name in COMPONENTS:
        frame[f"true_{name}"] = truth[name].to_numpy(float)
        frame[f"pred_{name}"] = np.asarray(components[name], float)
    for name in CALIBRATED:
        frame[f"sigma_{name}"] = (np.full(n, math.nan) if sigma is None else np.asarray(sigma[name], float))
    for name, default in (("chi2_per_pixel", math.nan), ("log_evidence", math.nan), ("converged", None),
                          ("flag", ""), ("fit_reason", "")):
        frame[name] = (fit_columns[name] if fit_columns is not None else [default] * n)
    frame["seconds"] = math.nan if seconds is None else seconds
    frame.insert(0, "method", method)
    return frame


def fit_examples(model, ex, *, fit_config=None, progress=None) -> pd.DataFrame:
    """Both methods' rows for every example of ``ex`` (an :class:`astrorim.evaluate.pipeline.ExampleSet`)."""
    from astrorim.fit import FitConfig
    from astrorim.inference import reconstruct

    fit_config = fit_config or FitConfig()
    truth = ex.truth.reset_index(drop=True)
    params, net_src, fit_src, seconds = [], [], [], []
    for i in range(len(ex)):
        t0 = time.perf_counter()
        res = reconstruct(ex.observed[i], model, noise_sigma=float(ex.noise_sigma[i]), psf=ex.psf[i],
                          pixel_scale=float(truth.at[i, "pixel_scale"]), refine=True,
                          gain=float(truth.at[i, "gain"]), fit_config=fit_config, device="cpu")
        seconds.append(time.perf_counter() - t0)
        params.append(res.params)
        net_src.append(res.source)
        fit_src.append(res.fit_source)
        if progress is not None:
            progress.update()
    table = pd.concat(params, ignore_index=True)
    fit_on_grid = resample_fit_source(np.stack(fit_src), fit_config.source_radius, ex.npix).astype(np.float32)
    labels = [f"{t.shard}#{t.index} ({t.version})" for t in truth[["shard", "index", "version"]].itertuples()]
    ids = truth[["version", "seed", "phase", "split", "index", "shard"]]
    seconds = np.asarray(seconds)
    network = method_rows(
        "astrorim", ids, truth, ex.npix, batch_metrics(ex.source, np.stack(net_src), ex.observed, labels=labels),
        {p: table[f"amortised_{p}"].to_numpy(float) for p in PARAMETER_NAMES},
        _components(table, "amortised_"), seconds=seconds)
    sigma = {"theta_E": table["theta_e_arcsec_err"].to_numpy(float)}
    sigma.update({name: table[f"{name}_err"].to_numpy(float) for name in COMPONENTS})
    fitted = method_rows(
        "astrorim_fit", ids, truth, ex.npix, batch_metrics(ex.source, fit_on_grid, ex.observed, labels=labels),
        {p: table[p].to_numpy(float) for p in PARAMETER_NAMES},
        {name: table[name].to_numpy(float) for name in COMPONENTS}, sigma,
        {"chi2_per_pixel": table["chi2_per_pixel"].to_numpy(float),
         "log_evidence": table["log_evidence"].to_numpy(float),
         "converged": table["converged"].astype(bool).to_numpy(), "flag": table["flag"].astype(str).to_numpy(),
         "fit_reason": table["fit_reason"].fillna("").astype(str).to_numpy()}, seconds)
    return pd.concat([network, fitted], ignore_index=True)


def fit_shard_rows(checkpoint: str | os.PathLike, shard: str | os.PathLike, n_examples: int, *,
                   threads: int = 1, expected_npix: int | None = None) -> pd.DataFrame:
    """The first ``n_examples`` of one test shard through network and fit (both methods' rows)."""
    from astrorim.evaluate.leakage import check_no_leakage
    from astrorim.evaluate.pipeline import load_examples
    from astrorim.model.checkpoint import load_model
    from astrorim.progress import Progress

    torch.set_num_threads(int(threads))
    model, meta = load_model(checkpoint, map_location="cpu", expected_npix=expected_npix)
    model.eval()
    check_no_leakage(meta, [shard], source=str(checkpoint))  # as the evaluate rule: no trained-on test shard
    ex = load_examples([shard], limit_per_version=n_examples)
    if len(ex) != n_examples:
        raise ValueError(f"{shard}: holds {len(ex)} examples, {n_examples} requested")
    with Progress(total=len(ex), desc=f"fit {Path(shard).parent.parent.name}/{Path(shard).name}",
                  unit="lens") as progress:
        return fit_examples(model, ex, progress=progress)
