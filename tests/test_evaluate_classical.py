"""Classical methods: the regulariser, CG, Tikhonov with the true operator, lam tuning, the back-projection."""

import numpy as np
import pytest
import torch

from astrorim.evaluate import classical as C
from astrorim.evaluate.metrics import example_metrics


@pytest.fixture(scope="module")
def sims():
    from astrorim.sim import simulate

    return simulate("v1", 4, 7, phase="test", split="test")


def test_gradient_normal_is_dtd():
    h, w = 5, 4
    n = h * w
    rows = []
    for i in range(h):  # horizontal forward differences
        for j in range(w - 1):
            r = np.zeros(n)
            r[i * w + j + 1], r[i * w + j] = 1, -1
            rows.append(r)
    for i in range(h - 1):
        for j in range(w):
            r = np.zeros(n)
            r[(i + 1) * w + j], r[i * w + j] = 1, -1
            rows.append(r)
    d = np.array(rows)
    x = np.random.default_rng(0).normal(size=(2, h, w))
    got = C.gradient_normal(torch.as_tensor(x)).numpy()
    want = np.einsum("ij,bj->bi", d.T @ d, x.reshape(2, n)).reshape(2, h, w)
    np.testing.assert_allclose(got, want, atol=1e-12)


def test_cached_fft_operator_matches_the_model_operator(sims):
    op = C.true_operator(sims.truth, sims.psf, 96)
    fast = C.CachedFFTOperator(op, (96, 96))
    rng = np.random.default_rng(3)
    x = torch.as_tensor(rng.normal(size=(4, 96, 96)), dtype=torch.float32)
    r = torch.as_tensor(rng.normal(size=(4, 96, 96)), dtype=torch.float32)
    np.testing.assert_allclose(fast.linear(x).numpy(), op.linear(x).numpy(), atol=2e-5)
    np.testing.assert_allclose(fast.adjoint(r).numpy(), op.adjoint(r).numpy(), atol=2e-5)
    # dot-product test: <F x, r> = <x, F^T r>
    lhs = (fast.linear(x).double() * r.double()).sum()
    rhs = (x.double() * fast.adjoint(r).double()).sum()
    assert float(abs(lhs - rhs) / abs(lhs)) < 1e-4


def test_conjugate_gradient_solves_spd_systems():
    rng = np.random.default_rng(1)
    mats = []
    for _ in range(3):
        a = rng.normal(size=(16, 16))
        mats.append(a @ a.T + 16 * np.eye(16))
    a = torch.as_tensor(np.stack(mats))
    b = torch.as_tensor(rng.normal(size=(3, 4, 4)))
    res = C.conjugate_gradient(lambda x: (a @ x.reshape(3, 16, 1)).reshape(3, 4, 4), b, max_iter=100, tol=1e-12)
    want = torch.linalg.solve(a, b.reshape(3, 16, 1)).reshape(3, 4, 4)
    np.testing.assert_allclose(res.x.numpy(), want.numpy(), rtol=1e-8, atol=1e-10)
    assert res.iterations <= 17
    assert float(res.relative_residual.max()) < 1e-10


def test_preconditioning_changes_iterations_not_the_solution(sims):
    from astrorim.model.forward import ConditionalForwardOperator

    truth = sims.truth.iloc[:2]
    op = ConditionalForwardOperator(96).bind(C.true_params(truth, torch.float64),
                                             psf_kernel=torch.as_tensor(sims.psf[:2], dtype=torch.float64))
    y = torch.as_tensor(sims.observed[:2], dtype=torch.float64)
    lam = 0.1
    pre = C.tikhonov(op, y, lam, tol=1e-9, max_iter=3000)
    plain = C.conjugate_gradient(lambda x: op.adjoint(op.linear(x)) + lam * (C.gradient_normal(x) + C.GRADIENT_EPS * x),
                                 op.adjoint(y), tol=1e-9, max_iter=3000)
    assert float(pre.relative_residual.max()) <= 1e-9 and float(plain.relative_residual.max()) <= 1e-9
    np.testing.assert_allclose(pre.x.numpy(), plain.x.numpy(), rtol=0, atol=1e-6 * float(plain.x.abs().max()))
    assert pre.iterations < plain.iterations / 2, (pre.iterations, plain.iterations)


