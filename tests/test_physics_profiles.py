"""Torch lens profiles (astrorim.physics) against lenstronomy, analytic limits and high-precision references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from lenstronomy.LensModel.lens_model import LensModel

import astrorim.physics as physics
from astrorim.physics import epl, nfw, shear, sie, sis

N_POINTS = 1200
N_PARAM_SETS = 4
# Points closer than this to a profile's centre are excluded from the lenstronomy comparison: there
# lenstronomy and we regularise the singularity differently (its cores/clamps vs our 1e-12 core).
EXCLUDE_RADIUS = 0.02
TOLERANCE = {torch.float64: 1e-4, torch.float32: 1e-3}


def _ellipticity(rng, q_min=0.3):
    q = rng.uniform(q_min, 1.0)
    phi = rng.uniform(-np.pi, np.pi)
    e = (1 - q) / (1 + q)
    return float(e * np.cos(2 * phi)), float(e * np.sin(2 * phi))


def _random_params(profile: str, rng) -> dict:
    centre = {"center_x": float(rng.uniform(-0.3, 0.3)), "center_y": float(rng.uniform(-0.3, 0.3))}
    if profile == "sie":
        e1, e2 = _ellipticity(rng)
        return {"theta_E": float(rng.uniform(0.3, 2.0)), "e1": e1, "e2": e2, **centre}
    if profile == "sis":
        return {"theta_E": float(rng.uniform(0.3, 2.0)), **centre}
    if profile == "shear":
        return {"gamma1": float(rng.uniform(-0.15, 0.15)), "gamma2": float(rng.uniform(-0.15, 0.15)),
                "ra_0": float(rng.uniform(-0.3, 0.3)), "dec_0": float(rng.uniform(-0.3, 0.3))}
    if profile == "nfw":
        return {"Rs": float(np.exp(rng.uniform(np.log(0.05), np.log(10.0)))),
                "alpha_Rs": float(rng.uniform(0.05, 2.0)), **centre}
    if profile == "epl":
        e1, e2 = _ellipticity(rng)
        return {"theta_E": float(rng.uniform(0.3, 2.0)), "gamma": float(rng.uniform(1.5, 2.5)),
                "e1": e1, "e2": e2, **centre}
    raise AssertionError(profile)


def _param_sets(profile: str):
    rng = np.random.default_rng(["sie", "sis", "shear", "nfw", "epl"].index(profile) + 100)
    sets = [_random_params(profile, rng) for _ in range(N_PARAM_SETS)]
    if profile in ("sie", "epl"):
        sets.append({**sets[0], "e1": 0.0, "e2": 0.0})  # exactly round: the q = 1 branch
        sets.append({**sets[0], "e1": 0.37, "e2": -0.3})  # q = 0.3 corner
    return sets


LENSTRONOMY_NAME = {"sie": "SIE", "sis": "SIS", "shear": "SHEAR", "nfw": "NFW", "epl": "EPL"}
MODULES = {"sie": sie, "sis": sis, "shear": shear, "nfw": nfw, "epl": epl}
CASES = [(p, i) for p in MODULES for i in range(len(_param_sets(p)))]


def _points(seed: int):
    rng = np.random.default_rng(seed)
    return rng.uniform(-3.0, 3.0, N_POINTS), rng.uniform(-3.0, 3.0, N_POINTS)


def _reference(profile: str, kwargs: dict, x, y):
    alpha = LensModel([LENSTRONOMY_NAME[profile]]).alpha(x, y, [kwargs])
    if profile == "sie":
        # LensModel('SIE').kappa is a 1e-10-step finite difference of the deflection (~1e-4 noise);
        # lenstronomy's analytic EPL convergence at gamma = 2 is the same SIE convergence.
        kappa = LensModel(["EPL"]).kappa(x, y, [{**kwargs, "gamma": 2.0}])
    else:
        kappa = LensModel([LENSTRONOMY_NAME[profile]]).kappa(x, y, [kwargs])
    return np.asarray(alpha[0]), np.asarray(alpha[1]), np.asarray(kappa)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("profile, index", CASES, ids=[f"{p}-{i}" for p, i in CASES])
def test_matches_lenstronomy(profile, index, dtype):
    """|alpha - alpha_ref| / |alpha_ref| and |kappa - kappa_ref| / |kappa_ref| <= 1e-4 (f64) / 1e-3 (f32)."""
    kwargs = _param_sets(profile)[index]
    x, y = _points(seed=1000 + index)
    ax_ref, ay_ref, kappa_ref = _reference(profile, kwargs, x, y)
    module = MODULES[profile]
    tx, ty = torch.tensor(x, dtype=dtype), torch.tensor(y, dtype=dtype)
    ax, ay = module.deflection(tx, ty, **kwargs)
    kappa = module.convergence(tx, ty, **kwargs)
    assert ax.dtype == dtype and kappa.dtype == dtype and ax.shape == tx.shape and kappa.shape == tx.shape

    cx = kwargs.get("center_x", kwargs.get("ra_0", 0.0))
    cy = kwargs.get("center_y", kwargs.get("dec_0", 0.0))
    keep = np.hypot(x - cx, y - cy) > EXCLUDE_RADIUS
    assert keep.sum() >= 1000
    alpha_err = np.hypot(ax.numpy() - ax_ref, ay.numpy() - ay_ref) / np.hypot(ax_ref, ay_ref)
    assert alpha_err[keep].max() <= TOLERANCE[dtype]
    if profile == "shear":
        assert np.all(kappa.numpy() == 0.0) and np.all(kappa_ref == 0.0)
    else:
        kappa_err = np.abs(kappa.numpy() - kappa_ref) / np.abs(kappa_ref)
        assert kappa_err[keep].max() <= TOLERANCE[dtype]


def test_sie_kappa_matches_lenstronomy_sie_finite_difference():
    """lenstronomy's own SIE kappa (finite-difference Hessian, ~1e-4 noisy) agrees to 1e-3."""
    kwargs = _param_sets("sie")[1]
    x, y = _points(seed=7)
    ref = LensModel(["SIE"]).kappa(x, y, [kwargs])
    ours = sie.convergence(torch.tensor(x), torch.tensor(y), **kwargs).numpy()
    keep = np.hypot(x - kwargs["center_x"], y - kwargs["center_y"]) > EXCLUDE_RADIUS
    assert np.max(np.abs(ours - ref)[keep] / ref[keep]) <= 1e-3


