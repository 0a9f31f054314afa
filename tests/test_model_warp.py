"""Bilinear warp: agreement with grid_sample, exact transpose, no edge clamping."""

import pytest
import torch
import torch.nn.functional as F

from astrorim.model.grid import normalised_grid, pixel_centres_1d, normalised_to_fractional_index
from astrorim.model.warp import BilinearWarp, warp


def _smooth_beta(batch, npix, dtype, seed=0):
    """An arbitrary smooth deflection field, partly pushing rays outside the source grid."""
    g = torch.Generator().manual_seed(seed)
    x, y = normalised_grid(npix, dtype=dtype)
    a = torch.rand(batch, 4, generator=g, dtype=dtype)
    ax = 0.6 * a[:, 0, None, None] * torch.sin(2.0 * x + a[:, 1, None, None]) + 0.3 * y ** 2
    ay = 0.6 * a[:, 2, None, None] * torch.cos(3.0 * y * x + a[:, 3, None, None]) - 0.2 * x
    return 1.4 * (x - ax), 1.4 * (y - ay)


def test_pixel_centres_match_grid_sample_convention():
    c = pixel_centres_1d(8, dtype=torch.float64)
    assert torch.allclose(normalised_to_fractional_index(c, 8), torch.arange(8, dtype=torch.float64))
    # identity sampling with grid_sample(align_corners=False) reproduces the image exactly
    img = torch.rand(1, 1, 8, 8, dtype=torch.float64)
    x, y = normalised_grid(8, dtype=torch.float64)
    out = F.grid_sample(img, torch.stack([x, y], -1)[None], align_corners=False)
    assert torch.allclose(out, img)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_warp_matches_grid_sample_zero_padding(dtype):
    bx, by = _smooth_beta(3, 24, dtype)
    src = torch.rand(3, 24, 24, dtype=dtype)
    ref = F.grid_sample(src[:, None], torch.stack([bx, by], -1), mode="bilinear",
                        padding_mode="zeros", align_corners=False)[:, 0]
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert (bx.abs() > 1).any(), "test field must send some rays off the grid"
    assert torch.allclose(warp(src, bx, by), ref, atol=tol, rtol=0)


def test_warp_gradient_wrt_coordinates_matches_grid_sample():
    bx, by = _smooth_beta(2, 16, torch.float64)
    bx.requires_grad_(True)
    src = torch.rand(2, 16, 16, dtype=torch.float64)
    w = torch.rand(2, 16, 16, dtype=torch.float64)
    (g1,) = torch.autograd.grad((warp(src, bx, by) * w).sum(), bx)
    bx2 = bx.detach().clone().requires_grad_(True)
    ref = F.grid_sample(src[:, None], torch.stack([bx2, by], -1), align_corners=False)[:, 0]
    (g2,) = torch.autograd.grad((ref * w).sum(), bx2)
    assert torch.allclose(g1, g2, atol=1e-10)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_warp_transpose_dot_product(dtype, tol):
    g = torch.Generator().manual_seed(3)
    for seed in range(3):
        bx, by = _smooth_beta(4, 32, dtype, seed=seed)
        op = BilinearWarp(bx, by, (32, 32))
        x = torch.randn(4, 32, 32, generator=g, dtype=dtype)
        r = torch.randn(4, 32, 32, generator=g, dtype=dtype)
        fx = op.apply(x)
        lhs = (fx * r).sum(dim=(1, 2))
        rhs = (x * op.transpose(r)).sum(dim=(1, 2))
        bound = tol * fx.flatten(1).norm(dim=1) * r.flatten(1).norm(dim=1)
        assert torch.all((lhs - rhs).abs() <= bound), (lhs - rhs).abs() / bound


def test_transpose_equals_autograd_vjp():
    bx, by = _smooth_beta(2, 20, torch.float64)
    op = BilinearWarp(bx, by, (20, 20))
    x = torch.randn(2, 20, 20, dtype=torch.float64, requires_grad=True)
    r = torch.randn(2, 20, 20, dtype=torch.float64)
    (vjp,) = torch.autograd.grad(op.apply(x), x, grad_outputs=r)
    assert torch.allclose(vjp, op.transpose(r), atol=1e-12)


def test_no_edge_clamping():
    # A source that is bright only in its border pixels: rays landing beyond the grid must see
    # zero, not the border value (the published code clamped and drew a square frame).
    src = torch.zeros(1, 16, 16)
    src[:, 0, :] = src[:, -1, :] = src[:, :, 0] = src[:, :, -1] = 1.0
    x, y = normalised_grid(16)
    far = warp(src, (3.0 * x)[None], (3.0 * y)[None])
    # pixels whose rays land more than one pixel outside the grid read exactly zero
    outside = ((3.0 * x).abs() > 1.0 + 2.0 / 16) | ((3.0 * y).abs() > 1.0 + 2.0 / 16)
    assert outside.sum() > 100
    assert torch.all(far[0][outside] == 0)
    # half a pixel outside, bilinear weights fade linearly to zero (zero padding, not clamping)
    half = warp(src, torch.full((1, 1, 1), 1.0), torch.full((1, 1, 1), 0.0))
    assert abs(float(half) - 0.5) < 1e-6


def test_non_finite_coordinates_read_zero():
    src = torch.ones(1, 8, 8)
    bx = torch.zeros(1, 2, 2)
    bx[0, 0, 0] = float("nan")
    bx[0, 1, 1] = float("inf")
    out = warp(src, bx, torch.zeros(1, 2, 2))
    assert out[0, 0, 0] == 0 and out[0, 1, 1] == 0 and out[0, 0, 1] == 1


def test_shape_errors():
    with pytest.raises(ValueError, match="beta_x and beta_y"):
        BilinearWarp(torch.zeros(1, 4, 4), torch.zeros(1, 4, 5), (4, 4))
    op = BilinearWarp(torch.zeros(1, 4, 4), torch.zeros(1, 4, 4), (4, 4))
    with pytest.raises(ValueError, match="source must have shape"):
        op.apply(torch.zeros(2, 4, 4))
