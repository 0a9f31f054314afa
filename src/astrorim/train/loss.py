"""The training objective (paper eq. 43-49) and its optional supervised parameter term.

    L = L_recon + lambda_fwd L_forward + lambda_PSF L_PSF + lambda_param L_param [+ lambda_sup L_sup]

All image terms are on the model's normalised flux scale (observation and target divided by the same
per-example scale) and follow the paper's definitions: a squared L2 norm summed over the pixels of an
example, averaged over the batch (eq. 44-45).  The per-pixel MSE of the last iterate (eq. 52) is
returned separately as a metric.

L_recon weights every RIM iterate, more towards the last: w_t = t / sum_s s for t = 1..T ('linear',
default; for T = 10 the last iterate carries 18 % and the first 1.8 %), or 1/T ('uniform'), or only
x_T ('last', the paper's eq. 44).

L_param (eq. 48-49) with the constants translated to our units (docs/training.md):

    range:  max(0, -b)^2 + max(0, b - b_max)^2 + x0^2 + y0^2 + (gamma - gamma_ref)^2
    prior:  (b - b_0)^2 + (q - q_0)^2 + (kappa_s - kappa_0)^2 + (r_s - r_0)^2

L_sup (off by default) compares the encoder's prediction with the simulator's truth.  With the component
encoder (``encoder_heads: components``, whose output carries ``components`` and ``components_sigma``) it is
the heteroscedastic Gaussian NLL of the components (:func:`gaussian_nll`, the pre-training loss of
:mod:`astrorim.train.pretrain`).  With the periodic-head encoder it compares the nine parameters, each error scaled
to its encoder bound so the nine terms are comparable: (Δ / (high - low))^2 for linear bounds,
(Δ log / (log high - log low))^2 for b and r_s, and sin^2(Δ) for the pi-periodic angles phi and
gamma_phi (a 2-phi-periodic distance, 0 at Δ = 0 and pi).  Missing truths (r_s = NaN, and r_s
whenever the true kappa_s = 0, i.e. no halo) are masked out.
"""

from __future__ import annotations

import math

import torch

from astrorim.model.encoder import COMPONENT_NAMES, components_from_nine
from astrorim.params import ENCODER_BOUNDS, PARAMETER_NAMES
from astrorim.train.config import LossConfig

ANGLES = ("phi", "gamma_phi")


def iterate_weights(n_iter: int, scheme: str = "linear") -> torch.Tensor:
    """Weights (T,) of the iterates x_1..x_T in L_recon; they sum to 1."""
    if n_iter < 1:
        raise ValueError(f"n_iter must be >= 1, got {n_iter}")
    t = torch.arange(1, n_iter + 1, dtype=torch.float64)
    if scheme == "linear":
        w = t
    elif scheme == "uniform":
        w = torch.ones_like(t)
    elif scheme == "last":
        w = (t == n_iter).to(torch.float64)
    else:
        raise ValueError(f"unknown iterate weighting {scheme!r}")
    return (w / w.sum()).float()


def squared_norm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-example ||a - b||^2 summed over the image (B,)."""
    return (a.float() - b.float()).pow(2).flatten(1).sum(dim=1)


def reconstruction_loss(iterates: list[torch.Tensor], target: torch.Tensor, scheme: str) -> torch.Tensor:
    # Python floats, not a device tensor: ``w > 0`` on a CUDA tensor would wait for the GPU at every iterate.
    weights = iterate_weights(len(iterates), scheme).tolist()
    total = target.new_zeros((), dtype=torch.float32)
    for w, x in zip(weights, iterates):
        if w > 0:
            total = total + w * squared_norm(x, target).mean()
    return total


def parameter_penalty(params: dict[str, torch.Tensor], cfg: LossConfig) -> torch.Tensor:
    """Eq. 47-49 (range + prior), averaged over the batch."""
    b, q = params["b"].float(), params["q"].float()
    rng, prior = cfg.param_range, cfg.param_prior
    range_term = (torch.relu(-b) ** 2 + torch.relu(b - rng["b_max"]) ** 2 + params["x0"].float() ** 2
                  + params["y0"].float() ** 2 + (params["gamma"].float() - rng["gamma_ref"]) ** 2)
    prior_term = ((b - prior["b"]) ** 2 + (q - prior["q"]) ** 2
                  + (params["kappa_s"].float() - prior["kappa_s"]) ** 2
                  + (params["r_s"].float() - prior["r_s"]) ** 2)
    return (range_term + prior_term).mean()


def parameter_errors(params: dict[str, torch.Tensor], truth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled squared errors (B, 9) of predicted vs true parameters and their validity mask (B, 9).

    ``truth`` is (B, 9) in :data:`PARAMETER_NAMES` order (NaN where undefined).
    """
    errors, masks = [], []
    kappa_true = truth[:, PARAMETER_NAMES.index("kappa_s")]
    for j, name in enumerate(PARAMETER_NAMES):
        pred = params[name].float()
        true = truth[:, j].float()
        valid = torch.isfinite(true)
        if name == "r_s":
            valid = valid & (kappa_true > 0)
        safe = torch.where(valid, true, pred.detach())
        bound = ENCODER_BOUNDS[name]
        if name in ANGLES:
            err = torch.sin(pred - safe) ** 2
        elif bound.log:
            span = math.log(bound.high) - math.log(bound.low)
            err = ((torch.log(pred) - torch.log(safe.clamp_min(bound.low * 1e-3))) / span) ** 2
        else:
            err = ((pred - safe) / (bound.high - bound.low)) ** 2
        errors.append(torch.where(valid, err, torch.zeros_like(err)))
        masks.append(valid)
    return torch.stack(errors, dim=1), torch.stack(masks, dim=1)


