"""Conditional forward operator: physics vs lenstronomy, exact adjoint, conventions."""

import math

import numpy as np
import pytest
import torch
from lenstronomy.LensModel.lens_model import LensModel
from lenstronomy.LightModel.light_model import LightModel

from astrorim import params as P
from astrorim.model.forward import (ConditionalForwardOperator, ellipticity_from_q_phi,
                                    nfw_alpha_rs, shear_components)
from astrorim.model.grid import normalised_grid

NPIX = 48
PIXEL_SCALE = 0.08  # arcsec; half field of view 1.92"


def _params(batch, dtype=torch.float64, seed=0, halo=True):
    g = torch.Generator().manual_seed(seed)
    u = lambda lo, hi: lo + (hi - lo) * torch.rand(batch, generator=g, dtype=dtype)  # noqa: E731
    return {"b": u(0.4, 0.8), "q": u(0.5, 0.95), "phi": u(-math.pi, math.pi), "x0": u(-0.1, 0.1),
            "y0": u(-0.1, 0.1), "gamma": u(0.0, 0.1), "gamma_phi": u(-math.pi, math.pi),
            "kappa_s": u(0.02, 0.2) if halo else torch.zeros(batch, dtype=dtype),
            "r_s": u(0.5, 5.0) if halo else torch.full((batch,), float("nan"), dtype=dtype)}


def test_torch_parameter_helpers_match_numpy():
    p = _params(5)
    e1, e2 = ellipticity_from_q_phi(p["q"], p["phi"])
    r1, r2 = P.ellipticity_from_q_phi(p["q"].numpy(), p["phi"].numpy())
    assert np.allclose(e1.numpy(), r1) and np.allclose(e2.numpy(), r2)
    g1, g2 = shear_components(p["gamma"], p["gamma_phi"])
    s1, s2 = P.shear_components(p["gamma"].numpy(), p["gamma_phi"].numpy())
    assert np.allclose(g1.numpy(), s1) and np.allclose(g2.numpy(), s2)
    assert np.allclose(nfw_alpha_rs(p["kappa_s"], p["r_s"]).numpy(),
                       P.nfw_alpha_rs(p["kappa_s"].numpy(), p["r_s"].numpy()))


@pytest.mark.parametrize("halo", [True, False])
def test_deflection_matches_lenstronomy(halo):
    op = ConditionalForwardOperator(npix=NPIX)
    p = _params(3, halo=halo)
    ax, ay = op.deflection(p)
    x, y = normalised_grid(NPIX, dtype=torch.float64)
    half = P.half_fov_arcsec(NPIX, PIXEL_SCALE)
    for i in range(3):
        pi = {k: float(v[i]) for k, v in p.items()}
        sie_kw, shear_kw, nfw_kw = P.normalised_to_lenstronomy_kwargs(pi, NPIX, PIXEL_SCALE)
        models, kwargs = ["SIE", "SHEAR"], [sie_kw, shear_kw]
        if halo:
            models.append("NFW")
            kwargs.append(nfw_kw)
        else:
            assert nfw_kw is None
        rx, ry = LensModel(models).alpha(x.numpy() * half, y.numpy() * half, kwargs)
        assert np.allclose(ax[i].numpy() * half, rx, atol=1e-9 * half)
        assert np.allclose(ay[i].numpy() * half, ry, atol=1e-9 * half)


