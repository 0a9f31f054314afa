"""The fit's linear algebra against dense references: adjoint, CG solve, log-determinants."""

import math

import pytest
import torch

from astrorim.fit.linear import conjugate_gradient, log_det_prior, log_det_regulariser, source_support
from astrorim.fit.logdet import slq_log_det
from astrorim.fit.optimise import Problem
from astrorim.fit.parameters import INDEX, NAMES

NPIX = 10


def _problem(batch=2, seed=0, source_radius=None):
    g = torch.Generator().manual_seed(seed)
    y = torch.rand(batch, NPIX, NPIX, generator=g, dtype=torch.float64)
    w = 1.0 + torch.rand(batch, NPIX, NPIX, generator=g, dtype=torch.float64)
    w[:, 0, :3] = 0.0  # a masked corner
    x = torch.arange(5, dtype=torch.float64) - 2
    k = torch.exp(-(x[:, None] ** 2 + x[None] ** 2) / 2.0)
    k = k / k.sum()
    lam = torch.full((batch,), 0.3, dtype=torch.float64)
    theta = torch.zeros(batch, len(NAMES), dtype=torch.float64)
    theta[:, INDEX["log_b"]] = math.log(0.5)
    theta[:, INDEX["e1"]] = torch.tensor([0.1, -0.2])[:batch]
    theta[:, INDEX["gamma2"]] = 0.03
    theta[:, INDEX["light_log_re"]] = math.log(0.3)
    p = Problem(y, w, k, lam, source_radius)
    return p, p.system(theta)


def _dense(system):
    n = system.size
    eye = torch.eye(n, dtype=torch.float64)
    cols = [system.matvec(eye[j].expand(2, n).clone()) for j in range(n)]
    return torch.stack(cols, dim=2)  # (B, N, N)


def test_adjoint_dot_product():
    _, system = _problem()
    g = torch.Generator().manual_seed(1)
    z = torch.randn(2, system.size, generator=g, dtype=torch.float64)
    r = torch.randn(2, NPIX, NPIX, generator=g, dtype=torch.float64)
    lhs = (system.apply_A(z) * r).sum(dim=(-1, -2))
    rhs = (z * system.apply_At(r)).sum(dim=1)
    torch.testing.assert_close(lhs, rhs, rtol=1e-12, atol=1e-12)


def test_cg_matches_dense_solve():
    p, system = _problem()
    dense = _dense(system)
    torch.testing.assert_close(dense, dense.transpose(1, 2), rtol=1e-10, atol=1e-10)
    b = system.rhs(p.y)
    exact = torch.linalg.solve(dense, b.unsqueeze(-1)).squeeze(-1)
    x, res = conjugate_gradient(system.matvec, b, torch.zeros_like(b), system.jacobi_diagonal(), 500, 1e-12)
    assert (res < 1e-10).all()
    torch.testing.assert_close(x, exact, rtol=1e-7, atol=1e-8)


def test_jacobi_diagonal_is_close_to_the_true_one():
    _, system = _problem()
    true = torch.diagonal(_dense(system), dim1=1, dim2=2)
    approx = system.jacobi_diagonal()
    assert (approx > 0).all()
    ratio = approx / true
    assert float(ratio.min()) > 0.2 and float(ratio.max()) < 5.0


def test_slq_log_det_matches_dense():
    _, system = _problem()
    dense = _dense(system)
    exact = torch.linalg.slogdet(dense)[1]
    est = slq_log_det(system.matvec, system.jacobi_diagonal(), n_probes=64, n_steps=30, seed=3)
    # Rademacher-probe error ~ sqrt(2 / probes) x ||log P||_F: a few units on N = 103
    assert torch.allclose(est, exact, atol=0.03 * system.size), (est, exact)


def test_regulariser_log_det_is_exact():
    _, system = _problem()
    n = system.size
    eye = torch.eye(n, dtype=torch.float64)
    cols = [system.prior_apply(eye[j].expand(2, n).clone()) for j in range(n)]
    dense = torch.stack(cols, dim=2)
    exact = torch.linalg.slogdet(dense)[1]
    closed = log_det_regulariser(NPIX, NPIX, system.lam, system.n_amp)
    torch.testing.assert_close(closed, exact, rtol=1e-9, atol=1e-8)


def test_supported_source_system_matches_dense_and_its_prior_log_det_is_exact():
    p, system = _problem(source_radius=0.6)
    dense = _dense(system)
    torch.testing.assert_close(dense, dense.transpose(1, 2), rtol=1e-10, atol=1e-10)
    b = system.rhs(p.y)
    exact = torch.linalg.solve(dense, b.unsqueeze(-1)).squeeze(-1)
    x, _ = conjugate_gradient(system.matvec, b, torch.zeros_like(b), system.jacobi_diagonal(), 500, 1e-12)
    torch.testing.assert_close(x, exact, rtol=1e-7, atol=1e-8)
    s, _ = system.split(x)
    outside = source_support(NPIX, 1.0) == 0
    assert outside.any() and float(s[:, outside].abs().max()) < 1e-12
    # Prior precision on the free unknowns: the support block of lambda R plus the amplitudes.
    n = system.size
    eye = torch.eye(n, dtype=torch.float64)
    prior = torch.stack([system.prior_apply(eye[j].expand(2, n).clone()) for j in range(n)], dim=2)
    free = torch.cat([(~outside).reshape(-1), torch.ones(system.n_amp, dtype=torch.bool)])
    exact_logdet = torch.linalg.slogdet(prior[:, free][:, :, free])[1]
    torch.testing.assert_close(log_det_prior(NPIX, 1.0, system.lam, system.n_amp), exact_logdet,
                               rtol=1e-9, atol=1e-8)


@pytest.mark.parametrize("npix, batch_kernel", [(96, False), (96, True), (32, False)])
def test_cached_convolution_is_bit_identical_to_convolve_same(npix, batch_kernel):
    from astrorim.fit.linear import CachedConvolution
    from astrorim.model.psf import convolve_same, correlate_same
    g = torch.Generator().manual_seed(5)
    images = torch.rand(3, npix, npix, generator=g)
    kernel = torch.rand(3 if batch_kernel else 1, 21, 21, generator=g)
    kernel = (kernel / kernel.sum(dim=(-1, -2), keepdim=True))
    kernel = kernel if batch_kernel else kernel[0]
    conv = CachedConvolution(kernel, (npix, npix))
    assert torch.equal(conv.convolve(images), convolve_same(images, kernel, "auto"))
    assert torch.equal(conv.correlate(images), correlate_same(images, kernel, "auto"))
