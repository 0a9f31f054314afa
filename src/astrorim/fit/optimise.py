"""Maximum-posterior fit of the lens parameters with the source and lens-light amplitudes profiled out.

For parameters theta the source and amplitudes z*(theta) solve the regularised inversion
(:mod:`astrorim.fit.linear`); the objective is the negative log posterior at z*,

    f(theta) = 1/2 [ chi^2(theta, z*) + z*^T lambda R z* ],

whose gradient is that of chi^2 at fixed z* (envelope theorem), so z* is solved without autograd
(warm-started CG) and only the forward operator is differentiated.  Adam moves theta (flat priors
inside box bounds, projected after each step) for ``steps`` steps with a cosine learning-rate
decay.  The Bayesian evidence of the inversion at the end (:func:`log_evidence`) ranks the
starts; chi^2 would always prefer the most flexible (smallest-b) lens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from astrorim.fit.linear import LinearSystem, conjugate_gradient, log_det_prior
from astrorim.fit.logdet import slq_log_det
from astrorim.fit.parameters import INDEX, project
from astrorim.fit.system import build_system


@dataclass(frozen=True)
class FitConfig:
    """Settings of :func:`astrorim.fit.fit_lenses` (docs/fit.md)."""

    steps: int = 50                   # Adam steps of the surviving starts in all
    explore_steps: int = 12           # steps of every start before the evidence culls them
    keep_starts: int = 2              # starts per lens that continue after the cull
    lr: float = 0.02                  # initial Adam step [normalised units]; cosine decay to lr/10
    cg_first: int = 60                # CG iterations of the first solve of a start
    cg_step: int = 6                  # warm-started CG iterations per Adam step
    cg_final: int = 60                # CG iterations of the final solve of a stage
    cg_laplace: int = 40              # CG iterations per displaced solve of the Hessian
    cg_rtol: float = 1e-5
    lambda_factor: float = 0.03       # lambda = lambda_factor * median(W over used pixels)
    source_radius: float | None = 0.6  # source grid spans +-this [normalised], only its inscribed
                                       # disk free (finer pixels); None: the image's grid
    b_sigma_default: float = 0.35     # log-b spread of the starts without an encoder sigma
    b_offsets: tuple = (-1.0, 0.0, 1.0, 2.0)  # starts at log b + k sigma (0.7, 1, 1.4, 2 for 0.35)
    orientations: int = 2             # (e1, e2) and rotated by 90 degrees
    min_start_e: float = 0.1          # |e| of the starts when the estimate is rounder
    light_re_start: float = 0.4       # lens-light half-light radius of the starts [normalised]
    scan_b: tuple = (0.08, 0.12, 0.17, 0.24, 0.33, 0.45, 0.6, 0.8, 1.05, 1.35)  # coarse b grid
    scan_keep: int = 2                # best scan points (by evidence) added to the starts
    scan_cg: int = 25                 # CG iterations per scan point
    scan_logdet_probes: int = 2       # the scan's evidence: fewer, shorter Lanczos probes (it only ranks
    scan_logdet_steps: int = 15       # b values hundreds of nats apart)
    logdet_probes: int = 4
    logdet_steps: int = 25
    seed: int = 0
    converge_window: int = 10         # steps over which the parameters must settle
    converge_tol: float = 2e-3        # max change of the window means of any lens parameter
    laplace_step: float = 1e-4        # finite-difference step of the Jacobian / Hessian
    inflate_by_chi2: bool = True      # scale the covariance by max(1, chi^2 / pixel)
    # Systematic 1-sigma floor per lens parameter (log b: relative), added in quadrature to the Laplace
    # errors; calibrated on the validation split, never on test pairs (docs/fit.md).  (): none.
    error_floor: tuple = (("log_b", 0.004921), ("e1", 0.04580), ("e2", 0.07388), ("gamma1", 0.04580),
                          ("gamma2", 0.04580), ("x0", 0.01761), ("y0", 0.02065))   # ((name, floor), ...)
    # ... and a term c |fit - start| per parameter (log b: in log), added in quadrature: where the fit and the
    # encoder disagree, one of them is wrong by about that much.  ((name, c), ...), calibrated with the floor.
    error_disagreement: tuple = (("log_b", 1.1), ("e1", 0.9), ("e2", 0.7), ("gamma1", 0.6), ("gamma2", 0.5))
    # Both calibrated by `benchmarks/fit.py --calibrate-floor` on 60 simulated validation lenses (cpu_medium
    # finetune phase, val split, seed 2002, 10 per version; start models/cpu-pretrain) for 68/95 % coverage:
    # results/benchmarks/fit_error_floor.json.  Never on test pairs.
    b_prior: bool = True              # Gaussian prior on log b from the encoder (start_sigma) when given
    b_prior_scale: float = 1.0        # its width: the encoder's sigma of log b x this,
    b_prior_min: float = 0.05         # clipped to [b_prior_min, b_prior_max]
    b_prior_max: float = 1.0
    halo: bool = False                # also continue every surviving start with an NFW halo (kappa_s free):
                                      # off, measured harmful on the held-out protocol (docs/fit.md)
    halo_r_s: float = 8.0             # the halo's fixed scale radius [normalised] (15" at 0.04"/pix, 96 px)
    halo_kappa_s_start: float = 0.08  # kappa_s of the halo starts


@dataclass
class Problem:
    """One batch of systems to fit: data and weights in normalised flux units."""

    y: torch.Tensor        # (B, H, W)
    weight: torch.Tensor   # (B, H, W), 0 where masked
    kernel: torch.Tensor   # (K, K) or (B, K, K)
    lam: torch.Tensor      # (B,)
    source_radius: float | None = None  # support of the source [normalised], None: whole grid
    halo_r_s: float | None = None       # NFW scale radius [normalised]; None: no halo term at all
    prior_mean: torch.Tensor | None = None   # (B,) Gaussian prior on log b (the encoder's estimate) ...
    prior_sigma: torch.Tensor | None = None  # (B,) ... and its width; None: flat

    def take(self, index: torch.Tensor) -> "Problem":
        k = self.kernel if self.kernel.ndim == 2 else self.kernel[index]
        pick = (lambda t: None if t is None else t[index])  # noqa: E731
        return Problem(self.y[index], self.weight[index], k, self.lam[index], self.source_radius, self.halo_r_s,
                       pick(self.prior_mean), pick(self.prior_sigma))

    def to(self, dtype: torch.dtype) -> "Problem":
        cast = (lambda t: None if t is None else t.to(dtype))  # noqa: E731
        return Problem(self.y.to(dtype), self.weight.to(dtype), self.kernel.to(dtype), self.lam.to(dtype),
                       self.source_radius, self.halo_r_s, cast(self.prior_mean), cast(self.prior_sigma))

    def log_prior(self, theta: torch.Tensor) -> torch.Tensor:
        """log prior density of log b (B,) up to a constant; 0 without a prior."""
        if self.prior_mean is None:
            return torch.zeros(theta.shape[0], dtype=theta.dtype, device=theta.device)
        d = (theta[:, INDEX["log_b"]] - self.prior_mean) / self.prior_sigma
        return -0.5 * d * d

    def system(self, theta: torch.Tensor) -> LinearSystem:
        return build_system(theta, self.y.shape[-1], self.kernel, self.weight, self.lam, self.source_radius,
                            self.halo_r_s)


def solve(system: LinearSystem, y: torch.Tensor, z0: torch.Tensor | None, iters: int,
          rtol: float) -> tuple[torch.Tensor, torch.Tensor]:
    """z*(theta) (B, N) and CG's relative residual, without autograd."""
    with torch.no_grad():
        if z0 is None:
            z0 = torch.zeros(y.shape[0], system.size, dtype=y.dtype, device=y.device)
        return conjugate_gradient(system.matvec, system.rhs(y), z0, system.jacobi_diagonal(), iters, rtol)


