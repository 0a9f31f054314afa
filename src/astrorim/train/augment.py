"""Data augmentation by the symmetries of the square pixel grid (paper §3.3.4), images and lens parameters.

An augmentation is an element of the dihedral group D4 written as ``Augmentation(hflip, vflip, k)``:
first mirror x -> -x (``hflip``), then mirror y -> -y (``vflip``), then rotate the image content by
``k`` x 90 degrees counter-clockwise about the grid centre.  Images follow the model's grid convention
(:mod:`astrorim.model.grid`): axis -1 is x (columns), axis -2 is y (rows), row 0 at the bottom, and
the grid is symmetric about (0, 0), so every element maps pixel centres onto pixel centres exactly.

The nine normalised lens parameters (:mod:`astrorim.params`) transform with the image:

    mirror x -> -x :  x0 -> -x0,  phi -> -phi,  gamma_phi -> -gamma_phi
    mirror y -> -y :  y0 -> -y0,  phi -> -phi,  gamma_phi -> -gamma_phi
    rotate by psi  :  (x0, y0) -> R(psi) (x0, y0),  phi -> phi + psi,  gamma_phi -> gamma_phi + psi

b, q, gamma, kappa_s and r_s are invariant (the NFW halo sits at the SIE centre; the external shear
is defined about the grid origin, which every element fixes).  Angles are then wrapped back to the
truth tables' convention (-pi/2, pi/2] (an ellipse and a shear are pi-periodic in their angle).
tests/test_train_augment.py checks F(T x; T theta) = T F(x; theta) with the forward operator.

Sampling (``sample_augmentation_codes``): hflip with probability ``flip_prob``, vflip with probability
``flip_prob``, and with probability ``rot90_prob`` a rotation by k ~ U{1, 2, 3} (otherwise k = 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from astrorim.params import PARAMETER_NAMES

ANGLE_PARAMETERS = ("phi", "gamma_phi")
_INDEX = {name: i for i, name in enumerate(PARAMETER_NAMES)}


@dataclass(frozen=True)
class Augmentation:
    """One element of D4: mirror x, mirror y, then rotate the content by k x 90 deg CCW."""

    hflip: bool = False
    vflip: bool = False
    k: int = 0

    def __post_init__(self):
        object.__setattr__(self, "k", int(self.k) % 4)
        object.__setattr__(self, "hflip", bool(self.hflip))
        object.__setattr__(self, "vflip", bool(self.vflip))

    @property
    def is_identity(self) -> bool:
        return not (self.hflip or self.vflip or self.k)

    # A compact integer code (0..15) so that samplers can hand augmentations to dataset workers.
    def encode(self) -> int:
        return int(self.hflip) | (int(self.vflip) << 1) | (self.k << 2)

    @classmethod
    def decode(cls, code: int) -> "Augmentation":
        code = int(code)
        if not 0 <= code < 16:
            raise ValueError(f"augmentation code must be in 0..15, got {code}")
        return cls(bool(code & 1), bool(code & 2), code >> 2)


IDENTITY = Augmentation()


def sample_augmentation_codes(rng: np.random.Generator, n: int, flip_prob: float,
                              rot90_prob: float) -> np.ndarray:
    """``n`` augmentation codes (see :meth:`Augmentation.encode`) drawn from ``rng``.

    Always consumes ``4 n`` uniform numbers, whatever the probabilities, so a stream stays aligned.
    """
    u = rng.random((int(n), 4))
    hflip = u[:, 0] < flip_prob
    vflip = u[:, 1] < flip_prob
    k = np.where(u[:, 2] < rot90_prob, 1 + np.minimum((u[:, 3] * 3).astype(np.int64), 2), 0)
    return hflip.astype(np.int64) | (vflip.astype(np.int64) << 1) | (k << 2)


def apply_to_image(image: np.ndarray, aug: Augmentation) -> np.ndarray:
    """Transform an image (..., H, W) (y along axis -2, x along axis -1, row 0 at the bottom)."""
    out = image
    if aug.hflip:
        out = np.flip(out, axis=-1)
    if aug.vflip:
        out = np.flip(out, axis=-2)
    if aug.k:
        # With y increasing with the row index, rotating from axis -1 (x) towards axis -2 (y) turns the
        # content counter-clockwise.
        out = np.rot90(out, aug.k, axes=(-1, -2))
    return np.ascontiguousarray(out)


def wrap_half_turn(angle):
    """Angle(s) wrapped into (-pi/2, pi/2] (pi-periodic orientations)."""
    a = np.asarray(angle, dtype=float)
    wrapped = a - math.pi * np.ceil(a / math.pi - 0.5)
    return wrapped


def apply_to_params(params: np.ndarray, aug: Augmentation) -> np.ndarray:
    """Transform a (..., 9) array of normalised parameters in :data:`PARAMETER_NAMES` order.

    NaN entries (r_s without a halo) stay NaN; the input is not modified.
    """
    p = np.array(params, dtype=np.float64, copy=True)
    if p.shape[-1] != len(PARAMETER_NAMES):
        raise ValueError(f"params must have {len(PARAMETER_NAMES)} columns {PARAMETER_NAMES}, got {p.shape}")
    ix, iy = _INDEX["x0"], _INDEX["y0"]
    angles = [_INDEX[a] for a in ANGLE_PARAMETERS]
    if aug.hflip:
        p[..., ix] = -p[..., ix]
        p[..., angles] = -p[..., angles]
    if aug.vflip:
        p[..., iy] = -p[..., iy]
        p[..., angles] = -p[..., angles]
    if aug.k:
        psi = aug.k * math.pi / 2
        c, s = round(math.cos(psi)), round(math.sin(psi))  # exact 0 / +-1
        x, y = p[..., ix].copy(), p[..., iy].copy()
        p[..., ix] = c * x - s * y
        p[..., iy] = s * x + c * y
        p[..., angles] = p[..., angles] + psi
    if not aug.is_identity:
        p[..., angles] = wrap_half_turn(p[..., angles])
    return p.astype(np.asarray(params).dtype if np.asarray(params).dtype.kind == "f" else np.float64)
