"""Find the lensed quasar images in a native lens image.

Procedure (documented in docs/real-lenses.md and checked by eye on every lens):

1. Smooth lightly (Gaussian, ``smooth_sigma_arcsec``, about one HST pixel) so that single noisy
   pixels do not make peaks, while a point source stays far sharper than the lens galaxy.
2. Keep local maxima of the smoothed image: a pixel equal to the maximum of a disc of radius
   ``min_separation_arcsec`` around it, so two accepted peaks are at least that far apart.
3. Keep peaks in the annulus ``r_min_factor`` x theta_E < r < ``r_max_factor`` x theta_E around the
   lens centre: the lens galaxy's own peak lies inside, unrelated field objects far outside.
4. Rank by the smoothed peak value and keep the brightest ``n_images``.  Known field stars are
   masked before this step (catalogue column ``exclude_circles_pix``; J1042's star, masked the same
   way in samana), since a star brighter than the faintest quasar image would otherwise be taken.
5. Refine each to sub-pixel precision with a parabola through the peak and its two neighbours per
   axis.

Positions are in arcsec in the pixel frame (x along columns, y along rows) relative to the lens
centre given in native (row, column) pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from astrorim.real.ingest import NativeImage


class PointSourceError(ValueError):
    """Fewer candidate images than requested were found."""


@dataclass(frozen=True)
class PointImage:
    """One peak: native (row, column) pixel, offset from the lens [arcsec], smoothed peak value."""

    row: float
    col: float
    x_arcsec: float
    y_arcsec: float
    peak: float

    @property
    def r_arcsec(self) -> float:
        return float(np.hypot(self.x_arcsec, self.y_arcsec))


@dataclass(frozen=True)
class PointImageSearch:
    """The chosen images and every candidate considered (brightest first)."""

    images: list[PointImage]
    candidates: list[PointImage]

    @property
    def rejected(self) -> list[PointImage]:
        return [c for c in self.candidates if c not in self.images]


def _parabola_offset(m1: float, m0: float, p1: float) -> float:
    denom = m1 - 2.0 * m0 + p1
    return 0.0 if denom >= 0 else float(np.clip(0.5 * (m1 - p1) / denom, -0.5, 0.5))


def find_candidate_peaks(native: NativeImage, lens_centre_rc: tuple[float, float], theta_e_arcsec: float, *,
                         n_pool: int = 6, smooth_sigma_arcsec: float = 0.04, min_separation_arcsec: float = 0.2,
                         r_min_factor: float = 0.3, r_max_factor: float = 2.2) -> list[PointImage]:
    """Steps 1-3 and 5 of the module procedure: up to ``n_pool`` peaks, brightest first."""
    ps = native.pixel_scale
    data = np.where(native.valid, native.data, 0.0)
    smooth = ndimage.gaussian_filter(data, (smooth_sigma_arcsec / ps.y_arcsec, smooth_sigma_arcsec / ps.x_arcsec),
                                     mode="constant")
    ry, rx = min_separation_arcsec / ps.y_arcsec, min_separation_arcsec / ps.x_arcsec
    hy, hx = int(np.ceil(ry)), int(np.ceil(rx))
    yy, xx = np.mgrid[-hy:hy + 1, -hx:hx + 1]
    footprint = (yy / max(ry, 1e-9)) ** 2 + (xx / max(rx, 1e-9)) ** 2 <= 1.0
    is_peak = (smooth == ndimage.maximum_filter(smooth, footprint=footprint, mode="nearest")) & native.valid
    is_peak[[0, -1], :] = False
    is_peak[:, [0, -1]] = False
    rows, cols = np.nonzero(is_peak)
    x = (cols - lens_centre_rc[1]) * ps.x_arcsec
    y = (rows - lens_centre_rc[0]) * ps.y_arcsec
    r = np.hypot(x, y)
    keep = (r > r_min_factor * theta_e_arcsec) & (r < r_max_factor * theta_e_arcsec)
    rows, cols = rows[keep], cols[keep]
    order = np.argsort(smooth[rows, cols], kind="stable")[::-1][:n_pool]
    peaks = []
    for rr, cc in zip(rows[order], cols[order]):
        row = rr + _parabola_offset(smooth[rr - 1, cc], smooth[rr, cc], smooth[rr + 1, cc])
        col = cc + _parabola_offset(smooth[rr, cc - 1], smooth[rr, cc], smooth[rr, cc + 1])
        peaks.append(PointImage(row=float(row), col=float(col),
                                x_arcsec=float((col - lens_centre_rc[1]) * ps.x_arcsec),
                                y_arcsec=float((row - lens_centre_rc[0]) * ps.y_arcsec),
                                peak=float(smooth[rr, cc])))
    return peaks


def find_point_images(native: NativeImage, lens_centre_rc: tuple[float, float], theta_e_arcsec: float, *,
                      n_images: int = 4, n_pool: int = 8, **peak_kwargs) -> PointImageSearch:
    """The brightest ``n_images`` candidate peaks around the lens (see the module docstring).

    ``n_pool`` candidates are kept in the result for plots and for masking compact field objects.
    """
    candidates = find_candidate_peaks(native, lens_centre_rc, theta_e_arcsec, n_pool=max(n_pool, n_images),
                                      **peak_kwargs)
    if len(candidates) < n_images:
        raise PointSourceError(f"{native.path}: only {len(candidates)} candidate peak(s) around the lens, "
                               f"{n_images} needed")
    return PointImageSearch(candidates[:n_images], candidates)