def gaussian_nll(components: dict, sigmas: dict, truth: dict, masks: dict) -> tuple[torch.Tensor, dict]:
    """Heteroscedastic Gaussian NLL (without the constant 0.5 ln 2 pi): per component of
    :data:`COMPONENT_NAMES` the mean of 0.5 ((x - mu) / sigma)^2 + ln sigma over its valid entries; the total is
    the mean over the components (each weighs the same whatever its units)."""
    per = {}
    for name in COMPONENT_NAMES:
        m = masks[name]
        z = (truth[name] - components[name].float()) / sigmas[name].float()
        nll = 0.5 * z * z + torch.log(sigmas[name].float())
        per[name] = torch.where(m, nll, torch.zeros_like(nll)).sum() / m.sum().clamp_min(1)
    return torch.stack(list(per.values())).mean(), per


def component_nll(out: dict, truth: torch.Tensor) -> torch.Tensor:
    """:func:`gaussian_nll` of a model output with ``components`` / ``components_sigma`` against (B, 9) truths."""
    target, masks = components_from_nine(truth)
    return gaussian_nll(out["components"], out["components_sigma"], target, masks)[0]


def supervised_parameter_loss(params: dict[str, torch.Tensor], truth: torch.Tensor) -> torch.Tensor:
    """Mean scaled squared error over all valid (example, parameter) entries."""
    errors, masks = parameter_errors(params, truth)
    return errors.sum() / masks.sum().clamp_min(1)


def compute_loss(model, out: dict, y: torch.Tensor, target: torch.Tensor, truth: torch.Tensor | None,
                 cfg: LossConfig) -> dict[str, torch.Tensor]:
    """All loss terms of one batch and their weighted total.

    ``out`` is the model's output for normalised observations ``y``; ``target`` is the normalised true
    source.  Returns floats-as-tensors: total, recon, fwd, psf, param, sup, mse (per-pixel MSE of x_T).
    """
    terms: dict[str, torch.Tensor] = {}
    terms["recon"] = reconstruction_loss(out["iterates"], target, cfg.iterate_weights)
    zero = terms["recon"].new_zeros(())
    if cfg.lambda_fwd > 0:
        predicted = model.forward_operator(target, out["params"])
        terms["fwd"] = squared_norm(predicted, y).mean()
    else:
        terms["fwd"] = zero
    terms["psf"] = model.forward_operator.psf.smoothness_penalty().float() if cfg.lambda_psf > 0 else zero
    terms["param"] = parameter_penalty(out["params"], cfg) if cfg.lambda_param > 0 else zero
    if cfg.lambda_supervised > 0:
        if truth is None:
            raise ValueError("lambda_supervised > 0 needs the true parameters in the batch")
        if "components" in out:
            terms["sup"] = component_nll(out, truth)
        else:
            terms["sup"] = supervised_parameter_loss(out["params"], truth)
    else:
        terms["sup"] = zero
    terms["total"] = (terms["recon"] + cfg.lambda_fwd * terms["fwd"] + cfg.lambda_psf * terms["psf"]
                      + cfg.lambda_param * terms["param"] + cfg.lambda_supervised * terms["sup"])
    with torch.no_grad():
        terms["mse"] = (out["source"].float() - target.float()).pow(2).mean()
    return terms
