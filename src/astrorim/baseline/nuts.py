"""Posterior sampling with Pyro's NUTS (paper 003 §5.3): adaptation steps, then samples, from the MAP.

The paper runs 50 adaptation ("warmup") steps and 500 samples starting from the MAP estimate.  Pyro
expects the initial point in unconstrained coordinates; :func:`unconstrained_init` maps the MAP values
through ``biject_to(support).inv``.  Step size and a diagonal mass matrix are adapted during warmup
(Pyro defaults; target acceptance 0.8).  Wall and process-CPU times of the warmup and sampling phases
and the number of model evaluations (= gradient evaluations, one per leapfrog step) are recorded for the
benchmarks.  The warmup/sampling boundary is taken at the last warmup iteration's hook call.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pyro
import torch
from pyro.distributions.transforms import biject_to
from pyro.infer import MCMC, NUTS
from pyro.poutine.util import site_is_subsample

from astrorim.baseline.priors import LATENT_SITE
from astrorim.baseline.pyro_model import LensingModel


@dataclass(frozen=True)
class NutsConfig:
    warmup: int = 50
    samples: int = 500
    max_tree_depth: int = 10
    target_accept: float = 0.8
    seed: int = 0

    def __post_init__(self):
        if self.warmup < 0 or self.samples < 1 or self.max_tree_depth < 1 or not 0 < self.target_accept < 1:
            raise ValueError(f"invalid NUTS configuration {self}")


@dataclass
class NutsResult:
    """Posterior samples (constrained; scalars (S,), z_white/z (S, d)) and sampler diagnostics."""

    samples: dict[str, np.ndarray]
    warmup_s: float
    sampling_s: float
    gradients_warmup: int
    gradients_sampling: int
    cpu_warmup_s: float = float("nan")
    cpu_sampling_s: float = float("nan")
    diagnostics: dict = field(default_factory=dict)

    @property
    def n_samples(self) -> int:
        return int(len(next(iter(self.samples.values()))))

    @property
    def seconds_per_sample(self) -> float:
        return self.sampling_s / max(self.n_samples, 1)

    @property
    def gradients_per_sample(self) -> float:
        return self.gradients_sampling / max(self.n_samples, 1)


def unconstrained_init(model: LensingModel, obs: torch.Tensor, values: dict[str, np.ndarray | torch.Tensor]
                       ) -> dict[str, torch.Tensor]:
    """Constrained single-start values (shape (1,) / (1, d) or (,) / (d,)) -> Pyro's unconstrained init."""
    trace = pyro.poutine.trace(model).get_trace(obs, 1)
    out = {}
    for name, site in trace.nodes.items():
        if site["type"] != "sample" or site["is_observed"] or site_is_subsample(site):
            continue
        if name not in values:
            raise KeyError(f"no initial value for site {name!r}")
        v = torch.as_tensor(np.asarray(values[name]), dtype=torch.float32).reshape(site["value"].shape)
        support = site["fn"].support
        out[name] = biject_to(support).inv(v).detach()
        if not bool(torch.all(support.check(v))) or not torch.all(torch.isfinite(out[name])):
            raise ValueError(f"initial value of {name!r} ({v}) lies outside its support {site['fn'].support}")
    return out


def run_nuts(model: LensingModel, obs: torch.Tensor, init: dict[str, np.ndarray], config: NutsConfig = NutsConfig(),
             progress: bool = True) -> NutsResult:
    """NUTS on ``obs`` (H, W) starting at constrained values ``init`` (e.g. the best MAP start)."""
    obs = torch.as_tensor(obs, dtype=torch.float32)
    pyro.set_rng_seed(config.seed)
    initial = unconstrained_init(model, obs, init)
    kernel = NUTS(model, adapt_step_size=True, adapt_mass_matrix=True, full_mass=False,
                  target_accept_prob=config.target_accept, max_tree_depth=config.max_tree_depth)
    marks = {}

    def hook(kernel_, samples_, stage, i):
        now, cpu = time.perf_counter(), time.process_time()
        marks.setdefault(stage, [now, model.forward.n_calls, cpu])
        marks[f"{stage}_end"] = [now, model.forward.n_calls, cpu]
        if stage == "Sample":
            # Pyro resets the kernel's running mean when the run ends: read it while sampling
            marks["mean_accept_prob"] = float(getattr(kernel_, "_mean_accept_prob", float("nan")))

    mcmc = MCMC(kernel, num_samples=config.samples, warmup_steps=config.warmup, initial_params=initial,
                hook_fn=hook, disable_progbar=not progress)
    t0, calls0, c0 = time.perf_counter(), model.forward.n_calls, time.process_time()
    mcmc.run(obs, 1)
    t1, calls1, c1 = time.perf_counter(), model.forward.n_calls, time.process_time()
    samp_start = marks.get("Warmup_end", [t0, calls0, c0]) if config.warmup else [t0, calls0, c0]
    samples = {k: v.detach().squeeze(1).numpy() for k, v in mcmc.get_samples().items()}
    samples["z"] = model.latent_prior.latent_from_white(torch.as_tensor(samples[LATENT_SITE])).numpy()
    diag = {}
    try:
        raw = mcmc.diagnostics()
        for name, d in raw.items():
            if isinstance(d, dict) and "n_eff" in d:
                diag[f"ess_{name}"] = np.asarray(d["n_eff"]).ravel().tolist()
        diag["divergences"] = int(sum(len(v) for v in raw.get("divergences", {}).values()))
        # Pyro's "acceptance rate" counts iterations whose multinomial draw left the current point
        diag["moved_fraction"] = float(np.mean(list(raw.get("acceptance rate", {}).values()) or [np.nan]))
    except Exception as exc:  # diagnostics need >= 2 samples per split half; report instead of failing
        diag["error"] = repr(exc)
    diag["step_size"] = float(kernel.step_size)
    # running mean over the samples of the per-iteration acceptance statistic (the progress bar's "acc. prob")
    diag["mean_accept_prob"] = marks.get("mean_accept_prob", float("nan"))
    return NutsResult(samples, warmup_s=samp_start[0] - t0, sampling_s=t1 - samp_start[0],
                      gradients_warmup=samp_start[1] - calls0, gradients_sampling=calls1 - samp_start[1],
                      cpu_warmup_s=samp_start[2] - c0, cpu_sampling_s=c1 - samp_start[2], diagnostics=diag)
