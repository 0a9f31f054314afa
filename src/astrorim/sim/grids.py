"""Pixel grids, block averaging and bilinear sampling.

Conventions (shared with the model): images are indexed [row, column] = [y, x]; row 0 is at the
bottom; the field is centred on (0, 0), so the centre of detector pixel (i, j) of an ``npix`` image
with scale ``s`` [arcsec/pix] lies at x = (j + 0.5 - npix/2) s, y = (i + 0.5 - npix/2) s.  The outer
pixel edges are at +-npix s / 2, as in ``torch.nn.functional.grid_sample(align_corners=False)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SUPERSAMPLING = 4


def pixel_centres_arcsec(npix: int, pixel_scale_arcsec: float) -> np.ndarray:
    """1-D pixel-centre coordinates [arcsec] of an ``npix`` axis centred on 0."""
    return (np.arange(npix) + 0.5 - 0.5 * npix) * pixel_scale_arcsec


@dataclass(frozen=True)
class Grid:
    """Detector grid and its supersampled companion (coordinates in arcsec, float64)."""

    npix: int
    pixel_scale_arcsec: float
    supersampling: int
    x_ss: np.ndarray  # (npix*ss, npix*ss) x of supersampled pixel centres
    y_ss: np.ndarray
    x_det: np.ndarray  # (npix, npix)
    y_det: np.ndarray
    x_ss32: np.ndarray  # float32 copies for rendering light profiles (half the cost)
    y_ss32: np.ndarray

    @property
    def half_fov_arcsec(self) -> float:
        return 0.5 * self.npix * self.pixel_scale_arcsec

    @property
    def ss_pixel_scale_arcsec(self) -> float:
        return self.pixel_scale_arcsec / self.supersampling


def make_grid(npix: int, pixel_scale_arcsec: float, supersampling: int = SUPERSAMPLING) -> Grid:
    if npix <= 0:
        raise ValueError(f"npix must be > 0, got {npix}")
    if not pixel_scale_arcsec > 0:
        raise ValueError(f"pixel_scale_arcsec must be > 0, got {pixel_scale_arcsec}")
    c_ss = pixel_centres_arcsec(npix * supersampling, pixel_scale_arcsec / supersampling)
    c_det = pixel_centres_arcsec(npix, pixel_scale_arcsec)
    x_ss, y_ss = np.meshgrid(c_ss, c_ss)
    x_det, y_det = np.meshgrid(c_det, c_det)
    x_ss32, y_ss32 = x_ss.astype(np.float32), y_ss.astype(np.float32)
    for a in (x_ss, y_ss, x_det, y_det, x_ss32, y_ss32):
        a.setflags(write=False)
    return Grid(npix, float(pixel_scale_arcsec), supersampling, x_ss, y_ss, x_det, y_det, x_ss32, y_ss32)


def block_mean(image: np.ndarray, factor: int) -> np.ndarray:
    """Mean over ``factor`` x ``factor`` blocks of the last two axes (sizes must divide)."""
    *lead, h, w = image.shape
    if h % factor or w % factor:
        raise ValueError(f"image shape {image.shape} is not divisible by block factor {factor}")
    return image.reshape(*lead, h // factor, factor, w // factor, factor).mean(axis=(-3, -1))


def bilinear_sample(image: np.ndarray, col: np.ndarray, row: np.ndarray) -> np.ndarray:
    """Bilinear interpolation of a 2-D ``image`` at fractional pixel indices (col, row).

    Index 0 is the centre of the first pixel.  Outside the image the signal is zero and the
    interpolation fades to it over the last half pixel, exactly as ``grid_sample`` with
    ``padding_mode='zeros', align_corners=False`` does, so the model's forward operator and this
    simulator treat the field edge the same way.
    """
    h, w = image.shape
    padded = np.zeros((h + 2, w + 2), dtype=image.dtype)
    padded[1:-1, 1:-1] = image
    c0 = np.floor(col)
    r0 = np.floor(row)
    wc = col - c0
    wr = row - r0
    inside = (c0 >= -1) & (c0 <= w - 1) & (r0 >= -1) & (r0 <= h - 1)
    ci = np.clip(c0, -1, w - 1).astype(np.intp) + 1
    ri = np.clip(r0, -1, h - 1).astype(np.intp) + 1
    flat = padded.ravel()
    stride = w + 2
    base = ri * stride + ci
    v00 = flat[base]
    v01 = flat[base + 1]
    v10 = flat[base + stride]
    v11 = flat[base + stride + 1]
    top = v00 + wc * (v01 - v00)
    bottom = v10 + wc * (v11 - v10)
    out = top + wr * (bottom - top)
    return np.where(inside, out, 0.0)


def arcsec_to_index(coord_arcsec: np.ndarray, n: int, pixel_scale_arcsec: float) -> np.ndarray:
    """Fractional pixel index (0 = first pixel centre) of an arcsec coordinate on an n-pixel axis."""
    return coord_arcsec / pixel_scale_arcsec + 0.5 * n - 0.5
