"""Maximum a posteriori fits by Adam (paper 003 §5.2), multi-start, batched over starts.

Pyro's ``AutoDelta`` guide holds one point per latent site (in constrained space; Pyro optimises its
unconstrained image) and ``SVI(model, guide, ClippedAdam, Trace_ELBO)`` then maximises
log p(obs, Theta) -- the MAP objective of eq. 26 (a Delta guide has no entropy term).  The model's
``starts`` plate makes ``n_starts`` independent copies; Adam is element-wise, and the gradient clip is
set far above any gradient, so the starts do not interact: one batched run = n_starts separate fits.
The learning rate decays geometrically from ``lr`` to ``lr * lr_final_factor``.

With ``polish_iterations`` > 0 the Adam run is followed by L-BFGS (strong-Wolfe line search) on the same
unconstrained parameters and the same objective, summed over the starts (independent, so the sum's
optimum is every start's).  Adam with a decaying rate stalls in the long, shallow valley where the lens
ellipticity, the external shear and the source shape trade against each other: on a mock whose source the
VAE draws exactly, 3,000 Adam steps stop 21 nats below the optimum with the orientation phi 5 % off
(docs/baseline-notebook.md, "MAP convergence").  A quasi-Newton step follows such a valley in a few iterations.

Starts: start 0 begins at the prior centres (the prior means, moved inside the support) with z = mu_z;
start k >= 1 at centre + ``init_jitter`` x prior sd x N(0, 1) (clipped into the support) and
z_white ~ ``init_jitter`` x N(0, I).  The paper notes local optima; the best start is the one with
the highest log posterior at the end.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pyro
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoDelta
from pyro.infer.autoguide.initialization import init_to_value
from pyro.optim import ClippedAdam
from tqdm.auto import tqdm

from astrorim.baseline.forward import LensingForward
from astrorim.baseline.latent_prior import LatentPrior
from astrorim.baseline.priors import LATENT_SITE, SCALAR_PARAMS
from astrorim.baseline.pyro_model import LensingModel, log_joint


@dataclass(frozen=True)
class MapConfig:
    steps: int = 10_000
    n_starts: int = 4
    lr: float = 0.02
    lr_final_factor: float = 0.05
    init_jitter: float = 0.5
    record_every: int = 50
    polish_iterations: int = 0
    seed: int = 0

    def __post_init__(self):
        if self.steps < 1 or self.n_starts < 1 or not self.lr > 0 or not 0 < self.lr_final_factor <= 1:
            raise ValueError(f"invalid MAP configuration {self}")
        if self.polish_iterations < 0:
            raise ValueError(f"polish_iterations must be >= 0, got {self.polish_iterations}")


@dataclass
class MapResult:
    """Final values of every start (constrained; scalars (B,), z_white/z (B, d)), their log posterior
    log p(obs, Theta) [nats] (up to the evidence), the best start and the Adam record (the last entry is
    the end of Adam, before any L-BFGS polish; ``polish_gain`` [nats] is what the polish added to each
    start).  ``wall_s`` and ``cpu_s`` (process CPU time, all threads) cover both optimisers and the records."""

    values: dict[str, np.ndarray]
    log_joint: np.ndarray
    best: int
    steps: int
    wall_s: float
    cpu_s: float = float("nan")
    history_steps: list[int] = field(default_factory=list)
    history_log_joint: list[list[float]] = field(default_factory=list)
    polish_gain: np.ndarray | None = None

    def best_params(self) -> dict[str, float]:
        return {k: float(self.values[k][self.best]) for k in SCALAR_PARAMS}

    def best_latent(self) -> np.ndarray:
        return np.asarray(self.values["z"][self.best])

    def best_white(self) -> np.ndarray:
        return np.asarray(self.values[LATENT_SITE][self.best])

    def late_gain(self, fraction: float = 0.1) -> float:
        """Nats the best start gained over the last ``fraction`` of the steps (from the recorded history).

        A converged fit gains ~0; a gain of many nats says the fit needs more steps (or a larger learning
        rate): Adam creeps along the lens/source degeneracies long after theta_E has settled.  A small gain
        does not prove convergence (docs/baseline-notebook.md, "MAP convergence").  NaN without a record before that
        point."""
        cut = self.steps * (1.0 - fraction)
        earlier = [i for i, step in enumerate(self.history_steps) if step <= cut]
        if not earlier or not self.history_log_joint:
            return float("nan")
        return float(self.history_log_joint[-1][self.best] - self.history_log_joint[earlier[-1]][self.best])


def initial_values(model: LensingModel, n_starts: int, jitter: float, seed: int) -> dict[str, torch.Tensor]:
    """Constrained starting values for every latent site, (n_starts,) or (n_starts, d)."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name, spec in model.priors.items():
        eps = torch.randn(n_starts, generator=gen)
        eps[0] = 0.0
        vals = [spec.clip(spec.loc + jitter * spec.scale * float(e), margin=0.01) for e in eps]
        out[name] = torch.tensor(vals, dtype=torch.float32)
    white = jitter * torch.randn(n_starts, model.latent_dim, generator=gen)
    white[0] = 0.0
    out[LATENT_SITE] = white
    return out