def chi2(system: LinearSystem, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    r = y - system.apply_A(z)
    return (system.weight * r * r).sum(dim=(-1, -2))


def objective_and_grad(problem: Problem, theta: torch.Tensor, z: torch.Tensor):
    """f(theta) (B,) at fixed z and its gradient (B, P) (the profile gradient when z = z*)."""
    with torch.enable_grad():
        t = theta.detach().requires_grad_(True)
        system = problem.system(t)
        f = 0.5 * (chi2(system, problem.y, z) + system.penalty(z)) - problem.log_prior(t)
        (g,) = torch.autograd.grad(f.sum(), t)
    return f.detach(), g


def log_evidence(problem: Problem, theta: torch.Tensor, z: torch.Tensor, config: FitConfig) -> dict:
    """Log evidence of the regularised inversion (Suyu et al. 2006, eq. 19) at theta, z = z*:

        log E = -1/2 [chi^2 + z^T lambda R z] - 1/2 log det H + 1/2 log det(lambda R)
                + 1/2 sum log(W / 2 pi)   (over the used pixels)

    log det H by stochastic Lanczos quadrature, log det(lambda R) exactly.  With a prior on log b
    (the encoder's) its log density is added: the starts are ranked by the posterior.
    """
    with torch.no_grad():
        system = problem.system(theta)
        c2 = chi2(system, problem.y, z)
        pen = system.penalty(z)
        logdet_h = slq_log_det(system.matvec, system.jacobi_diagonal(), config.logdet_probes,
                               config.logdet_steps, config.seed)
        logdet_r = log_det_prior(system.shape[0], None if problem.source_radius is None else 1.0,
                                 problem.lam, system.n_amp)
        used = problem.weight > 0
        log_w = torch.where(used, torch.log(problem.weight.clamp_min(1e-300) / (2 * math.pi)),
                            torch.zeros_like(problem.weight)).sum(dim=(-1, -2))
        value = -0.5 * (c2 + pen).double() - 0.5 * logdet_h + 0.5 * logdet_r + 0.5 * log_w.double() \
            + problem.log_prior(theta).double()
    return {"log_evidence": value, "chi2": c2, "penalty": pen, "log_det_h": logdet_h}


def adam_fit(problem: Problem, theta0: torch.Tensor, config: FitConfig, steps: range,
             z0: torch.Tensor | None = None, free: torch.Tensor | None = None) -> dict:
    """Adam on theta for every row of the batch (one row per start) over ``steps`` (indices into
    the cosine schedule of config.steps); ``free`` (B, P) bool: the parameters that move (default
    all); returns the final state."""
    theta, _ = project(theta0)
    z, _ = solve(problem.system(theta), problem.y, z0, config.cg_first if z0 is None else config.cg_step,
                 config.cg_rtol)
    m = torch.zeros_like(theta)
    v = torch.zeros_like(theta)
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    history = [theta.clone()]
    finite = torch.ones(theta.shape[0], dtype=torch.bool)
    for i, step in enumerate(steps):
        system = problem.system(theta)
        z, _ = solve(system, problem.y, z, config.cg_step, config.cg_rtol)
        _, g = objective_and_grad(problem, theta, z)
        bad = ~torch.isfinite(g).all(dim=1)
        finite &= ~bad
        g = torch.where(bad[:, None], torch.zeros_like(g), g)
        if free is not None:
            g = torch.where(free, g, torch.zeros_like(g))
        lr = config.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / max(config.steps - 1, 1))))
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        mhat = m / (1 - beta1 ** (i + 1))
        vhat = v / (1 - beta2 ** (i + 1))
        theta, _ = project(theta - lr * mhat / (vhat.sqrt() + eps))
        history.append(theta.clone())
    theta, at_bound = project(theta)
    z, residual = solve(problem.system(theta), problem.y, z, config.cg_final, config.cg_rtol)
    # Settled: the mean of the last half-window differs from the mean of the half-window before it
    # by less than converge_tol in every lens parameter (means average out Adam's jitter).
    half = min(config.converge_window // 2, (len(history) - 1) // 2)
    lens_cols = [INDEX[n] for n in ("log_b", "e1", "e2", "x0", "y0", "gamma1", "gamma2")]
    if half > 0:
        recent = torch.stack(history[-half:]).mean(0)
        before = torch.stack(history[-2 * half:-half]).mean(0)
        change = (recent - before)[:, lens_cols].abs().amax(dim=1)
    else:
        change = torch.zeros(theta.shape[0], dtype=theta.dtype)
    finite &= torch.isfinite(theta).all(dim=1)
    return {"theta": theta, "z": z, "cg_residual": residual, "at_bound": at_bound,
            "change": change, "finite": finite}
