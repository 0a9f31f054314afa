"""Laplace approximation at the optimum: covariance of the non-linear parameters, source marginalised.

The Hessian of the profile negative log posterior f(theta) = min_z [chi^2 + z^T lambda R z] / 2
(z = source and lens-light amplitudes; for a Gaussian linear inversion this is the curvature of the
source-marginalised posterior up to the slowly varying log det term) is taken by central finite
differences of its exact gradient (envelope theorem, :func:`astrorim.fit.optimise.objective_and_grad`),
re-solving z* at every displaced theta.  All 2P displacements are one batch.  The covariance is the
inverse Hessian over all P parameters (lens and lens light), so the lens block is marginal over the
light shape.
"""

from __future__ import annotations

import torch

from astrorim.fit.optimise import FitConfig, Problem, objective_and_grad, solve


def hessian(problem: Problem, theta: torch.Tensor, z: torch.Tensor, config: FitConfig) -> torch.Tensor:
    """(B, P, P) Hessian of f at theta (B, P), warm-starting the solves from z (B, N)."""
    batch, p = theta.shape
    h = config.laplace_step
    eye = torch.eye(p, dtype=theta.dtype, device=theta.device)
    # Rows ordered (example, sign, parameter).
    disp = torch.stack([eye * h, -eye * h], dim=0)                       # (2, P, P)
    thetas = (theta[:, None, None, :] + disp[None]).reshape(batch * 2 * p, p)
    index = torch.arange(batch).repeat_interleave(2 * p)
    sub = problem.take(index)
    zs = z[index]
    zs, _ = solve(sub.system(thetas), sub.y, zs, config.cg_laplace, config.cg_rtol * 0.01)
    _, g = objective_and_grad(sub, thetas, zs)
    g = g.view(batch, 2, p, p)                                           # [b, sign, displaced j, i]
    hess = (g[:, 0] - g[:, 1]) / (2 * h)                                 # [b, j, i] = d g_i / d theta_j
    return 0.5 * (hess + hess.transpose(1, 2))


def covariance(hess: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(cov (B, P, P), positive-definite mask (B,)); NaN rows where the Hessian is not PD."""
    h64 = hess.double()
    chol, info = torch.linalg.cholesky_ex(h64)
    ok = info == 0
    eye = torch.eye(h64.shape[-1], dtype=h64.dtype).expand_as(h64)
    safe = torch.where(ok[:, None, None], chol, eye)
    cov = torch.cholesky_inverse(safe)
    cov = torch.where(ok[:, None, None], cov, torch.full_like(cov, float("nan")))
    return cov, ok
