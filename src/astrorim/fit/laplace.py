"""Laplace approximation at the optimum: covariance of the non-linear parameters, source marginalised.

Default (:func:`fisher`): the Gauss-Newton curvature of the profile objective.  With J the
Jacobian (finite differences) of the model image A z in theta at fixed z, and H the inversion's
Hessian, marginalising the linear unknowns z gives

    F = J^T W J - (A^T W J)^T H^-1 (A^T W J),

the Fisher information of theta once z is integrated out (Schur complement of the joint
Gauss-Newton matrix).  It is positive semi-definite by construction (unlike a finite-difference
Hessian away from the exact optimum, which Adam does not reach to the last digit) and costs P CG
solves.  :func:`hessian` below is the exact-curvature alternative, kept for comparison.

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

from astrorim.fit.linear import conjugate_gradient
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


# The lens-light shape is nearly degenerate with the pixelated source (which can absorb light), so
# its curvature is small and, by finite differences, sometimes slightly negative.  Its block's
# eigenvalues are floored at 1 / LIGHT_SIGMA_MAX^2 (a light shape known no worse than this)
# before it is marginalised out of the lens block.
LIGHT_SIGMA_MAX = 0.3


def fisher(problem: Problem, theta: torch.Tensor, z: torch.Tensor, config: FitConfig) -> torch.Tensor:
    """(B, P, P) Gauss-Newton curvature of the source-marginalised objective (module docstring)."""
    batch, p = theta.shape
    h = config.laplace_step
    eye = torch.eye(p, dtype=theta.dtype, device=theta.device)
    disp = torch.stack([eye * h, -eye * h], dim=0)
    thetas = (theta[:, None, None, :] + disp[None]).reshape(batch * 2 * p, p)
    index = torch.arange(batch).repeat_interleave(2 * p)
    with torch.no_grad():
        images = problem.take(index).system(thetas).apply_A(z[index])
        npix = images.shape[-1]
        images = images.view(batch, 2, p, npix, npix)
        jac = (images[:, 0] - images[:, 1]) / (2 * h)                       # (B, P, H, W)
        index_p = torch.arange(batch).repeat_interleave(p)
        sub = problem.take(index_p)
        system = sub.system(theta[index_p])
        wj = sub.weight * jac.reshape(batch * p, npix, npix)
        rhs = system.apply_At(wj)                                            # (B P, N)
        u, _ = conjugate_gradient(system.matvec, rhs, torch.zeros_like(rhs), system.jacobi_diagonal(),
                                  config.cg_laplace, config.cg_rtol * 0.01)
        jwj = torch.einsum("bihw,bjhw->bij", jac, problem.weight[:, None] * jac)
        proj = torch.einsum("bin,bjn->bij", rhs.view(batch, p, -1), u.view(batch, p, -1))
        f = jwj - proj
    return 0.5 * (f + f.transpose(1, 2))


def covariance(hess: torch.Tensor, n_lens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Covariance (B, n_lens, n_lens) of the first n_lens parameters, the rest (lens light)
    marginalised via the Schur complement; positive-definite mask (B,); NaN where not PD."""
    h = hess.double()
    h_ll, h_lx, h_xx = h[:, :n_lens, :n_lens], h[:, :n_lens, n_lens:], h[:, n_lens:, n_lens:]
    if h_xx.shape[-1]:
        evals, evecs = torch.linalg.eigh(h_xx)
        evals = evals.clamp_min(1.0 / LIGHT_SIGMA_MAX ** 2)
        inv_xx = evecs @ torch.diag_embed(1.0 / evals) @ evecs.transpose(1, 2)
        h_ll = h_ll - h_lx @ inv_xx @ h_lx.transpose(1, 2)
    h64 = 0.5 * (h_ll + h_ll.transpose(1, 2))
    chol, info = torch.linalg.cholesky_ex(h64)
    ok = info == 0
    eye = torch.eye(h64.shape[-1], dtype=h64.dtype).expand_as(h64)
    safe = torch.where(ok[:, None, None], chol, eye)
    cov = torch.cholesky_inverse(safe)
    cov = torch.where(ok[:, None, None], cov, torch.full_like(cov, float("nan")))
    return cov, ok
