"""log det H of the inversion's Hessian by stochastic Lanczos quadrature (Ubaru, Chen & Saad 2017).

H (N x N, N ~ 10^4) is only available as a matrix-vector product, so it is never formed.  With
D = diag(H) (the Jacobi diagonal of :mod:`astrorim.fit.linear`), log det H = sum log D +
log det P, P = D^-1/2 H D^-1/2, which is much better conditioned; log det P = tr log P is
estimated with Rademacher probes v and m Lanczos steps each: v^T log(P) v ~ |v|^2 sum_k tau_k^2
log theta_k over the Ritz values theta_k of the tridiagonal T_m.  The probes come from a seeded
generator and are shared by every example of a batch, so the starts of one lens are compared with
common random numbers.  Accuracy against a dense log det is measured in tests/test_fit_linear.py.
"""

from __future__ import annotations

import torch


def slq_log_det(matvec, diag: torch.Tensor, n_probes: int = 4, n_steps: int = 25,
                seed: int = 0) -> torch.Tensor:
    """Estimate log det H (B,) for the batched SPD operator ``matvec`` with diagonal ``diag`` (B, N)."""
    batch, n = diag.shape
    dtype, device = diag.dtype, diag.device
    scale = diag.rsqrt()

    def pmv(v):
        return scale * matvec(scale * v)

    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    total = torch.zeros(batch, dtype=torch.float64, device=device)
    for _ in range(n_probes):
        v = (torch.randint(0, 2, (n,), generator=gen, dtype=torch.int64) * 2 - 1).to(dtype=dtype, device=device)
        v = v.expand(batch, n) / n ** 0.5
        alphas, betas = [], []
        q_prev = torch.zeros_like(v)
        q = v
        beta = torch.zeros(batch, dtype=dtype, device=device)
        basis = [q]
        for k in range(n_steps):
            w = pmv(q) - beta[:, None] * q_prev
            alpha = (w * q).sum(dim=1)
            w = w - alpha[:, None] * q
            # Full re-orthogonalisation against the kept basis (n_steps is small): keeps the
            # Ritz values free of ghost copies in float32.
            for b in basis:
                w = w - (w * b).sum(dim=1, keepdim=True) * b
            alphas.append(alpha)
            beta = w.norm(dim=1)
            if k < n_steps - 1:
                betas.append(beta)
                q_prev, q = q, w / beta.clamp_min(torch.finfo(dtype).tiny)[:, None]
                basis.append(q)
        t = torch.diag_embed(torch.stack(alphas, 1).double())
        if betas:
            off = torch.stack(betas, 1).double()
            t = t + torch.diag_embed(off, 1) + torch.diag_embed(off, -1)
        theta, vecs = torch.linalg.eigh(t)
        tau2 = vecs[:, 0, :] ** 2
        total = total + n * (tau2 * torch.log(theta.clamp_min(1e-300))).sum(dim=1)
    return torch.log(diag.double()).sum(dim=1) + total / n_probes
