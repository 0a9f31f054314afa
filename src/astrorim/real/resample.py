"""Flux-conserving, pixel-area-weighted rebinning of an image onto a square output grid.

The input holds flux per pixel (counts/s in each pixel, not surface brightness).  Every output
pixel receives from each input pixel the fraction of that input pixel's area it overlaps:

    out[I, J] = sum_{i, j} Oy[I, i] * Ox[J, j] * in[i, j]

with Ox[J, j] the overlap length of output column J with input column j in units of the input pixel
width (likewise Oy for rows).  Both grids are axis-aligned, so the overlap is separable and the
operation is two small matrix products.  An input pixel lying fully inside the output field gives
out all of its flux (its overlaps sum to 1), so the total is conserved exactly; there is no
interpolation of surface brightness.

For independent input pixels the variance of an output pixel is sum Oy^2 Ox^2 var_in
(:func:`rebin_variance`).  Neighbouring output pixels that share an input pixel become correlated;
that covariance is not tracked (only the per-pixel variance is).

Coordinates: pixel (row i, column j) of the input has its centre at (i, j) in input-pixel units and
spans [i - 1/2, i + 1/2].  The output grid's geometric centre sits at ``centre_rc`` (row, column,
input pixels; sub-pixel allowed).  For an even output size such as the model's 96 that centre is a
pixel corner, as on the model's normalised grid (outer pixel edges at +-1, origin between pixels
47 and 48).
"""

from __future__ import annotations

import numpy as np


def overlap_matrix(n_in: int, centre_in: float, n_out: int, ratio: float) -> np.ndarray:
    """Overlap lengths (in input pixels) of ``n_out`` output pixels with ``n_in`` input pixels along one axis.

    ``ratio`` is output pixel size / input pixel size; output pixel k spans
    [centre_in + (k - n_out/2) ratio, centre_in + (k + 1 - n_out/2) ratio] in input-pixel coordinates.
    Returns an (n_out, n_in) array.
    """
    if ratio <= 0 or not np.isfinite(ratio):
        raise ValueError(f"output/input pixel-size ratio must be positive and finite, got {ratio}")
    out_edges = centre_in + (np.arange(n_out + 1) - 0.5 * n_out) * ratio
    in_lo = np.arange(n_in) - 0.5
    in_hi = in_lo + 1.0
    lo = np.maximum(out_edges[:-1, None], in_lo[None, :])
    hi = np.minimum(out_edges[1:, None], in_hi[None, :])
    return np.clip(hi - lo, 0.0, None)


def _matrices(shape_in: tuple[int, int], centre_rc: tuple[float, float], n_out: int,
              ratio_rc: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    oy = overlap_matrix(shape_in[0], centre_rc[0], n_out, ratio_rc[0])
    ox = overlap_matrix(shape_in[1], centre_rc[1], n_out, ratio_rc[1])
    return oy, ox


def rebin_flux(image: np.ndarray, centre_rc: tuple[float, float], n_out: int,
               ratio_rc: tuple[float, float]) -> np.ndarray:
    """Rebin a flux-per-pixel image onto an ``n_out`` x ``n_out`` grid (float64).

    ``ratio_rc``: output pixel size / input pixel size along rows and along columns (non-square
    input pixels give two different ratios).  Non-finite input pixels must be zeroed (and masked)
    by the caller; they would otherwise spread into every output pixel they overlap.
    """
    image = np.asarray(image, dtype=float)
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D, got shape {image.shape}")
    if not np.all(np.isfinite(image)):
        raise ValueError("image has non-finite pixels; zero and mask them before rebinning")
    oy, ox = _matrices(image.shape, centre_rc, n_out, ratio_rc)
    return oy @ image @ ox.T


def rebin_variance(variance: np.ndarray, centre_rc: tuple[float, float], n_out: int,
                   ratio_rc: tuple[float, float]) -> np.ndarray:
    """Per-pixel variance of :func:`rebin_flux`'s output for independent input pixels."""
    variance = np.asarray(variance, dtype=float)
    if not np.all(np.isfinite(variance)) or np.any(variance < 0):
        raise ValueError("variance must be finite and non-negative")
    oy, ox = _matrices(variance.shape, centre_rc, n_out, ratio_rc)
    return (oy ** 2) @ variance @ (ox ** 2).T


def coverage_fraction(valid: np.ndarray, centre_rc: tuple[float, float], n_out: int,
                      ratio_rc: tuple[float, float]) -> np.ndarray:
    """Fraction of each output pixel's area covered by valid input pixels (0 outside the image)."""
    valid = np.asarray(valid, dtype=float)
    oy, ox = _matrices(valid.shape, centre_rc, n_out, ratio_rc)
    return (oy @ valid @ ox.T) / (ratio_rc[0] * ratio_rc[1])


def rebin_psf(kernel: np.ndarray, ratio: float, n_out: int | None = None) -> np.ndarray:
    """Resample a centred PSF kernel to an output pixel ``ratio`` times the input pixel; sum normalised to 1.

    The output has odd size (``n_out``, default the smallest odd size covering the input kernel) and
    is centred on the input kernel's central pixel, so a centred kernel stays centred.
    """
    kernel = np.asarray(kernel, dtype=float)
    if kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1] or kernel.shape[0] % 2 == 0:
        raise ValueError(f"PSF kernel must be square with odd size, got shape {kernel.shape}")
    if n_out is None:
        n_out = int(np.ceil(kernel.shape[0] / ratio))
        n_out += 1 - n_out % 2
    if n_out % 2 == 0:
        raise ValueError(f"n_out must be odd so the kernel stays centred, got {n_out}")
    # For odd n_out the grid centre (n_out/2 output pixels from its edge) is the centre of pixel
    # (n_out - 1)/2, so centring the grid on the input's central pixel keeps the kernel centred.
    c = 0.5 * (kernel.shape[0] - 1)
    oy = overlap_matrix(kernel.shape[0], c, n_out, ratio)
    ox = overlap_matrix(kernel.shape[1], c, n_out, ratio)
    out = oy @ kernel @ ox.T
    total = out.sum()
    if total <= 0:
        raise ValueError("PSF kernel has no positive flux")
    return out / total