@pytest.mark.parametrize("profile", list(MODULES))
def test_batched_parameters_equal_loop(profile):
    """(B, 1, 1) tensor parameters on a (B, H, W) grid give what B separate float-parameter calls give."""
    sets = _param_sets(profile)[:3]
    grid = torch.linspace(-2.0, 2.0, 9, dtype=torch.float64)
    yy, xx = torch.meshgrid(grid, grid, indexing="ij")
    x = xx.expand(len(sets), 9, 9)
    y = yy.expand(len(sets), 9, 9)
    batched = {k: torch.tensor([s[k] for s in sets], dtype=torch.float64).view(-1, 1, 1) for k in sets[0]}
    module = MODULES[profile]
    ax, ay = module.deflection(x, y, **batched)
    kappa = module.convergence(x, y, **batched)
    # A (1, H, W) grid must broadcast against (B, 1, 1) parameters too.
    ax_b, _ = module.deflection(xx[None], yy[None], **batched)
    assert ax.shape == ax_b.shape == kappa.shape == (len(sets), 9, 9)
    for b, s in enumerate(sets):
        ax1, ay1 = module.deflection(xx, yy, **s)
        torch.testing.assert_close(ax[b], ax1, rtol=1e-13, atol=1e-15)
        torch.testing.assert_close(ay[b], ay1, rtol=1e-13, atol=1e-15)
        torch.testing.assert_close(ax_b[b], ax1, rtol=1e-13, atol=1e-15)
        torch.testing.assert_close(kappa[b], module.convergence(xx, yy, **s), rtol=1e-13, atol=1e-15)


def _points_for_gradcheck():
    # Off the centre and off the NFW branch boundaries X^2 = 0.75, 1.25 (all branches are tested elsewhere).
    return (torch.tensor([0.7, -1.3, 0.2, 1.9], dtype=torch.float64, requires_grad=True),
            torch.tensor([0.4, 0.9, -1.6, -0.3], dtype=torch.float64, requires_grad=True))


