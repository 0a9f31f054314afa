"""Normalised pixel grids shared by the forward operator and the warp.

Conventions (docs/model.md): an ``npix x npix`` image covers [-1, 1] on both axes, x runs along
columns, y along rows, row 0 is the bottom row (as FITS shows it with origin='lower').  Pixel
centres sit at ``(j + 0.5) / npix * 2 - 1``, which is exactly where
``torch.nn.functional.grid_sample(..., align_corners=False)`` puts them, so a coordinate can be
turned into fractional pixel indices without any half-pixel guesswork.

Physical lengths convert with ``x_norm = x_arcsec / half_fov_arcsec``,
``half_fov_arcsec = npix / 2 * pixel_scale_arcsec`` (see :mod:`astrorim.params`).
"""

from __future__ import annotations

import torch


def pixel_centres_1d(npix: int, *, dtype: torch.dtype = torch.float32,
                     device: torch.device | str | None = None) -> torch.Tensor:
    """Normalised pixel-centre coordinates (npix,) in (-1, 1), increasing with index."""
    if int(npix) != npix or npix < 1:
        raise ValueError(f"npix must be a positive integer, got {npix!r}")
    j = torch.arange(int(npix), dtype=dtype, device=device)
    return (j + 0.5) / npix * 2.0 - 1.0


def normalised_grid(npix: int, *, dtype: torch.dtype = torch.float32,
                    device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) normalised coordinates of every pixel centre, each of shape (npix, npix).

    ``x[i, j]`` depends only on the column j, ``y[i, j]`` only on the row i.
    """
    c = pixel_centres_1d(npix, dtype=dtype, device=device)
    y, x = torch.meshgrid(c, c, indexing="ij")
    return x, y


def normalised_to_fractional_index(coord: torch.Tensor, npix: int) -> torch.Tensor:
    """Fractional pixel index (0 = centre of the first pixel) of a normalised coordinate.

    Inverse of :func:`pixel_centres_1d`; the outer pixel edges map to -0.5 and npix - 0.5.
    """
    return (coord + 1.0) * (0.5 * npix) - 0.5


def arcsec_to_normalised(value_arcsec, npix: int, pixel_scale_arcsec):
    """A length or coordinate in arcsec in units of the half field of view."""
    return value_arcsec / (0.5 * npix * pixel_scale_arcsec)


def normalised_to_arcsec(value_norm, npix: int, pixel_scale_arcsec):
    """A normalised length or coordinate in arcsec."""
    return value_norm * (0.5 * npix * pixel_scale_arcsec)