def test_lensed_image_orientation_against_lenstronomy_ray_shooting():
    """A smooth analytic source lensed by lenstronomy vs our warp of its pixelised version."""
    npix = 64
    half = P.half_fov_arcsec(npix, PIXEL_SCALE)
    op = ConditionalForwardOperator(npix=npix)
    p = _params(1, halo=True, seed=4)
    pi = {k: float(v[0]) for k, v in p.items()}
    kwargs = [kw for kw in P.normalised_to_lenstronomy_kwargs(pi, npix, PIXEL_SCALE) if kw]
    src_kw = [{"amp": 1.0, "sigma": 0.25, "center_x": 0.12, "center_y": -0.05}]  # off-centre, arcsec
    light = LightModel(["GAUSSIAN"])
    x, y = normalised_grid(npix, dtype=torch.float64)
    xs, ys = x.numpy() * half, y.numpy() * half
    source = light.surface_brightness(xs, ys, src_kw).reshape(npix, npix)
    bx, by = LensModel(["SIE", "SHEAR", "NFW"]).ray_shooting(xs, ys, kwargs)
    ref = light.surface_brightness(bx, by, src_kw).reshape(npix, npix)
    delta = torch.zeros(1, 1)
    delta[0, 0] = 1.0
    ours = op.linear_forward(torch.from_numpy(source)[None], p, psf_kernel=delta.double())[0].numpy()
    rel = np.linalg.norm(ours - ref) / np.linalg.norm(ref)
    assert rel < 0.02, rel
    # the wrong orientation (transposed axes) must be clearly worse, so the test can fail
    swapped = op.linear_forward(torch.from_numpy(source.T.copy())[None], p,
                                psf_kernel=delta.double())[0].numpy()
    assert np.linalg.norm(swapped - ref) / np.linalg.norm(ref) > 5 * rel


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("given_kernel", [False, True])
def test_operator_dot_product(dtype, tol, given_kernel):
    op = ConditionalForwardOperator(npix=NPIX).to(dtype)
    with torch.no_grad():
        op.psf.residual.normal_(0.0, 1e-3)  # an asymmetric kernel, so a missing flip would fail
    g = torch.Generator().manual_seed(1)
    kernel = torch.rand(4, 9, 9, generator=g, dtype=dtype) if given_kernel else None
    for seed in range(3):
        p = _params(4, dtype=dtype, seed=seed)
        bound = op.bind(p, kernel)
        x = torch.randn(4, NPIX, NPIX, generator=g, dtype=dtype)
        r = torch.randn(4, NPIX, NPIX, generator=g, dtype=dtype)
        with torch.no_grad():
            fx = bound.linear(x)
            lhs = (fx * r).sum(dim=(1, 2))
            rhs = (x * bound.adjoint(r)).sum(dim=(1, 2))
        limit = tol * fx.flatten(1).norm(dim=1) * r.flatten(1).norm(dim=1)
        assert torch.all((lhs - rhs).abs() <= limit)


def test_background_and_linear_part():
    op = ConditionalForwardOperator(npix=NPIX, background=0.25)
    p = _params(2, dtype=torch.float32)
    x = torch.rand(2, NPIX, NPIX)
    with torch.no_grad():
        assert torch.allclose(op(x, p) - op.linear_forward(x, p), torch.full((2, NPIX, NPIX), 0.25))


def test_forward_under_autocast_stays_float32():
    op = ConditionalForwardOperator(npix=NPIX)
    p = {k: v.float() for k, v in _params(2).items()}
    x = torch.rand(2, NPIX, NPIX)
    with torch.no_grad():
        ref = op(x, p)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = op(x.bfloat16(), p)
            adj = op.adjoint(out, p)
    assert out.dtype == torch.float32 and adj.dtype == torch.float32
    # only the bf16 rounding of the input remains
    assert (out - ref).abs().max() < 1e-2 * ref.abs().max()


def test_gradient_flows_to_parameters_and_psf():
    op = ConditionalForwardOperator(npix=NPIX)
    p = {k: v.float().requires_grad_(True) for k, v in _params(2).items()}
    x = torch.rand(2, NPIX, NPIX)
    y = torch.rand(2, NPIX, NPIX)
    bound = op.bind(p)
    loss = (bound(x) - y).pow(2).sum() + bound.adjoint(y).pow(2).sum()
    loss.backward()
    for k, v in p.items():
        assert v.grad is not None and torch.isfinite(v.grad).all() and v.grad.abs().sum() > 0, k
    assert op.psf.log_fwhm_pix.grad.abs() > 0 and op.background.grad.abs() > 0


def test_bad_params_rejected():
    op = ConditionalForwardOperator(npix=NPIX)
    p = _params(2)
    del p["gamma"]
    with pytest.raises(KeyError, match="gamma"):
        op.deflection(p)
    p = _params(2)
    p["q"] = p["q"][:1]
    with pytest.raises(ValueError, match="'q'"):
        op.deflection(p)
