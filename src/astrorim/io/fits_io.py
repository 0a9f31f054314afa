"""FITS input/output for the reconstruction command line (astropy.io.fits, astropy.wcs).

Reading refuses, with a message naming the file: a missing file, a file that is not FITS (a PNG,
JPEG, ... is named as such), an HDU without image data, data that are not 2-D (a 3-D cube with a
leading length-1 axis is squeezed), and NaN/inf pixels.  :func:`check_not_constant`,
:func:`check_psf` and :func:`check_noise_map` refuse an image without structure, a PSF that is not
a normalised odd-sized kernel and a noise map that does not fit the image.

The input's world coordinate system (:func:`image_wcs`) is carried to every output image HDU,
rescaled by :func:`resampled_wcs` when the image was resampled.  Writing is atomic (temporary file
in the target directory, then ``os.replace``), so a failure leaves no partial output.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from astrorim.io.atomic import atomic_path

# Leading bytes of image formats that are not FITS (named in the refusal).
_NON_FITS_MAGIC = {b"\x89PNG": "PNG", b"\xff\xd8\xff": "JPEG", b"GIF8": "GIF", b"BM": "BMP",
                   b"II*\x00": "TIFF", b"MM\x00*": "TIFF", b"%PDF": "PDF"}
# Compressed files astropy opens itself (gzip, bzip2).
_COMPRESSED_MAGIC = (b"\x1f\x8b", b"BZh")
# Keywords whose presence means the header has a world coordinate system to carry over.
_WCS_KEYS = ("CTYPE1", "CRPIX1", "CRVAL1", "CDELT1", "CD1_1", "PC1_1")
# Largest |sum - 1| of a given PSF kernel that counts as normalised (float32 files round); the fit checks the same.
PSF_SUM_TOLERANCE = 1e-3


class FitsInputError(ValueError):
    """An input FITS file cannot be used as a single 2-D observation."""


def _non_fits_kind(path: Path) -> str | None:
    """None when ``path`` starts like a FITS file (or a compressed one), else what it looks like."""
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head.startswith(b"SIMPLE") or head.startswith(_COMPRESSED_MAGIC):
        return None
    for magic, kind in _NON_FITS_MAGIC.items():
        if head.startswith(magic):
            return f"a {kind} image"
    return "not a FITS file (it does not start with a SIMPLE card)"


def read_fits_image(path: str | os.PathLike, hdu: int | None = None) -> tuple[np.ndarray, fits.Header]:
    """The 2-D image (float64, row 0 = FITS row 1 = bottom) and header of ``path``.

    ``hdu``: HDU index; None takes the first HDU that holds image data.
    """
    path = Path(path)
    if not path.is_file():
        raise FitsInputError(f"{path} does not exist")
    kind = _non_fits_kind(path)
    if kind is not None:
        raise FitsInputError(f"{path} is {kind}, not a readable FITS file: convert it to a FITS image of "
                             "linear flux, or pass a PNG/JPEG through the real-lens pipeline with "
                             "--allow-nonlinear (illustrative only)")
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


def check_not_constant(data: np.ndarray, label: str) -> None:
    """Refuse an image whose pixels are all equal (all zero, a blank frame): nothing to reconstruct."""
    if data.size and float(np.ptp(data)) == 0.0:
        raise FitsInputError(f"{label}: every pixel is {float(data.flat[0]):g}; a constant image holds no "
                             "lens to reconstruct")


def check_psf(kernel: np.ndarray, label: str, rtol: float = PSF_SUM_TOLERANCE) -> np.ndarray:
    """A PSF kernel: square, odd size, finite, non-negative sum 1 (to ``rtol``); returned as float64."""
    kernel = np.asarray(kernel, dtype=np.float64)
    if kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1] or kernel.shape[0] % 2 == 0:
        raise FitsInputError(f"{label}: PSF data has shape {kernel.shape}; expected a square kernel of odd "
                             "size, centred on its middle pixel")
    if not np.isfinite(kernel).all():
        raise FitsInputError(f"{label}: PSF data has {int((~np.isfinite(kernel)).sum())} NaN/inf pixels")
    total = float(kernel.sum())
    if not abs(total - 1.0) <= rtol:
        raise FitsInputError(f"{label}: PSF data sums to {total:.6g}; expected 1 within {rtol:g} "
                             "(normalise the kernel)")
    return kernel


def check_noise_map(noise: np.ndarray, shape: tuple[int, int], label: str) -> np.ndarray:
    """A per-pixel noise sigma map: the image's shape, finite, every pixel > 0; returned as float64."""
    noise = np.asarray(noise, dtype=np.float64)
    if noise.shape != tuple(shape):
        raise FitsInputError(f"{label}: noise map has shape {noise.shape}; the image is {tuple(shape)}")
    if not np.isfinite(noise).all():
        raise FitsInputError(f"{label}: noise map has {int((~np.isfinite(noise)).sum())} NaN/inf pixels")
    if not (noise > 0).all():
        raise FitsInputError(f"{label}: noise map has {int((noise <= 0).sum())} pixels <= 0; every sigma "
                             "must be positive")
    return noise


def image_wcs(header: fits.Header) -> WCS | None:
    """The 2-D world coordinate system of an image header, or None when it has no WCS keywords."""
    if not any(key in header for key in _WCS_KEYS):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        return WCS(header, naxis=2)