def run_map(model: LensingModel, obs: torch.Tensor, config: MapConfig = MapConfig(),
            init: dict[str, torch.Tensor] | None = None, progress: bool = True) -> MapResult:
    """Multi-start MAP fit of ``obs`` (H, W); ``init`` overrides :func:`initial_values` (constrained).

    ``obs`` may also be (n_starts, H, W), one image per start, with a model that has one noise sigma per
    start: that is how :func:`run_map_batch` fits several systems in one pass."""
    obs = torch.as_tensor(obs, dtype=torch.float32)
    if obs.ndim == 3 and obs.shape[0] != config.n_starts:
        raise ValueError(f"obs holds {obs.shape[0]} images for {config.n_starts} starts")
    pyro.set_rng_seed(config.seed)
    pyro.clear_param_store()
    n = config.n_starts
    # The guide takes these tensors as its parameters and Adam updates them in place: copy the caller's.
    start = initial_values(model, n, config.init_jitter, config.seed) if init is None else \
        {k: torch.as_tensor(v).detach().clone() for k, v in init.items()}
    for k, v in start.items():
        if v.shape[0] != n:
            raise ValueError(f"init[{k!r}] has {v.shape[0]} starts, expected {n}")
    guide = AutoDelta(model, init_loc_fn=init_to_value(values=start))
    lrd = config.lr_final_factor ** (1.0 / config.steps)
    optim = ClippedAdam({"lr": config.lr, "lrd": lrd, "clip_norm": 1e30})
    svi = SVI(model, guide, optim, loss=Trace_ELBO())
    history_steps, history = [], []

    def current() -> tuple[dict[str, torch.Tensor], np.ndarray]:
        """The guide's constrained values and their log posterior per start."""
        with torch.no_grad():
            vals = {k: v.detach() for k, v in guide.median(obs, n).items()}
        return vals, log_joint(model, obs, vals).numpy()

    def record(step):
        history_steps.append(step)
        history.append(current()[1].tolist())

    t0, c0 = time.perf_counter(), time.process_time()
    bar = tqdm(range(config.steps), desc=f"MAP x{n}", disable=not progress, mininterval=2.0)
    for step in bar:
        loss = svi.step(obs, n)
        if not np.isfinite(loss):
            raise FloatingPointError(f"MAP loss became {loss} at step {step}")
        if config.record_every and (step % config.record_every == 0):
            record(step)
            bar.set_postfix(best_logp=f"{max(history[-1]):.6g}")
    final, lj = current()
    history_steps.append(config.steps)
    history.append(lj.tolist())
    polish_gain = None
    if config.polish_iterations:
        polish(model, guide, obs, n, config.polish_iterations)
        final, polished = current()
        polish_gain, lj = polished - lj, polished
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    with torch.no_grad():
        final["z"] = model.latent_prior.latent_from_white(final[LATENT_SITE])
    best = int(np.nanargmax(lj))
    return MapResult({k: v.numpy() for k, v in final.items()}, lj, best, config.steps, wall, cpu, history_steps,
                     history, polish_gain)


