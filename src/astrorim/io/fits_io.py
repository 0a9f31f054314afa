"""FITS input/output for the reconstruction command line (astropy.io.fits).

Reading refuses, with a message naming the file: a missing or non-FITS file, an HDU without image
data, data that are not 2-D (a 3-D cube with a leading length-1 axis is squeezed), and NaN/inf
pixels.  Writing is atomic (temporary file in the target directory, then ``os.replace``), so a
failure leaves no partial output.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from astropy.io import fits

from astrorim.io.atomic import atomic_path


class FitsInputError(ValueError):
    """An input FITS file cannot be used as a single 2-D observation."""


def read_fits_image(path: str | os.PathLike, hdu: int | None = None) -> tuple[np.ndarray, fits.Header]:
    """The 2-D image (float64, row 0 = FITS row 1 = bottom) and header of ``path``.

    ``hdu``: HDU index; None takes the first HDU that holds image data.
    """
    path = Path(path)
    if not path.is_file():
        raise FitsInputError(f"input image {path} does not exist")
    try:
        with fits.open(path, memmap=False) as hdul:
            hdul.verify("silentfix")
            if hdu is None:
                candidates = [i for i, h in enumerate(hdul)
                              if isinstance(h, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU))
                              and h.data is not None]
                if not candidates:
                    raise FitsInputError(f"{path} has no HDU with image data")
                hdu = candidates[0]
            if not 0 <= hdu < len(hdul):
                raise FitsInputError(f"{path} has {len(hdul)} HDUs; --hdu {hdu} does not exist")
            h = hdul[hdu]
            if not isinstance(h, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)) or h.data is None:
                raise FitsInputError(f"{path} HDU {hdu} holds no image data")
            data = np.array(h.data, dtype=np.float64)
            header = h.header.copy()
    except FitsInputError:
        raise
    except (OSError, ValueError, TypeError, IndexError) as exc:
        raise FitsInputError(f"{path} is not a readable FITS file ({exc})") from exc
    if data.ndim == 3 and data.shape[0] == 1:
        data = data[0]
    if data.ndim != 2:
        raise FitsInputError(f"{path} HDU {hdu} has data of shape {data.shape}; expected one 2-D image")
    bad = ~np.isfinite(data)
    if bad.any():
        raise FitsInputError(f"{path} HDU {hdu} has {int(bad.sum())} NaN/inf pixels; "
                             f"fill or mask them before reconstruction")
    return data, header


def _overlap_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) fraction of each input pixel that falls in each output pixel (same extent)."""
    edges_in = np.arange(n_in + 1) / n_in
    edges_out = np.arange(n_out + 1) / n_out
    lo = np.maximum(edges_out[:-1, None], edges_in[None, :-1])
    hi = np.minimum(edges_out[1:, None], edges_in[None, 1:])
    return np.clip(hi - lo, 0.0, None) * n_in


def resample_flux_conserving(image: np.ndarray, npix: int) -> np.ndarray:
    """Area-weighted rebinning of a square image to npix x npix over the same field of view.

    Every input pixel's flux is shared among the output pixels it overlaps, so the total flux is
    conserved exactly (the pixel scale becomes n_in / npix times larger).
    """
    if image.ndim != 2 or image.shape[0] != image.shape[1]:
        raise ValueError(f"flux-conserving resampling needs a square 2-D image, got {image.shape}")
    m = _overlap_matrix(image.shape[0], npix)
    return m @ image @ m.T


def resampled_noise_sigma(sigma: float, n_in: int, npix: int) -> float:
    """White-noise sigma after :func:`resample_flux_conserving` (RMS over output pixels)."""
    m2 = (_overlap_matrix(n_in, npix) ** 2).sum(axis=1)
    return float(sigma * np.sqrt(np.mean(np.outer(m2, m2))))


def write_reconstruction_fits(path: str | os.PathLike, source: np.ndarray, model_image: np.ndarray,
                              residual: np.ndarray, params: dict[str, float],
                              cards: dict[str, tuple[object, str]] | None = None) -> Path:
    """Write primary = source, ImageHDUs MODEL and RESIDUAL, BinTable PARAMS (one row), atomically.

    ``cards``: extra primary-header cards {KEYWORD: (value, comment)}.
    """
    primary = fits.PrimaryHDU(np.asarray(source, dtype=np.float32))
    primary.header["EXTNAME"] = ("SOURCE", "reconstructed unlensed source (source plane)")
    for key, (value, comment) in (cards or {}).items():
        # long strings (paths) continue over CONTINUE cards; a comment would only be truncated
        primary.header[key] = value if isinstance(value, str) and len(value) > 40 else (value, comment)
    model_hdu = fits.ImageHDU(np.asarray(model_image, dtype=np.float32), name="MODEL")
    model_hdu.header["COMMENT"] = "forward model F(source) incl. PSF and background (image plane)"
    resid_hdu = fits.ImageHDU(np.asarray(residual, dtype=np.float32), name="RESIDUAL")
    resid_hdu.header["COMMENT"] = "observed - MODEL (image plane)"
    columns = [fits.Column(name=name, format="D", array=np.array([float(value)]))
               for name, value in params.items()]
    table = fits.BinTableHDU.from_columns(columns, name="PARAMS")
    table.header["COMMENT"] = "b, x0, y0, r_s in units of the half field of view; angles in rad"
    path = Path(path)
    with atomic_path(path, suffix=".fits.partial") as tmp:
        fits.HDUList([primary, model_hdu, resid_hdu, table]).writeto(tmp, overwrite=True)
    return path