def test_true_operator_reproduces_the_simulated_lensed_source(sims):
    """F(true Theta, true PSF) applied to the truth source is close to the simulator's noiseless lensed source
    (not equal: the simulator ray-shoots on a 4x supersampled grid with lenstronomy)."""
    op = C.true_operator(sims.truth, sims.psf, 96)
    fx = op.linear(torch.as_tensor(sims.source)).numpy()
    ls = sims.lensed_source_noiseless
    rel = np.linalg.norm((fx - ls).reshape(4, -1), axis=1) / np.linalg.norm(ls.reshape(4, -1), axis=1)
    assert np.median(rel) < 0.3, rel


def test_tikhonov_with_true_operator_recovers_the_source(sims):
    op = C.true_operator(sims.truth, sims.psf, 96)
    src = torch.as_tensor(sims.source)
    y = op.linear(src)
    y = y + 1e-3 * y.amax(dim=(1, 2), keepdim=True) * torch.as_tensor(
        np.random.default_rng(2).normal(size=y.shape), dtype=y.dtype)
    x = C.tikhonov(op, y, 1e-2, max_iter=300, tol=1e-5).x.numpy()
    good = [example_metrics(sims.source[i], x[i]) for i in range(4)]
    assert min(m.ssim for m in good) > 0.95
    assert np.median([m.ssim_source for m in good]) > 0.8
    # the same solve with a wrong Einstein radius is much worse: the baseline depends on the lens model
    truth = sims.truth.copy()
    truth["norm_b"] *= 0.8
    wrong = C.true_operator(truth, sims.psf, 96)
    xw = C.tikhonov(wrong, y, 1e-2, max_iter=300, tol=1e-5).x.numpy()
    bad = [example_metrics(sims.source[i], xw[i]) for i in range(4)]
    assert np.median([m.ssim_source for m in bad]) < np.median([m.ssim_source for m in good]) - 0.2
    # the back-projection (RIM's x0) is a poorer estimate than the regularised inversion
    x0 = C.backprojection(op, y).numpy()
    bp = [example_metrics(sims.source[i], x0[i]) for i in range(4)]
    assert np.median([m.mse for m in bp]) > 2 * np.median([m.mse for m in good])


def test_backprojection_is_flux_scaled_and_linear(sims):
    op = C.true_operator(sims.truth, sims.psf, 96)
    y = torch.as_tensor(sims.observed)
    x1 = C.backprojection(op, y)
    x2 = C.backprojection(op, 7.0 * y)
    np.testing.assert_allclose(x2.numpy(), 7.0 * x1.numpy(), rtol=1e-4, atol=1e-6 * float(x1.abs().max()))
    # least-squares scale: the re-projected estimate matches the data's flux to O(1)
    ratio = (op.linear(x1) * y).sum((1, 2)) / (y * y).sum((1, 2))
    assert torch.all((ratio > 0.2) & (ratio < 1.5)), ratio


def test_tune_lambda_picks_the_best_grid_value(sims):
    op = C.true_operator(sims.truth, sims.psf, 96)
    data = (sims.observed - C.lens_light({"noiseless": sims.noiseless,
                                           "lensed_source_noiseless": sims.lensed_source_noiseless}))
    lam, scan = C.tune_lambda([(op, data.astype(np.float32), sims.source)], grid=(1e-3, 1e-1, 10.0), max_iter=80)
    assert list(scan["lam"]) == [1e-3, 1e-1, 10.0]
    assert lam == scan.loc[scan["ssim_mean"].idxmax(), "lam"]
    assert (scan["n"] == 4).all() and (scan["cg_iterations_mean"] > 0).all()
    with pytest.raises(ValueError, match="at least one validation batch"):
        C.tune_lambda([])


def test_true_params_need_the_normalised_columns(sims):
    with pytest.raises(KeyError, match="norm_q"):
        C.true_params(sims.truth.drop(columns=["norm_q"]))