def run_map_batch(forward: LensingForward, latent_prior: LatentPrior, observations: torch.Tensor,
                  noise_sigmas: Sequence[float], config: MapConfig = MapConfig(), progress: bool = True
                  ) -> list[MapResult]:
    """MAP fits of several systems' images in one batched pass (paper 003, §6: "batches of images in parallel").

    ``observations`` (n_systems, H, W) share ``forward``'s grid and PSF; ``noise_sigmas`` holds each image's
    per-pixel noise sd.  Every system gets ``config.n_starts`` starts, the same ones as a fit of it alone
    (:func:`initial_values` with ``config.seed``), laid out system-major in one plate of
    n_systems x n_starts elements.  Adam is element-wise and the elements' objectives are independent, so
    each system's result is the one :func:`run_map` gives it alone, up to floating-point rounding (the
    L-BFGS polish, if any, minimises the sum over all elements, which shares its line search).  Each
    result's ``wall_s`` and ``cpu_s`` are the whole batch's; divide by n_systems for the cost per system.
    """
    obs = torch.as_tensor(observations, dtype=torch.float32)
    sigmas = [float(s) for s in noise_sigmas]
    if obs.ndim != 3 or obs.shape[0] != len(sigmas) or obs.shape[0] == 0:
        raise ValueError(f"need observations (n_systems, H, W) and one noise sigma each, got {tuple(obs.shape)} "
                         f"and {len(sigmas)} sigmas")
    n_systems, n = obs.shape[0], config.n_starts
    model = LensingModel(forward, latent_prior, torch.tensor(sigmas).repeat_interleave(n))
    starts = initial_values(model, n, config.init_jitter, config.seed)
    init = {k: v.repeat(n_systems, *([1] * (v.ndim - 1))) for k, v in starts.items()}
    batch = run_map(model, obs.repeat_interleave(n, dim=0), replace(config, n_starts=n_systems * n), init,
                    progress=progress)
    results = []
    for i in range(n_systems):
        part = slice(i * n, (i + 1) * n)
        lj = batch.log_joint[part]
        results.append(MapResult({k: v[part] for k, v in batch.values.items()}, lj, int(np.nanargmax(lj)),
                                 batch.steps, batch.wall_s, batch.cpu_s, list(batch.history_steps),
                                 [row[part] for row in batch.history_log_joint],
                                 None if batch.polish_gain is None else batch.polish_gain[part]))
    return results


def polish(model: LensingModel, guide: AutoDelta, obs: torch.Tensor, n_starts: int, iterations: int) -> None:
    """L-BFGS on the guide's unconstrained parameters, minimising -log p(obs, Theta) summed over the starts.

    Should a trial point of the line search leave the finite range, the parameters are put back as Adam
    left them and a warning says so: the polish can only refine a fit, never break it."""
    params = [p for p in guide.parameters() if p.requires_grad]
    adam_end = [p.detach().clone() for p in params]
    objective = Trace_ELBO()
    optimiser = torch.optim.LBFGS(params, lr=1.0, max_iter=iterations, max_eval=int(iterations * 1.25),
                                  history_size=20, line_search_fn="strong_wolfe", tolerance_grad=1e-7,
                                  tolerance_change=1e-12)

    def closure():
        optimiser.zero_grad(set_to_none=True)
        loss = objective.differentiable_loss(model, guide, obs, n_starts)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"MAP loss became {loss.item()} during the L-BFGS polish")
        loss.backward()
        return loss

    try:
        optimiser.step(closure)
    except FloatingPointError as err:
        with torch.no_grad():
            for p, saved in zip(params, adam_end):
                p.copy_(saved)
        warnings.warn(f"{err}; the fit keeps the Adam result", RuntimeWarning, stacklevel=2)
