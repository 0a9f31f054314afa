"""fit_lenses: the batched multi-start fit of (lens, lens light, source) with Laplace uncertainties.

    result = fit_lenses(observed, psf=psf, noise_sigma=sigma, start=start, gain=gain)
    result.table   # one row per lens: fitted values, 1-sigma errors, chi2_per_pixel, log_evidence,
                   # converged, flag, reason
    result.source, result.model_image, result.lens_light, result.covariance

Inputs are in any flux unit (the fit divides by :func:`astrorim.model.normalisation.observation_scale`
and multiplies back).  ``start`` holds (n,) arrays/tensors in the normalised units of
:mod:`astrorim.params`: log_b, e1, e2, x0, y0, gamma1, gamma2 (e.g. the network's estimate);
``start_sigma`` optionally their 1-sigma widths, which size the spread of the starts in b.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from astrorim.fit import validate
from astrorim.fit.laplace import covariance, fisher
from astrorim.fit.optimise import FitConfig, Problem, adam_fit, chi2, log_evidence, solve
from astrorim.fit.parameters import INDEX, LENS_NAMES, NAMES, nine_parameters, project
from astrorim.model.normalisation import observation_scale
from astrorim.params import NFW_ALPHA_RS_FACTOR
from astrorim.physics import nfw

START_NAMES = LENS_NAMES  # log_b, e1, e2, x0, y0, gamma1, gamma2


@dataclass
class FitResult:
    """Per-lens outputs of :func:`fit_lenses` (arrays in the input's flux units)."""

    table: pd.DataFrame
    source: np.ndarray          # (n, H, W)
    model_image: np.ndarray     # (n, H, W): lensed source + lens light + sky
    lens_light: np.ndarray      # (n, H, W): lens light + sky
    covariance: np.ndarray      # (n, 7, 7) over LENS_NAMES (log b, e1, e2, x0, y0, gamma1, gamma2)


def _b_prior(start: dict, start_sigma: dict | None, n: int, config: FitConfig):
    """(mean, sigma) (n,) of the Gaussian prior on log b from the encoder, or (None, None)."""
    if not config.b_prior or start_sigma is None or start_sigma.get("log_b") is None:
        return None, None
    mean = validate.as_float_tensor(start["log_b"], "start['log_b']").reshape(-1).expand(n)
    sig = validate.as_float_tensor(start_sigma["log_b"], "start_sigma['log_b']").reshape(-1).expand(n)
    return mean.clone(), (sig * config.b_prior_scale).clamp(config.b_prior_min, config.b_prior_max)


def _start_rows(start: dict, start_sigma: dict | None, n: int, config: FitConfig) -> torch.Tensor:
    """(n, S, P) starting points: b offsets x orientations around the estimate."""
    missing = [k for k in START_NAMES if k not in start]
    if missing:
        raise ValueError(f"start is missing {missing}; needs {list(START_NAMES)}")
    base = {k: validate.as_float_tensor(start[k], f"start[{k!r}]").reshape(-1).expand(n) for k in START_NAMES}
    sigma_b = torch.full((n,), config.b_sigma_default, dtype=torch.float64)
    if start_sigma is not None and start_sigma.get("log_b") is not None:
        sig = validate.as_float_tensor(start_sigma["log_b"], "start_sigma['log_b']").reshape(-1).expand(n)
        if bool((sig <= 0).any()):
            raise ValueError("start_sigma['log_b'] must be > 0")
        # The encoder's sigma sizes the spread, never below a tenth of the default nor above twice it.
        sigma_b = sig.clamp(0.1 * config.b_sigma_default, 2.0 * config.b_sigma_default)
    e1, e2 = base["e1"], base["e2"]
    mod = torch.sqrt(e1 ** 2 + e2 ** 2)
    angle = 0.5 * torch.atan2(e2, e1)
    mod = mod.clamp(config.min_start_e, 0.55)
    rows = []
    for k in config.b_offsets:
        for o in range(config.orientations):
            ang = angle + o * math.pi / config.orientations
            t = torch.zeros(n, len(NAMES), dtype=torch.float64)
            t[:, INDEX["log_b"]] = base["log_b"] + k * sigma_b
            t[:, INDEX["e1"]] = mod * torch.cos(2 * ang)
            t[:, INDEX["e2"]] = mod * torch.sin(2 * ang)
            t[:, INDEX["light_e1"]] = t[:, INDEX["e1"]]
            t[:, INDEX["light_e2"]] = t[:, INDEX["e2"]]
            for name in ("x0", "y0", "gamma1", "gamma2"):
                t[:, INDEX[name]] = base[name]
            t[:, INDEX["light_log_re"]] = math.log(config.light_re_start)
            rows.append(t)
    return torch.stack(rows, dim=1)


def _scan_starts(problem: Problem, starts: torch.Tensor, config: FitConfig) -> torch.Tensor:
    """Extra starts from a coarse scan of b (both orientations of the estimate, all else as estimated),
    ranked by the evidence after a short solve: a safety net when the estimate of b is far off."""
    n, _, p = starts.shape
    base = starts[:, [config.b_offsets.index(0.0) * config.orientations + o for o in range(config.orientations)]] \
        if 0.0 in config.b_offsets else starts[:, :config.orientations]
    grid = torch.tensor(config.scan_b, dtype=starts.dtype).log()
    rows = base[:, None, :, :].repeat(1, len(grid), 1, 1)               # (n, G, O, P)
    rows[..., INDEX["log_b"]] = grid.view(1, -1, 1)
    rows = rows.reshape(n, -1, p)
    m = rows.shape[1]
    sub = problem.take(torch.arange(n).repeat_interleave(m))
    flat = rows.reshape(n * m, p).to(problem.y.dtype)
    z, _ = solve(sub.system(flat), sub.y, None, config.scan_cg, config.cg_rtol)
    coarse = dataclasses.replace(config, logdet_probes=config.scan_logdet_probes,
                                 logdet_steps=config.scan_logdet_steps)
    ev = log_evidence(sub, flat, z, coarse)["log_evidence"].view(n, m)
    ev = torch.where(torch.isfinite(ev), ev, torch.full_like(ev, -math.inf))
    top = ev.topk(min(config.scan_keep, m), dim=1).indices
    return torch.gather(rows, 1, top[..., None].expand(-1, -1, p))


def _free(theta: torch.Tensor, halo: torch.Tensor) -> torch.Tensor:
    """(B, P) mask of the moving parameters: all but kappa_s where ``halo`` (B,) is False."""
    free = torch.ones_like(theta, dtype=torch.bool)
    free[:, INDEX["kappa_s"]] = halo
    return free


def _with_halo(theta: torch.Tensor, config: FitConfig) -> torch.Tensor:
    """Halo starts from fitted rows without one: kappa_s = config.halo_kappa_s_start and b lowered by
    the halo's deflection at the fitted Einstein radius, so that the total deflection there (what
    the arcs fix) is unchanged and the start lies in the valley of SIE + halo models."""
    t = theta.clone()
    b = torch.exp(t[:, INDEX["log_b"]])
    kappa_s = torch.full_like(b, config.halo_kappa_s_start)
    alpha, _ = nfw.deflection(b, torch.zeros_like(b), config.halo_r_s,
                              NFW_ALPHA_RS_FACTOR * kappa_s * config.halo_r_s)
    t[:, INDEX["kappa_s"]] = kappa_s
    t[:, INDEX["log_b"]] = torch.log(torch.clamp(b - alpha, min=0.3 * b))
    return project(t)[0]


def _evidence_score(problem: Problem, state: dict, config: FitConfig) -> torch.Tensor:
    """log evidence of each row, -inf where the fit failed (so it is never picked)."""
    ev = log_evidence(problem, state["theta"], state["z"], config)["log_evidence"]
    return torch.where(state["finite"] & torch.isfinite(ev), ev, torch.full_like(ev, -math.inf))


def _weights(y, sigma, mask, gain, scale):
    """Inverse variance in normalised units (0 where masked), with the Poisson term when gain is given:
    var = sigma^2 + max(smoothed data, 0) / gain (3 x 3 box smoothing keeps the noise out of it)."""
    var = sigma ** 2
    if gain is not None:
        g = validate.as_float_tensor(gain, "gain").reshape(-1)
        if bool((g <= 0).any()):
            raise ValueError(f"gain must be > 0, got {g.tolist()}")
        g = g.expand(y.shape[0]).view(-1, 1, 1)
        smooth = torch.nn.functional.avg_pool2d(y[:, None], 3, stride=1, padding=1,
                                                count_include_pad=False)[:, 0]
        var = var + smooth.clamp_min(0) / g
    w = scale.view(-1, 1, 1) ** 2 / var
    return torch.where(mask, w, torch.zeros_like(w))


def fit_lenses(observed, *, psf, start: dict, noise_sigma=None, noise_map=None, gain=None,
               mask=None, start_sigma: dict | None = None, config: FitConfig | None = None,
               dtype: torch.dtype = torch.float32) -> FitResult:
    """Fit every image of ``observed`` ((H, W) or (n, H, W)); see the module docstring.

    ``noise_map``: per-pixel sigma (input units); or ``noise_sigma``: scalar / (n,).  ``gain``
    [e- per input unit] adds the sources' Poisson variance.  ``mask``: boolean, True where a pixel
    enters the likelihood (e.g. False on quasar images).  ``psf``: (K, K) or (n, K, K), odd K, sum 1.
    """
    config = config or FitConfig()
    y64 = validate.check_observed(observed)
    n, npix = y64.shape[0], y64.shape[-1]
    sigma = validate.check_noise(y64, noise_sigma, noise_map)
    kernel = validate.check_psf(psf, n)
    used = validate.check_mask(mask, y64)
    validate.check_signal(y64, sigma, used)
    starts = _start_rows(start, start_sigma, n, config)

    scale = observation_scale(y64)
    y = (y64 / scale.view(-1, 1, 1)).to(dtype)
    weight = _weights(y64, sigma, used, gain, scale).to(dtype)
    lam = torch.stack([config.lambda_factor * weight[i][used[i]].median() for i in range(n)])
    prior_mean, prior_sigma = _b_prior(start, start_sigma, n, config)
    problem = Problem(y, weight, kernel.to(dtype), lam, config.source_radius,
                      config.halo_r_s if config.halo else None,
                      None if prior_mean is None else prior_mean.to(dtype),
                      None if prior_sigma is None else prior_sigma.to(dtype))

    t0 = time.perf_counter()
    if config.scan_keep > 0 and config.scan_b:
        starts = torch.cat([starts, _scan_starts(problem, starts, config)], dim=1)
    n_starts = starts.shape[1]
    index = torch.arange(n).repeat_interleave(n_starts)
    multi = problem.take(index)
    explore = min(config.explore_steps, config.steps)
    theta0 = starts.reshape(n * n_starts, -1).to(dtype)
    no_halo = torch.zeros(n * n_starts, dtype=torch.bool)
    state = adam_fit(multi, theta0, config, range(explore), free=_free(theta0, no_halo))
    score = _evidence_score(multi, state, config).view(n, n_starts)
    keep = min(config.keep_starts, n_starts)
    if explore < config.steps:
        # The best `keep` starts of each lens continue; the others stop here.  With config.halo each
        # survivor also continues with a halo (kappa_s free), and the evidence chooses.
        top = score.topk(keep, dim=1).indices
        rows = (torch.arange(n)[:, None] * n_starts + top).reshape(-1)
        theta1, z1 = state["theta"][rows], state["z"][rows]
        halo = torch.zeros(n * keep, dtype=torch.bool)
        if config.halo:
            theta1 = torch.cat([theta1.view(n, keep, -1), _with_halo(theta1, config).view(n, keep, -1)], 1)
            z1 = torch.cat([z1.view(n, keep, -1)] * 2, 1)
            theta1, z1 = theta1.reshape(n * 2 * keep, -1), z1.reshape(n * 2 * keep, -1)
            halo = torch.cat([torch.zeros(n, keep, dtype=torch.bool), torch.ones(n, keep, dtype=torch.bool)],
                             1).reshape(-1)
            top = torch.cat([top, top], 1)
            keep = 2 * keep
        sub = problem.take(torch.arange(n).repeat_interleave(keep))
        state = adam_fit(sub, theta1, config, range(explore, config.steps), z1, free=_free(theta1, halo))
        score = _evidence_score(sub, state, config).view(n, keep)
        start_of = top
    else:
        start_of = torch.arange(n_starts).expand(n, n_starts)
        keep = n_starts
        halo = no_halo
    best = score.argmax(dim=1)
    pick = torch.arange(n) * keep + best
    theta, z = state["theta"][pick], state["z"][pick]
    has_halo = halo[pick]
    best_evidence = score[torch.arange(n), best]
    best_start = start_of[torch.arange(n), best]

    # Finite differences of the model image need float64.
    problem64 = problem.to(torch.float64)
    hess = fisher(problem64, theta.double(), z.double(), config)
    # kappa_s is fixed (not marginalised) where the chosen model has no halo.
    fixed = ~_free(theta, has_halo)
    hess = hess.masked_fill(fixed[:, :, None] | fixed[:, None, :], 0.0)
    if problem64.prior_sigma is not None:
        i = INDEX["log_b"]
        hess[:, i, i] += 1.0 / problem64.prior_sigma ** 2
    cov, pd_ok = covariance(hess, len(LENS_NAMES))
    system = problem.system(theta)
    with torch.no_grad():
        c2 = chi2(system, problem.y, z).double()
    n_used = used.reshape(n, -1).sum(1).double()
    chi2_pp = (c2 / n_used).numpy()
    if config.inflate_by_chi2:
        cov = cov * torch.clamp(c2 / n_used, min=1.0).view(-1, 1, 1)
    stat_err = torch.sqrt(torch.diagonal(cov, dim1=1, dim2=2).clamp_min(0)).numpy()
    if config.error_floor:
        # Systematic error floor (model mismatch the Laplace curvature cannot see), added in
        # quadrature on the diagonal; its values are calibrated on the validation split (docs/fit.md).
        floors = dict(config.error_floor)
        floor = torch.tensor([floors.get(k, 0.0) for k in LENS_NAMES], dtype=cov.dtype)
        cov = cov + torch.diag_embed((floor ** 2).expand(n, -1))
    if config.error_disagreement:
        coef = dict(config.error_disagreement)
        c = torch.tensor([coef.get(k, 0.0) for k in LENS_NAMES], dtype=cov.dtype)
        initial = torch.stack([validate.as_float_tensor(start[k], f"start[{k!r}]").reshape(-1).expand(n)
                               for k in LENS_NAMES], dim=1).to(cov.dtype)
        gap = theta.double()[:, [INDEX[k] for k in LENS_NAMES]] - initial
        cov = cov + torch.diag_embed((c * gap) ** 2)
    seconds = (time.perf_counter() - t0) / n

    th = theta.double().numpy()
    nine = nine_parameters(th, config.halo_r_s)
    cov_lens = cov.numpy()
    err = np.sqrt(np.clip(np.diagonal(cov_lens, axis1=1, axis2=2), 0, None))
    table = pd.DataFrame(nine)
    for i, name in enumerate(LENS_NAMES):
        if name == "log_b":
            table["b_err"] = nine["b"] * err[:, i]
            table["b_err_stat"] = nine["b"] * stat_err[:, i]
        else:
            table[name] = th[:, INDEX[name]]
            table[f"{name}_err"] = err[:, i]
            table[f"{name}_err_stat"] = stat_err[:, i]
    table["light_log_re"] = th[:, INDEX["light_log_re"]]
    table["has_halo"] = has_halo.numpy()
    table["chi2_per_pixel"] = chi2_pp
    table["log_evidence"] = best_evidence.numpy()
    table["start_index"] = best_start.numpy()
    table["seconds"] = seconds

    at_bound = state["at_bound"][pick].numpy()
    change = state["change"][pick].double().numpy()
    residual = state["cg_residual"][pick].double().numpy()
    finite = state["finite"][pick].numpy() & np.isfinite(th).all(1) & np.isfinite(chi2_pp)
    flags, reasons, converged = [], [], []
    for i in range(n):
        if not finite[i]:
            flag, reason = "failed", "non-finite parameters, gradient or chi2"
        elif at_bound[i]:
            flag, reason = "hit_bound", "a lens parameter ended on its box bound"
        elif change[i] > config.converge_tol:
            flag, reason = "not_converged", (f"lens parameters still drift by {change[i]:.2g} between the "
                                             f"halves of the last {config.converge_window} steps "
                                             f"(tol {config.converge_tol:g})")
        elif residual[i] > 1e-3:
            flag, reason = "not_converged", f"source solve relative residual {residual[i]:.2g} > 1e-3"
        elif not pd_ok[i]:
            flag, reason = "no_uncertainty", "Hessian not positive definite: errors are NaN"
        else:
            flag, reason = "ok", ""
        flags.append(flag)
        reasons.append(reason)
        converged.append(flag in ("ok", "no_uncertainty"))
    table["converged"] = converged
    table["flag"] = flags
    table["reason"] = reasons

    with torch.no_grad():
        s, a = system.split(z)
        light = (a[:, :, None, None] * system.light).sum(dim=1)
        model = system.lensed(s) + light
    sc = scale.view(-1, 1, 1).numpy()
    return FitResult(table=table, source=s.double().numpy() * sc, model_image=model.double().numpy() * sc,
                     lens_light=light.double().numpy() * sc, covariance=cov_lens)