def resampled_wcs(wcs: WCS, n_in: int, n_out: int) -> WCS:
    """The WCS of an ``n_in`` px square image after :func:`resample_flux_conserving` to ``n_out`` px.

    Both grids span the same field, so output pixel p (1-based FITS) sits at input pixel
    (p - 1/2) f + 1/2 with f = n_in / n_out: CRPIX becomes (CRPIX - 1/2) / f + 1/2 and the linear
    part (CD, or CDELT with PC unchanged) grows by f.  Polynomial distortions (SIP, lookup tables)
    are defined in input pixels and are dropped, which callers must report.
    """
    f = n_in / n_out
    out = wcs.deepcopy()
    out.wcs.crpix = (np.asarray(wcs.wcs.crpix, dtype=float) - 0.5) / f + 0.5
    if out.wcs.has_cd():
        out.wcs.cd = np.asarray(wcs.wcs.cd, dtype=float) * f
    else:
        out.wcs.cdelt = np.asarray(wcs.wcs.cdelt, dtype=float) * f
    out.sip = None
    out.wcs.ctype = [str(c).replace("-SIP", "") for c in wcs.wcs.ctype]
    out.cpdis1 = out.cpdis2 = out.det2im1 = out.det2im2 = None
    return out


def has_distortion(wcs: WCS) -> bool:
    """True when the WCS carries SIP or lookup-table distortions (lost by :func:`resampled_wcs`)."""
    return any(x is not None for x in (wcs.sip, wcs.cpdis1, wcs.cpdis2, wcs.det2im1, wcs.det2im2))


def wcs_header(wcs: WCS) -> fits.Header:
    """Header cards of ``wcs``, in CD form when the input used a CD matrix (astropy writes PC + CDELT)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        header = wcs.to_header(relax=True)
    if wcs.wcs.has_cd():
        cd = np.asarray(wcs.wcs.cd, dtype=float)
        for i in (1, 2):
            header.remove(f"CDELT{i}", ignore_missing=True)
            for j in (1, 2):
                header.remove(f"PC{i}_{j}", ignore_missing=True)
        for i in (1, 2):
            for j in (1, 2):
                header[f"CD{i}_{j}"] = (float(cd[i - 1, j - 1]), "pixel -> world matrix [CUNIT/pix]")
    return header


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


def _column(name: str, value, unit: str | None) -> fits.Column:
    if value is None:  # a result field without a value (e.g. a fit that did not run): NaN
        value = float("nan")
    if isinstance(value, (bool, np.bool_)):
        return fits.Column(name=name, format="L", array=np.array([bool(value)]), unit=unit)
    if isinstance(value, str):
        return fits.Column(name=name, format=f"{max(len(value), 1)}A", array=np.array([value]), unit=unit)
    if isinstance(value, (int, np.integer)):
        return fits.Column(name=name, format="K", array=np.array([int(value)]), unit=unit)
    return fits.Column(name=name, format="D", array=np.array([float(value)]), unit=unit)


def write_reconstruction_fits(path: str | os.PathLike, source: np.ndarray, model_image: np.ndarray,
                              residual: np.ndarray, params: dict[str, object],
                              cards: dict[str, tuple[object, str]] | None = None, *,
                              image_header: fits.Header | None = None,
                              param_units: dict[str, str] | None = None,
                              param_comments: dict[str, str] | None = None) -> Path:
    """Write primary = source, ImageHDUs MODEL and RESIDUAL, BinTable PARAMS (one row), atomically.

    ``cards``: extra primary-header cards {KEYWORD: (value, comment)}.  ``image_header``: cards
    copied onto all three image HDUs (WCS, PIXSCALE, BUNIT).  ``param_units``: TUNITn of each
    PARAMS column ('' for a dimensionless one; a TUNIT card is written for every column named);
    ``param_comments``: the comment on each column's TTYPEn card.
    """
    param_units = param_units or {}
    param_comments = param_comments or {}
    primary = fits.PrimaryHDU(np.asarray(source, dtype=np.float32))
    primary.header["EXTNAME"] = ("SOURCE", "reconstructed unlensed source (source plane)")
    model_hdu = fits.ImageHDU(np.asarray(model_image, dtype=np.float32), name="MODEL")
    resid_hdu = fits.ImageHDU(np.asarray(residual, dtype=np.float32), name="RESIDUAL")
    for hdu in (primary, model_hdu, resid_hdu):
        if image_header is not None:
            hdu.header.extend(image_header, update=True)
    for key, (value, comment) in (cards or {}).items():
        # long strings (paths) continue over CONTINUE cards; a comment would only be truncated
        primary.header[key] = value if isinstance(value, str) and len(value) > 40 else (value, comment)
    primary.header["COMMENT"] = ("source plane, sampled like the image (same pixel scale, centred on the "
                                 "field): its WCS gives nominal, unlensed sky positions")
    model_hdu.header["COMMENT"] = "forward model F(source) incl. PSF and background (image plane)"
    resid_hdu.header["COMMENT"] = "observed - MODEL (image plane)"
    columns = [_column(name, value, param_units.get(name) or None) for name, value in params.items()]
    table = fits.BinTableHDU.from_columns(columns, name="PARAMS")
    for i, name in enumerate(params, start=1):
        if name in param_units and not param_units[name]:
            table.header[f"TUNIT{i}"] = ("", "dimensionless")
        if name in param_comments:
            table.header[f"TTYPE{i}"] = (name, param_comments[name])
    path = Path(path)
    with atomic_path(path, suffix=".fits.partial") as tmp:
        fits.HDUList([primary, model_hdu, resid_hdu, table]).writeto(tmp, overwrite=True)
    return path
