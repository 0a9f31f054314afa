"""Augmentations: images and lens parameters transform consistently (D4 symmetries of the grid)."""

import math

import numpy as np
import pytest
import torch
from lenstronomy.LensModel.lens_model import LensModel
from lenstronomy.LightModel.light_model import LightModel

from astrorim import params as P
from astrorim.model.forward import ConditionalForwardOperator
from astrorim.model.grid import normalised_grid
from astrorim.train.augment import (Augmentation, apply_to_image, apply_to_params, sample_augmentation_codes,
                                    wrap_half_turn)

ALL = [Augmentation.decode(c) for c in range(16)]
_PROBE = np.arange(16.0).reshape(4, 4)
# 16 codes cover the 8 elements of D4 twice (e.g. both mirrors + a half turn is the identity)
NONTRIVIAL = [a for a in ALL if not np.array_equal(apply_to_image(_PROBE, a), _PROBE)]
PARAMS = np.array([0.55, 0.6, 0.7, 0.08, -0.05, 0.08, -0.4, 0.1, 1.5])  # PARAMETER_NAMES order


def _lensed_lenstronomy(params, src_xy, npix=48, pixel_scale=0.08):
    """Lenstronomy ray-traced image of an off-centre elliptical Gaussian source (no PSF)."""
    half = P.half_fov_arcsec(npix, pixel_scale)
    kw = dict(zip(P.PARAMETER_NAMES, params))
    lens_kwargs = [k for k in P.normalised_to_lenstronomy_kwargs(kw, npix, pixel_scale) if k]
    x, y = (t.numpy() * half for t in normalised_grid(npix, dtype=torch.float64))
    bx, by = LensModel(["SIE", "SHEAR", "NFW"]).ray_shooting(x, y, lens_kwargs)
    light = LightModel(["GAUSSIAN"])
    return light.surface_brightness(bx, by, [{"amp": 1.0, "sigma": 0.15, "center_x": src_xy[0] * half,
                                              "center_y": src_xy[1] * half}]).reshape(npix, npix)


def _transform_point(xy, aug):
    """A source-plane point under the same group element (x-mirror, y-mirror, then rotation)."""
    x, y = xy
    if aug.hflip:
        x = -x
    if aug.vflip:
        y = -y
    for _ in range(aug.k):
        x, y = -y, x
    return x, y


@pytest.mark.parametrize("aug", NONTRIVIAL, ids=str)
def test_rotated_observation_has_transformed_true_params(aug):
    """Lenstronomy: T(image(theta, source)) == image(T theta, T source) for every non-trivial element."""
    src = (0.11, -0.04)
    image = _lensed_lenstronomy(PARAMS, src)
    expected = _lensed_lenstronomy(apply_to_params(PARAMS, aug), _transform_point(src, aug))
    assert np.allclose(apply_to_image(image, aug), expected, atol=1e-9 * image.max())
    # and the untransformed parameters do not explain the transformed observation
    wrong = _lensed_lenstronomy(PARAMS, _transform_point(src, aug))
    assert np.abs(apply_to_image(image, aug) - wrong).max() > 1e-2 * image.max()


def test_forward_operator_equivariance():
    """Our forward operator (PSF included): F(T x; T theta) == T F(x; theta) for all 16 elements."""
    op = ConditionalForwardOperator(npix=32, psf_method="direct")
    yy, xx = np.mgrid[0:32, 0:32]
    src = np.exp(-((xx - 18.3) ** 2 + (yy - 13.1) ** 2) / 8) + 0.5 * np.exp(-((xx - 10) ** 2 + (yy - 20) ** 2) / 3)

    def forward(s, p):
        d = {n: torch.tensor([v], dtype=torch.float64) for n, v in zip(P.PARAMETER_NAMES, p)}
        return op(torch.tensor(s[None].copy()), d)[0].detach().numpy()

    y = forward(src, PARAMS)
    for aug in ALL:
        lhs = forward(apply_to_image(src, aug), apply_to_params(PARAMS, aug))
        assert np.abs(lhs - apply_to_image(y, aug)).max() < 1e-12, aug


def test_rotation_direction_and_parameter_values():
    """k = 1 turns content counter-clockwise with row 0 at the bottom: +x goes to +y."""
    img = np.zeros((4, 4))
    img[1, 3] = 1.0  # right of centre (x > 0), just below the middle row
    out = apply_to_image(img, Augmentation(k=1))
    assert out[3, 2] == 1.0  # now above centre (y > 0), just right of the middle column
    p = apply_to_params(PARAMS, Augmentation(k=1))
    assert p[3] == pytest.approx(-PARAMS[4]) and p[4] == pytest.approx(PARAMS[3])
    assert p[2] == pytest.approx(wrap_half_turn(PARAMS[2] + math.pi / 2))
    p = apply_to_params(PARAMS, Augmentation(hflip=True))
    assert p[3] == pytest.approx(-PARAMS[3]) and p[2] == pytest.approx(-PARAMS[2])
    assert p[6] == pytest.approx(-PARAMS[6])
    for invariant in (0, 1, 5, 7, 8):
        assert p[invariant] == PARAMS[invariant]


def test_nan_r_s_survives_and_input_is_not_modified():
    p = PARAMS.copy()
    p[8] = np.nan
    out = apply_to_params(p, Augmentation(True, False, 3))
    assert np.isnan(out[8]) and np.isnan(p[8]) and p[3] == PARAMS[3]


def test_wrap_half_turn_range():
    a = np.linspace(-10, 10, 2001)
    w = wrap_half_turn(a)
    assert np.all(w > -math.pi / 2 - 1e-12) and np.all(w <= math.pi / 2 + 1e-12)
    assert np.allclose(np.sin(2 * w), np.sin(2 * a)) and np.allclose(np.cos(2 * w), np.cos(2 * a))


def test_codes_round_trip_and_sampling_probabilities():
    assert [Augmentation.decode(a.encode()) for a in ALL] == ALL
    assert len(NONTRIVIAL) == 14  # all but the two codes of the identity
    codes = sample_augmentation_codes(np.random.default_rng(0), 40000, 0.5, 0.5)
    augs = [Augmentation.decode(c) for c in codes[:4000]]
    assert abs(np.mean([a.hflip for a in augs]) - 0.5) < 0.03
    assert abs(np.mean([a.vflip for a in augs]) - 0.5) < 0.03
    ks = np.array(codes) >> 2
    assert abs(np.mean(ks == 0) - 0.5) < 0.01
    assert all(abs(np.mean(ks == k) - 1 / 6) < 0.01 for k in (1, 2, 3))
    assert np.all(sample_augmentation_codes(np.random.default_rng(0), 100, 0.0, 0.0) == 0)