def _p(value):
    return torch.tensor(value, dtype=torch.float64, requires_grad=True)


@pytest.mark.parametrize(
    "function, params",
    [
        (sie.deflection, (1.1, 0.12, -0.2, 0.05, -0.03)),
        (sie.convergence, (1.1, 0.12, -0.2, 0.05, -0.03)),
        (sie.deflection, (0.9, 1e-7, 2e-7, 0.0, 0.0)),  # just off round: series branch
        (nfw.deflection, (0.9, 0.4, 0.1, -0.05)),
        (nfw.convergence, (0.9, 0.4, 0.1, -0.05)),
        (nfw.deflection, (0.15, 0.4, 0.0, 0.0)),  # all points at X > 1.12: arctan branch
        (nfw.deflection, (6.0, 0.4, 0.0, 0.0)),  # all points at X < 0.87: low branch
        (sis.deflection, (1.2, 0.1, 0.2)),
        (shear.deflection, (0.05, -0.03, 0.1, 0.2)),
        (epl.deflection, (1.1, 1.7, 0.15, -0.1, 0.05, 0.0)),
        (epl.convergence, (1.1, 2.3, 0.15, -0.1, 0.05, 0.0)),
    ],
)
def test_gradcheck(function, params):
    x, y = _points_for_gradcheck()
    assert torch.autograd.gradcheck(lambda *a: function(*a), (x, y, *(_p(v) for v in params)))


def test_gradients_finite_at_special_points():
    """Round SIE/EPL (e1 = e2 = 0), the NFW X = 1 point and the exact centre give finite gradients."""
    x = torch.tensor([0.0, 1.0, 0.3, -0.8], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0.0, 0.0, 0.5, 0.2], dtype=torch.float64, requires_grad=True)
    cases = [
        (sie.deflection, (1.0, 0.0, 0.0)),
        (epl.deflection, (1.0, 2.2, 0.0, 0.0)),
        (nfw.deflection, (1.0, 0.5)),
        (nfw.convergence, (1.0, 0.5)),
        (sis.deflection, (1.0,)),
        (sie.deflection, (1.0, 0.2, 0.1)),
    ]
    for function, values in cases:
        params = [_p(v) for v in values]
        out = function(x, y, *params)
        total = sum(o.sum() for o in out) if isinstance(out, tuple) else out.sum()
        grads = torch.autograd.grad(total, (x, y, *params))
        assert all(torch.isfinite(g).all() for g in grads), function.__module__
        values_out = out if isinstance(out, tuple) else (out,)
        assert all(torch.isfinite(o).all() for o in values_out)


def _nfw_reference_mp(X: float, Rs: float, alpha_Rs: float):
    """(|alpha|, kappa) of the NFW profile at X = r/Rs with 40-digit mpmath arithmetic."""
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 40
    X = mp.mpf(X)
    kappa_s = mp.mpf(alpha_Rs) / (4 * mp.mpf(Rs) * (1 + mp.log(mp.mpf("0.5"))))
    if X < 1:
        G = mp.acosh(1 / X) / mp.sqrt(1 - X**2)
    elif X > 1:
        G = mp.acos(1 / X) / mp.sqrt(X**2 - 1)
    else:
        G = mp.mpf(1)
    F = mp.mpf(1) / 3 if X == 1 else (1 - G) / (X**2 - 1)
    g = mp.log(X / 2) + G
    return float(4 * kappa_s * mp.mpf(Rs) * g / X), float(2 * kappa_s * F)


