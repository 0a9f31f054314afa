"""Pixel scale [arcsec/pix] of a calibrated image from its FITS header.

Sources, in order of preference (the first present wins; every other one present must agree to
``rtol``):

1. ``CD1_1 .. CD2_2`` (WCS, unit ``CUNITi``, default degrees)
2. ``PCi_j`` times ``CDELTi`` (WCS; PC defaults to the identity when only CDELT is given)
3. ``TPA1_1 .. TPA2_2`` (lenstronomy ``transform_pix2angle``, arcsec/pix, as the samana files carry)
4. ``PIXSCALE`` (scalar, arcsec/pix, square pixels)

:func:`resolve_pixel_scale` adds the values given outside the header: a user value (command line
``--pixel-scale``) and the catalogue's ``pixel_scale``.  The header wins when it has a scale and
every given value must agree with it to 1 % (else an error); without one the user value is used,
else the catalogue's (and the two must agree when both are given).  ``PixelScale.origin`` records
which of ``header``, ``user``, ``catalogue`` supplied the scale.

For a matrix M mapping pixel offsets (dx along columns, dy along rows) to sky offsets, the scale of
pixel axis j is the length of column j, sqrt(M[0, j]^2 + M[1, j]^2): a rotated (or mirrored) grid such
as RXJ1131's keeps its per-axis scale, which a naive read of the diagonal would get wrong (0.0207
instead of 0.0500 arcsec/pix there).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.io import fits

_UNIT_TO_ARCSEC = {"deg": 3600.0, "degree": 3600.0, "degrees": 3600.0, "arcmin": 60.0, "arcsec": 1.0}

# Beyond this the two pixel axes are not perpendicular enough for a square-pixel cutout (1 degree).
MAX_SKEW_DEG = 1.0


# Where a pixel scale came from (PixelScale.origin, diagnostics field pixel_scale_source).
PIXEL_SCALE_ORIGINS = ("header", "user", "catalogue")
# Largest relative disagreement tolerated between two sources of the pixel scale.
PIXEL_SCALE_RTOL = 0.01


class PixelScaleError(ValueError):
    """The pixel scale is missing, inconsistent between header keywords, or not usable."""


class MissingPixelScaleError(PixelScaleError):
    """The header has no pixel-scale keyword at all (a user or catalogue value can stand in)."""


@dataclass(frozen=True)
class PixelScale:
    """Per-axis pixel scale [arcsec/pix] and where it came from.

    ``x_arcsec`` is the scale along columns (FITS axis 1), ``y_arcsec`` along rows (axis 2).
    ``matrix_arcsec`` is the 2x2 pixel->sky matrix when a matrix keyword set was read, else None.
    ``origin`` is one of :data:`PIXEL_SCALE_ORIGINS` (``source`` names the keyword or field).
    """

    x_arcsec: float
    y_arcsec: float
    source: str
    matrix_arcsec: tuple[tuple[float, float], tuple[float, float]] | None = None
    origin: str = "header"

    @property
    def mean_arcsec(self) -> float:
        """Geometric mean of the two axis scales (the side of a square pixel of the same area)."""
        return float(np.sqrt(self.x_arcsec * self.y_arcsec))


def _unit_factor(header: fits.Header, axis: int, filename: str) -> float:
    unit = str(header.get(f"CUNIT{axis}", "deg")).strip().lower() or "deg"
    if unit not in _UNIT_TO_ARCSEC:
        raise PixelScaleError(f"{filename}: header field CUNIT{axis}={unit!r} is not an angle unit "
                              f"({', '.join(sorted(_UNIT_TO_ARCSEC))})")
    return _UNIT_TO_ARCSEC[unit]


def _matrix_from_cd(header: fits.Header, filename: str) -> np.ndarray | None:
    keys = ["CD1_1", "CD1_2", "CD2_1", "CD2_2"]
    if not any(k in header for k in keys):
        return None
    m = np.array([[header.get("CD1_1", 0.0), header.get("CD1_2", 0.0)],
                  [header.get("CD2_1", 0.0), header.get("CD2_2", 0.0)]], dtype=float)
    # Row i of the matrix maps onto world axis i, whose unit is CUNITi.
    m[0] *= _unit_factor(header, 1, filename)
    m[1] *= _unit_factor(header, 2, filename)
    return m


def _matrix_from_pc_cdelt(header: fits.Header, filename: str) -> np.ndarray | None:
    if "CDELT1" not in header and "CDELT2" not in header:
        return None
    if "CDELT1" not in header or "CDELT2" not in header:
        missing = "CDELT2" if "CDELT1" in header else "CDELT1"
        raise PixelScaleError(f"{filename}: header has one CDELT keyword but field {missing} is missing")
    pc = np.array([[header.get("PC1_1", 1.0), header.get("PC1_2", 0.0)],
                   [header.get("PC2_1", 0.0), header.get("PC2_2", 1.0)]], dtype=float)
    cdelt = np.array([header["CDELT1"], header["CDELT2"]], dtype=float)
    m = cdelt[:, None] * pc
    m[0] *= _unit_factor(header, 1, filename)
    m[1] *= _unit_factor(header, 2, filename)
    return m


def _matrix_from_tpa(header: fits.Header, filename: str) -> np.ndarray | None:
    keys = ["TPA1_1", "TPA1_2", "TPA2_1", "TPA2_2"]
    present = [k for k in keys if k in header]
    if not present:
        return None
    if len(present) != 4:
        missing = sorted(set(keys) - set(present))
        raise PixelScaleError(f"{filename}: lenstronomy matrix incomplete, header field(s) {missing} missing")
    return np.array([[header["TPA1_1"], header["TPA1_2"]], [header["TPA2_1"], header["TPA2_2"]]], dtype=float)


def _scale_from_matrix(m: np.ndarray, source: str, filename: str) -> PixelScale:
    if not np.all(np.isfinite(m)):
        raise PixelScaleError(f"{filename}: non-finite pixel->sky matrix from {source}")
    sx, sy = np.hypot(m[0, 0], m[1, 0]), np.hypot(m[0, 1], m[1, 1])
    if sx <= 0 or sy <= 0:
        raise PixelScaleError(f"{filename}: degenerate pixel->sky matrix from {source} (zero-length axis)")
    cos_angle = abs(m[0, 0] * m[0, 1] + m[1, 0] * m[1, 1]) / (sx * sy)
    skew_deg = 90.0 - np.degrees(np.arccos(min(cos_angle, 1.0)))
    if skew_deg > MAX_SKEW_DEG:
        raise PixelScaleError(f"{filename}: pixel axes from {source} are skewed by {skew_deg:.2f} deg "
                              f"(> {MAX_SKEW_DEG} deg); a square-pixel cutout would distort the image")
    return PixelScale(float(sx), float(sy), source, ((float(m[0, 0]), float(m[0, 1])),
                                                      (float(m[1, 0]), float(m[1, 1]))))


def pixel_scale_from_header(header: fits.Header, filename: str = "<header>", rtol: float = 0.01) -> PixelScale:
    """Per-axis pixel scale [arcsec/pix] from a FITS header; raises :class:`PixelScaleError` if absent.

    All keyword sets present are read and must agree with the preferred one to ``rtol`` (relative),
    so a header whose PIXSCALE contradicts its WCS is refused rather than silently trusted.
    """
    candidates: list[PixelScale] = []
    for source, reader in (("CD matrix", _matrix_from_cd), ("PC/CDELT", _matrix_from_pc_cdelt),
                           ("TPA (lenstronomy transform_pix2angle)", _matrix_from_tpa)):
        m = reader(header, filename)
        if m is not None:
            candidates.append(_scale_from_matrix(m, source, filename))
    if "PIXSCALE" in header:
        value = header["PIXSCALE"]
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise PixelScaleError(f"{filename}: header field PIXSCALE={value!r} is not a number") from None
        if not np.isfinite(value) or value <= 0:
            raise PixelScaleError(f"{filename}: header field PIXSCALE={value!r} is not a positive number")
        candidates.append(PixelScale(value, value, "PIXSCALE"))
    if not candidates:
        raise MissingPixelScaleError(f"{filename}: no pixel scale in the header (looked for CD1_1.., CDELT1/2, "
                              "TPA1_1.., PIXSCALE); pass pixel_scale_arcsec explicitly if it is known")
    best = candidates[0]
    for other in candidates[1:]:
        for axis, a, b in (("x", best.x_arcsec, other.x_arcsec), ("y", best.y_arcsec, other.y_arcsec)):
            if abs(a - b) > rtol * a:
                raise PixelScaleError(f"{filename}: pixel scale along {axis} from {best.source} ({a:.6g}\"/pix) "
                                      f"disagrees with {other.source} ({b:.6g}\"/pix) by more than {rtol:.0%}")
    return best


def _given_scales(filename: str, user_arcsec: float | None,
                  catalogue_arcsec: float | None) -> list[tuple[str, str, float]]:
    """(origin, label, value) of the pixel scales given outside the header, validated, user first."""
    given = []
    for origin, label, value in (("user", "--pixel-scale", user_arcsec),
                                 ("catalogue", "catalogue field pixel_scale", catalogue_arcsec)):
        if value is None:
            continue
        try:
            ok = np.isfinite(float(value)) and float(value) > 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise PixelScaleError(f"{filename}: {label}={value!r} must be a positive number of arcsec/pix")
        given.append((origin, label, float(value)))
    return given


def resolve_pixel_scale(header: fits.Header, filename: str = "<header>", *, user_arcsec: float | None = None,
                        catalogue_arcsec: float | None = None, rtol: float = PIXEL_SCALE_RTOL) -> PixelScale:
    """The pixel scale of an image: header > user (``--pixel-scale``) > catalogue ``pixel_scale``.

    A header scale is cross-checked: a given value differing from its mean by more than ``rtol``
    is an error (the header is not silently overridden).  Without a header scale the first given
    value is used (square pixels) after checking the others against it; with none at all a
    :class:`MissingPixelScaleError` names the file and the ``--pixel-scale`` option.
    """
    given = _given_scales(filename, user_arcsec, catalogue_arcsec)
    try:
        header_scale = pixel_scale_from_header(header, filename, rtol=rtol)
    except MissingPixelScaleError:
        header_scale = None
    if header_scale is None and not given:
        raise MissingPixelScaleError(f"{filename}: no pixel scale in the header (looked for CD1_1.., CDELT1/2, "
                                     "TPA1_1.., PIXSCALE) and none given; pass --pixel-scale ARCSEC "
                                     "(pixel_scale_arcsec=) or fill the catalogue field pixel_scale if it is known")
    if header_scale is not None:
        best_value, best_label = header_scale.mean_arcsec, f"header pixel scale ({header_scale.source})"
    else:
        origin, best_label, best_value = given[0]
    for _, label, value in given:
        if abs(value - best_value) > rtol * best_value:
            raise PixelScaleError(f"{filename}: {best_label} {best_value:.6g}\"/pix disagrees with {label}={value:g} "
                                  f"by more than {rtol:.0%}")
    if header_scale is not None:
        return header_scale
    return PixelScale(best_value, best_value, best_label, origin=origin)