def test_nfw_near_scale_radius():
    """Around r = Rs: continuous, alpha(Rs) = alpha_Rs, kappa(Rs) = 2 kappa_s / 3, 40-digit reference to 1e-12.

    lenstronomy's closed form loses ~5 digits at |X - 1| = 1e-6 (its error there is ~3e-5), so it is
    compared at 1e-4 only.
    """
    Rs, alpha_Rs = 0.8, 0.6
    kappa_s = alpha_Rs / (4 * Rs * (1 + math.log(0.5)))
    X = np.array([1 - 1e-6, 1.0, 1 + 1e-6, 1 - 1e-3, 1 + 1e-3, math.sqrt(0.75) - 1e-9, math.sqrt(0.75) + 1e-9,
                  math.sqrt(1.25) - 1e-9, math.sqrt(1.25) + 1e-9, 1e-4, 0.05, 30.0])
    angle = 0.7  # off-axis, so both components are exercised
    x, y = X * Rs * math.cos(angle), X * Rs * math.sin(angle)
    ax, ay = physics.deflection("nfw", x, y, Rs=Rs, alpha_Rs=alpha_Rs)
    kappa = physics.convergence("nfw", x, y, Rs=Rs, alpha_Rs=alpha_Rs)
    alpha = np.hypot(ax, ay)
    for i, Xi in enumerate(X):
        alpha_mp, kappa_mp = _nfw_reference_mp(Xi, Rs, alpha_Rs)
        assert alpha[i] == pytest.approx(alpha_mp, rel=1e-12), Xi
        assert kappa[i] == pytest.approx(kappa_mp, rel=1e-12), Xi
    assert alpha[1] == pytest.approx(alpha_Rs, rel=1e-14)
    assert kappa[1] == pytest.approx(2 * kappa_s / 3, rel=1e-14)
    assert abs(kappa[0] - kappa[1]) / kappa[1] < 2e-6 and abs(kappa[2] - kappa[1]) / kappa[1] < 2e-6
    assert abs(alpha[0] - alpha[1]) / alpha[1] < 2e-6 and abs(alpha[2] - alpha[1]) / alpha[1] < 2e-6
    # Deflection points away from nothing but the centre: (ax, ay) is parallel to (x, y).
    np.testing.assert_allclose(ax * y, ay * x, rtol=1e-12, atol=1e-18)

    lens = LensModel(["NFW"])
    ref_ax, ref_ay = lens.alpha(x, y, [{"Rs": Rs, "alpha_Rs": alpha_Rs}])
    ref_kappa = lens.kappa(x, y, [{"Rs": Rs, "alpha_Rs": alpha_Rs}])
    near = np.abs(X - 1) <= 1e-3
    np.testing.assert_allclose(np.hypot(ref_ax, ref_ay)[near], alpha[near], rtol=1e-4)
    np.testing.assert_allclose(ref_kappa[near], kappa[near], rtol=1e-4)


def test_nfw_deflection_is_enclosed_convergence():
    """Gauss's law for a circular lens: |alpha|(r) = (2 / r) int_0^r kappa(r') r' dr' (scipy quad)."""
    from scipy.integrate import quad

    Rs, alpha_Rs = 1.3, 0.9

    def kappa_at(r):
        return float(physics.convergence("nfw", np.array([r]), np.array([0.0]), Rs=Rs, alpha_Rs=alpha_Rs)[0])

    for r in (0.2, 1.0, 1.3, 4.0):
        enclosed, _ = quad(lambda s: kappa_at(s) * s, 0.0, r, points=[min(Rs, r)], epsabs=0, epsrel=1e-11, limit=200)
        alpha = physics.deflection("nfw", np.array([r]), np.array([0.0]), Rs=Rs, alpha_Rs=alpha_Rs)[0][0]
        assert alpha == pytest.approx(2.0 * enclosed / r, rel=1e-8)


@pytest.mark.parametrize("profile", ["sie", "sis", "nfw", "epl", "shear"])
def test_convergence_is_half_divergence_and_deflection_is_curl_free(profile):
    """kappa = (d alpha_x/dx + d alpha_y/dy) / 2 and d alpha_x/dy = d alpha_y/dx (autograd, float64)."""
    kwargs = _param_sets(profile)[0]
    x, y = _points(seed=3)
    x = torch.tensor(x[:200], requires_grad=True)
    y = torch.tensor(y[:200], requires_grad=True)
    module = MODULES[profile]
    ax, ay = module.deflection(x, y, **kwargs)
    dax_dx, dax_dy = torch.autograd.grad(ax.sum(), (x, y), retain_graph=True)
    day_dx, day_dy = torch.autograd.grad(ay.sum(), (x, y))
    kappa = module.convergence(x, y, **kwargs).detach()
    torch.testing.assert_close(0.5 * (dax_dx + day_dy), kappa, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(dax_dy, day_dx, rtol=1e-9, atol=1e-12)


def test_round_sie_equals_sis_and_sie_equals_epl_gamma2():
    """The SIE's 1e-12 theta_E core enters its closed form linearly (as lenstronomy's NIE core does),
    so agreement is ~1e-12 theta_E / r rather than rounding-level: 1e-10 is asserted."""
    x, y = (torch.tensor(v) for v in _points(seed=5))
    sie_round = sie.deflection(x, y, 1.4, 0.0, 0.0, 0.2, -0.1)
    sis_ref = sis.deflection(x, y, 1.4, 0.2, -0.1)
    for a, b in zip(sie_round, sis_ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(sie.convergence(x, y, 1.4, 0.0, 0.0, 0.2, -0.1),
                               sis.convergence(x, y, 1.4, 0.2, -0.1), rtol=1e-12, atol=1e-14)
    for e1, e2 in ((0.3, -0.2), (-0.05, 0.02), (1e-7, 0.0)):
        sie_alpha = sie.deflection(x, y, 1.4, e1, e2, 0.2, -0.1)
        epl_alpha = epl.deflection(x, y, 1.4, 2.0, e1, e2, 0.2, -0.1)
        for a, b in zip(sie_alpha, epl_alpha):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_sie_nearly_round_series_branch():
    """Either side of the 1 - q^2 = 1e-4 switch to the Taylor series, the SIE equals the EPL (gamma = 2) to 1e-11."""
    rng = np.random.default_rng(6)
    r = rng.uniform(0.5, 3.0, 400)
    angle = rng.uniform(-np.pi, np.pi, 400)
    x, y = torch.tensor(r * np.cos(angle)), torch.tensor(r * np.sin(angle))
    e_switch = 2.0 / 1e-4 * (1.0 - math.sqrt(1.0 - 1e-4)) - 1.0  # 4 e / (1 + e)^2 = 1e-4
    for e in (0.999 * e_switch, 1.001 * e_switch, 1e-9):
        e1, e2 = e * math.cos(0.8), e * math.sin(0.8)
        for a, b in zip(sie.deflection(x, y, 1.4, e1, e2), epl.deflection(x, y, 1.4, 2.0, e1, e2)):
            torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("gamma", [1.5, 1.8, 2.0, 2.5])
def test_round_epl_is_power_law(gamma):
    """q = 1: alpha = theta_E^(gamma-1) r^(2-gamma) radially, kappa = (3-gamma)/2 (theta_E/r)^(gamma-1)."""
    theta_e = 1.3
    r = torch.tensor([0.1, 0.5, 1.3, 2.0, 5.0], dtype=torch.float64)
    angle = torch.tensor([0.3, 1.7, -2.0, 3.0, -0.5], dtype=torch.float64)
    ax, ay = epl.deflection(r * torch.cos(angle), r * torch.sin(angle), theta_e, gamma, 0.0, 0.0)
    torch.testing.assert_close(torch.hypot(ax, ay), theta_e ** (gamma - 1) * r ** (2 - gamma), rtol=1e-13, atol=0)
    kappa = epl.convergence(r * torch.cos(angle), r * torch.sin(angle), theta_e, gamma, 0.0, 0.0)
    torch.testing.assert_close(kappa, 0.5 * (3 - gamma) * (theta_e / r) ** (gamma - 1), rtol=1e-13, atol=0)


EPL_CASES = list(range(len(_param_sets("epl"))))


@pytest.mark.parametrize("index", EPL_CASES, ids=[f"epl-{i}" for i in EPL_CASES])
def test_epl_gradients_match_lenstronomy(index):
    """The EPL series' written-out gradient: d alpha / d(x, y) equals lenstronomy's analytic EPL Hessian to 1e-12
    of |f_xx| + |f_yy|, and the parameter gradients of a weighted sum of alpha equal central differences of
    lenstronomy's deflection (step 1e-6) to 1e-8 (the round case skips e1, e2, where |e| has no derivative)."""
    kwargs = _param_sets("epl")[index]
    x, y = _points(seed=2000 + index)
    x, y = x[:400], y[:400]
    keep = np.hypot(x - kwargs["center_x"], y - kwargs["center_y"]) > EXCLUDE_RADIUS
    lens = LensModel(["EPL"])
    f_xx, f_xy, f_yx, f_yy = lens.hessian(x, y, [kwargs])
    tx, ty = torch.tensor(x, requires_grad=True), torch.tensor(y, requires_grad=True)
    ax, ay = epl.deflection(tx, ty, **kwargs)
    dax_dx, dax_dy = torch.autograd.grad(ax.sum(), (tx, ty), retain_graph=True)
    day_dx, day_dy = torch.autograd.grad(ay.sum(), (tx, ty))
    scale = (np.abs(f_xx) + np.abs(f_yy))[keep]
    for ours, reference in ((dax_dx, f_xx), (dax_dy, f_xy), (day_dx, f_yx), (day_dy, f_yy)):
        assert np.max(np.abs(ours.numpy() - reference)[keep] / scale) <= 1e-12

    weight_x, weight_y = np.cos(3.0 * x), np.sin(2.0 * y)
    params = {k: _p(v) for k, v in kwargs.items()}
    ax, ay = epl.deflection(torch.tensor(x), torch.tensor(y), **params)
    (ax * torch.tensor(weight_x) + ay * torch.tensor(weight_y)).sum().backward()
    names = ["theta_E", "gamma", "center_x", "center_y"]
    names += ["e1", "e2"] if kwargs["e1"] or kwargs["e2"] else []
    step = 1e-6
    for name in names:
        plus = lens.alpha(x, y, [{**kwargs, name: kwargs[name] + step}])
        minus = lens.alpha(x, y, [{**kwargs, name: kwargs[name] - step}])
        difference = (np.sum((plus[0] - minus[0]) * weight_x) + np.sum((plus[1] - minus[1]) * weight_y)) / (2 * step)
        assert params[name].grad.item() == pytest.approx(difference, rel=1e-8, abs=1e-8), name


def test_epl_gradcheck_batched_parameters_on_a_shared_grid():
    """(B, 1, 1) parameters on an (H, W) grid, as the baseline's lens model calls it: the gradients summed over the
    broadcast pixel axes pass gradcheck, including the flattest lens here (q = 0.3, 20+ series terms)."""
    grid = torch.linspace(-1.7, 1.9, 4, dtype=torch.float64)
    yy, xx = torch.meshgrid(grid, grid, indexing="ij")
    xx, yy = xx.clone().requires_grad_(), yy.clone().requires_grad_()

    def column(*values):
        return torch.tensor(values, dtype=torch.float64).view(-1, 1, 1).requires_grad_()

    params = (column(1.1, 0.8), column(1.7, 2.3), column(0.37, -0.05), column(-0.3, 0.1), column(0.05, -0.1),
              column(0.0, 0.2))
    assert torch.autograd.gradcheck(lambda *a: epl.deflection(*a), (xx, yy, *params))


def test_epl_float32_gradients_agree_with_float64():
    """On the baseline's 256 x 256 grid at q = 0.5 the float32 gradients of the lens parameters are within 1e-4 of
    the float64 ones (the series is summed by Horner's rule in complex float32)."""
    grid = (torch.arange(256, dtype=torch.float64) + 0.5) * (10.0 / 256) - 5.0
    yy, xx = torch.meshgrid(grid, grid, indexing="ij")
    weight = torch.cos(2.0 * xx) * torch.sin(yy)
    e = (1.0 - 0.5) / (1.0 + 0.5)
    values = {"theta_E": 1.4, "gamma": 2.1, "e1": e * math.cos(1.2), "e2": e * math.sin(1.2),
              "center_x": 0.05, "center_y": -0.08}
    gradients = {}
    for dtype in (torch.float64, torch.float32):
        params = {k: torch.tensor(v, dtype=dtype, requires_grad=True) for k, v in values.items()}
        ax, ay = epl.deflection(xx.to(dtype), yy.to(dtype), **params)
        (ax * weight.to(dtype) - 0.5 * ay).sum().backward()
        gradients[dtype] = torch.stack([params[k].grad.double() for k in values])
    torch.testing.assert_close(gradients[torch.float32], gradients[torch.float64], rtol=1e-4, atol=1e-3)


def test_epl_second_derivatives_are_refused():
    """The series' gradient is written out once; asking autograd to differentiate it again is an error, not a
    silently wrong zero."""
    x = torch.tensor([0.7, -1.3], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0.4, 0.9], dtype=torch.float64)
    ax, _ = epl.deflection(x, y, 1.2, 2.1, 0.2, -0.1)
    (dax_dx,) = torch.autograd.grad(ax.sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        dax_dx.sum().backward()


def test_epl_series_length_and_limits():
    assert epl.n_series_terms(0.0, torch.float64) == 1
    f_q03 = (1 - 0.3) / (1 + 0.3)
    n64 = epl.n_series_terms(f_q03, torch.float64)
    n32 = epl.n_series_terms(f_q03, torch.float32)
    assert n32 < n64 <= 60
    assert f_q03**n64 / (1 - f_q03) <= 1e-14
    with pytest.raises(ValueError, match="epl"):
        epl.deflection(torch.zeros(3), torch.ones(3), 1.0, 2.0, 0.99, 0.0)


def test_centre_is_finite():
    zero = torch.zeros(1, dtype=torch.float64)
    cases = (("sie", {"theta_E": 1.0, "e1": 0.2, "e2": 0.1}), ("sis", {"theta_E": 1.0}),
             ("nfw", {"Rs": 1.0, "alpha_Rs": 0.5}), ("epl", {"theta_E": 1.0, "gamma": 2.3, "e1": 0.1, "e2": 0.0}))
    for profile, kwargs in cases:
        ax, ay = MODULES[profile].deflection(zero, zero, **kwargs)
        assert ax.item() == 0.0 and ay.item() == 0.0, profile
        assert torch.isfinite(MODULES[profile].convergence(zero, zero, **kwargs)).all(), profile


def test_public_numpy_api_matches_torch_and_validates():
    x, y = _points(seed=9)
    kwargs = _param_sets("epl")[2]
    ax, ay = physics.deflection("EPL", x, y, **kwargs)
    assert isinstance(ax, np.ndarray) and ax.dtype == np.float64
    tax, tay = epl.deflection(torch.tensor(x), torch.tensor(y), **kwargs)
    np.testing.assert_array_equal(ax, tax.numpy())
    np.testing.assert_array_equal(physics.convergence("sis", x, y, theta_E=1.0),
                                  sis.convergence(torch.tensor(x), torch.tensor(y), 1.0).numpy())
    with pytest.raises(ValueError, match="unknown lens profile 'pemd'"):
        physics.deflection("pemd", x, y, theta_E=1.0)
    with pytest.raises(ValueError, match=r"sie: missing required parameter\(s\) \['e2'\]"):
        physics.deflection("sie", x, y, theta_E=1.0, e1=0.1)
    with pytest.raises(ValueError, match=r"nfw: unknown parameter\(s\) \['kappa_s'\]"):
        physics.convergence("nfw", x, y, Rs=1.0, alpha_Rs=0.2, kappa_s=0.1)
    with pytest.raises(TypeError, match="sis: x must be a torch.Tensor"):
        sis.deflection(np.zeros(3), torch.zeros(3), 1.0)
    with pytest.raises(TypeError, match="x and y must share dtype"):
        sie.deflection(torch.zeros(3), torch.zeros(3, dtype=torch.float64), 1.0, 0.0, 0.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    x, y = (torch.tensor(v) for v in _points(seed=4))
    for profile, module in MODULES.items():
        kwargs = _param_sets(profile)[0]
        cpu = module.deflection(x, y, **kwargs)
        gpu = module.deflection(x.cuda(), y.cuda(), **{k: torch.tensor(v).cuda() for k, v in kwargs.items()})
        for a, b in zip(cpu, gpu):
            assert b.device.type == "cuda"
            torch.testing.assert_close(a, b.cpu(), rtol=1e-12, atol=1e-14)
