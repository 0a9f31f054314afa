"""Ingest a calibrated lens image: read FITS, mask bad pixels, centre on the lens, rebin to the model grid.

Two products:

* :func:`read_native` -> :class:`NativeImage`: the data as stored (linear flux per pixel), its noise
  map, PSF, PSF variance map and validity mask, with the pixel scale read from the header (or, when
  the header has none, a user-given or catalogue value; see
  :func:`astrorim.real.pixel_scale.resolve_pixel_scale`).  The classical reference fit works on this.
* :func:`cutout_for_model` -> :class:`ModelInput`: a 96x96 cut-out centred on the lens, rebinned
  flux-conservingly (:mod:`astrorim.real.resample`) to one of the training pixel scales, with the
  noise map propagated (variances add), the PSF rebinned to the same pixels and a single scalar
  normalisation (photometry stays linear).

Frame convention: arrays keep the FITS storage order (row 0 at the bottom with origin='lower'),
x runs along columns and y along rows, in arcsec.  For a rotated sky grid (RXJ1131) this pixel frame
is not north-up; angles of lens models fitted here are therefore measured in the pixel frame.

Output pixels not fully covered by valid input pixels (outside the image, or touching a masked
pixel) are set to zero and masked; a cut-out that extends beyond the image is zero-padded and
masked that way, and refused when more than ``max_padded_fraction`` of it lies outside.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits
from scipy import ndimage

from astrorim.real.pixel_scale import PixelScale, PixelScaleError, resolve_pixel_scale
from astrorim.real.resample import coverage_fraction, rebin_flux, rebin_psf, rebin_variance

MODEL_NPIX = 96
# Pixel scales of the training simulations [arcsec/pix] (fields of view 3.84", 7.68", 19.2" at 96 pix).
TRAINING_PIXEL_SCALES_ARCSEC: tuple[float, ...] = (0.04, 0.08, 0.20)

_FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fts.gz")
_NONLINEAR_MAGIC = {b"\x89PNG": "PNG", b"\xff\xd8\xff": "JPEG", b"GIF8": "GIF", b"BM": "BMP",
                    b"II*\x00": "TIFF", b"MM\x00*": "TIFF"}


class IngestError(ValueError):
    """An input image cannot be used; the message names the file and the problem."""


@dataclass
class NativeImage:
    """A lens image on its own pixel grid.

    ``data``: flux per pixel in the file's unit (bad pixels set to 0); ``valid``: True where a pixel
    may be used; ``noise``: 1-sigma per pixel in the data unit (None when no noise map was given);
    ``psf``: centred kernel normalised to sum 1 (None when not given); ``psf_variance``: lenstronomy
    ``psf_variance_map`` (relative, per pixel of the kernel) or None.
    """

    path: str
    data: np.ndarray
    valid: np.ndarray
    pixel_scale: PixelScale
    noise: np.ndarray | None = None
    psf: np.ndarray | None = None
    psf_variance: np.ndarray | None = None
    n_nonfinite: int = 0
    n_user_masked: int = 0
    n_negative_outliers: int = 0
    illustrative_only: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, int]:
        return self.data.shape

    @property
    def nonfinite_fraction(self) -> float:
        return self.n_nonfinite / self.data.size

    @property
    def pixel_scale_source(self) -> str:
        """Where the pixel scale came from: ``header``, ``user`` (--pixel-scale) or ``catalogue``."""
        return self.pixel_scale.origin


@dataclass
class ModelInput:
    """The 96x96 model input cut from a :class:`NativeImage`.

    ``image`` and ``noise`` are float32 flux per output pixel divided by ``flux_scale`` (same unit as
    the native data per output pixel); ``mask`` True = usable.  ``psf`` is the kernel on the output
    pixels (sum 1).  ``centre_rc_native`` is the cut-out centre in native (row, column) pixels and
    ``lens_centre_arcsec`` the lens centre it was cut around, in arcsec on the cut-out grid (x along
    columns, y along rows, origin at the cut-out centre): the two differ by the snap to the native
    pixel grid (at most half a native pixel).  ``native_pixel_scale_source``: ``header``, ``user`` or
    ``catalogue`` (see :attr:`NativeImage.pixel_scale_source`).
    """

    image: np.ndarray
    noise: np.ndarray | None
    mask: np.ndarray
    psf: np.ndarray | None
    pixel_scale_arcsec: float
    native_pixel_scale_arcsec: tuple[float, float]
    centre_rc_native: tuple[float, float]
    lens_centre_arcsec: tuple[float, float]
    flux_scale: float
    padded_fraction: float
    illustrative_only: bool
    source_path: str
    notes: list[str] = field(default_factory=list)
    native_pixel_scale_source: str = "header"

    @property
    def npix(self) -> int:
        return self.image.shape[0]

    @property
    def fov_arcsec(self) -> float:
        return self.npix * self.pixel_scale_arcsec

    def metadata(self) -> dict:
        """JSON-serialisable description (no arrays)."""
        return {
            "source_path": self.source_path,
            "npix": self.npix,
            "pixel_scale_arcsec": self.pixel_scale_arcsec,
            "fov_arcsec": self.fov_arcsec,
            "native_pixel_scale_arcsec": list(self.native_pixel_scale_arcsec),
            "pixel_scale_source": self.native_pixel_scale_source,
            "centre_rc_native": list(self.centre_rc_native),
            "lens_centre_arcsec": list(self.lens_centre_arcsec),
            "flux_scale": self.flux_scale,
            "padded_fraction": self.padded_fraction,
            "n_masked_pixels": int((~self.mask).sum()),
            "illustrative_only": self.illustrative_only,
            "has_noise_map": self.noise is not None,
            "has_psf": self.psf is not None,
            "notes": list(self.notes),
        }


def _sniff_nonlinear(path: Path) -> str | None:
    with open(path, "rb") as fh:
        head = fh.read(8)
    for magic, kind in _NONLINEAR_MAGIC.items():
        if head.startswith(magic):
            return kind
    return None


def _is_fits(path: Path) -> bool:
    name = path.name.lower()
    if name.endswith(_FITS_SUFFIXES):
        return True
    with open(path, "rb") as fh:
        return fh.read(9) == b"SIMPLE  ="


def _read_fits_2d(path: Path, what: str) -> tuple[np.ndarray, fits.Header]:
    try:
        with fits.open(path, memmap=False) as hdul:
            for hdu in hdul:
                if hdu.data is None or not hasattr(hdu.data, "shape"):
                    continue
                data = np.squeeze(np.asarray(hdu.data, dtype=float))
                if data.ndim != 2:
                    raise IngestError(f"{path}: {what} HDU '{hdu.name}' has shape {hdu.data.shape}, expected a 2-D image")
                return data, hdu.header
    except OSError as exc:
        raise IngestError(f"{path}: cannot read {what} as FITS ({exc})") from exc
    raise IngestError(f"{path}: no image data in any HDU of the {what} file")


def _read_nonlinear(path: Path) -> np.ndarray:
    import matplotlib.image as mpimg

    img = np.asarray(mpimg.imread(path), dtype=float)
    if img.ndim == 3:
        img = img[..., :3].mean(axis=-1)  # RGB(A) -> grey; the alpha channel is not flux
    # Raster images store the top row first; flip so that row 0 is at the bottom as in FITS.
    return img[::-1].copy()


def robust_background_rms(data: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Background 1-sigma from the median absolute deviation of the valid pixels (1.4826 MAD)."""
    values = data[valid] if valid is not None else data.ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise ValueError("no finite pixels to estimate the background from")
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def read_native(
    image_path: str | Path,
    *,
    psf_path: str | Path | None = None,
    noise_path: str | Path | None = None,
    mask_path: str | Path | None = None,
    psf_variance_path: str | Path | None = None,
    pixel_scale_arcsec: float | None = None,
    catalogue_pixel_scale_arcsec: float | None = None,
    allow_nonlinear: bool = False,
    max_nonfinite_fraction: float = 0.05,
    negative_outlier_sigma: float | None = 10.0,
    exclude_circles_pix: list[tuple[float, float, float]] | None = None,
) -> NativeImage:
    """Read a lens image with its calibration products; see :class:`NativeImage`.

    Pixel scale (:func:`~astrorim.real.pixel_scale.resolve_pixel_scale`): the header's when it has
    one, and then ``pixel_scale_arcsec`` (the user's ``--pixel-scale``) and
    ``catalogue_pixel_scale_arcsec`` must agree with it to 1 % (a disagreement is an error, not an
    override); without one, ``pixel_scale_arcsec``, else ``catalogue_pixel_scale_arcsec``, else an
    error.  ``NativeImage.pixel_scale_source`` records which.  PNG, JPEG and other raster images are
    refused unless ``allow_nonlinear`` is True (``--allow-nonlinear``): their pixel values are not
    linear in flux and they carry no scale, PSF or noise, so the result is flagged
    ``illustrative_only``.  Non-finite pixels (image or noise map) are masked and counted; more than
    ``max_nonfinite_fraction`` of them is an error.  Pixels more negative than
    ``-negative_outlier_sigma`` x noise cannot be sky noise (cosmetic defects such as HE0435's
    -0.96 pixel) and are masked too when a noise map is given (None disables this).
    ``exclude_circles_pix``: (row, column, radius) circles in native pixels to mask, e.g. a field star.
    """
    path = Path(image_path)
    if not path.is_file():
        raise IngestError(f"{path}: image file not found")
    notes: list[str] = []
    nonlinear_kind = _sniff_nonlinear(path)
    if nonlinear_kind is not None or not _is_fits(path):
        kind = nonlinear_kind or f"non-FITS file ('{path.suffix}')"
        if not allow_nonlinear:
            raise IngestError(f"{path}: image is a {kind}, not a calibrated FITS file; its pixel values need not be "
                              "linear in flux and it has no pixel scale, PSF or noise model. Refused "
                              "(pass --allow-nonlinear, or allow_nonlinear=True, to process it as illustrative only)")
        if pixel_scale_arcsec is None and catalogue_pixel_scale_arcsec is None:
            raise IngestError(f"{path}: a {kind} carries no pixel scale; pass --pixel-scale ARCSEC "
                              "(pixel_scale_arcsec=) or fill the catalogue field pixel_scale")
        data = _read_nonlinear(path)
        header = fits.Header()
        illustrative = True
        notes.append(f"{kind} input: photometry not linear, pixel scale assumed; illustrative only")
    else:
        data, header = _read_fits_2d(path, "image")
        illustrative = False

    try:
        scale = resolve_pixel_scale(header, str(path), user_arcsec=pixel_scale_arcsec,
                                    catalogue_arcsec=catalogue_pixel_scale_arcsec)
    except PixelScaleError as exc:
        raise IngestError(str(exc)) from exc
    if scale.origin != "header":
        notes.append(f"pixel scale {scale.x_arcsec:g}\"/pix from {scale.source} "
                     f"(pixel_scale_source: {scale.origin}); the header has none")

    finite = np.isfinite(data)
    noise = None
    if noise_path is not None:
        noise, _ = _read_fits_2d(Path(noise_path), "noise map")
        if noise.shape != data.shape:
            raise IngestError(f"{noise_path}: noise map shape {noise.shape} differs from image shape {data.shape}")
        finite &= np.isfinite(noise) & (noise > 0)
    n_nonfinite = int((~finite).sum())
    frac = n_nonfinite / data.size
    if frac > max_nonfinite_fraction:
        raise IngestError(f"{path}: {n_nonfinite} of {data.size} pixels ({frac:.1%}) are NaN/inf (or have no "
                          f"positive finite noise), more than the allowed {max_nonfinite_fraction:.1%}")
    valid = finite.copy()

    n_user = 0
    if mask_path is not None:
        mask, _ = _read_fits_2d(Path(mask_path), "mask")
        if mask.shape != data.shape:
            raise IngestError(f"{mask_path}: mask shape {mask.shape} differs from image shape {data.shape}")
        user_ok = np.isfinite(mask) & (mask > 0.5)
        n_user = int((valid & ~user_ok).sum())
        valid &= user_ok

    if exclude_circles_pix:
        rows, cols = np.mgrid[0:data.shape[0], 0:data.shape[1]]
        for row, col, radius in exclude_circles_pix:
            inside = (rows - row) ** 2 + (cols - col) ** 2 <= radius ** 2
            n_user += int((valid & inside).sum())
            valid &= ~inside
        notes.append(f"{len(exclude_circles_pix)} excluded circle(s) masked")

    n_neg = 0
    if noise is not None and negative_outlier_sigma is not None:
        with np.errstate(invalid="ignore"):
            outlier = valid & (data < -negative_outlier_sigma * noise)
        n_neg = int(outlier.sum())
        if n_neg:
            notes.append(f"{n_neg} pixel(s) below -{negative_outlier_sigma:g} sigma masked as defects")
        valid &= ~outlier

    data = np.where(finite, data, 0.0)
    if noise is not None:
        noise = np.where(finite, noise, np.inf)

    psf = psf_var = None
    if psf_path is not None:
        psf, _ = _read_fits_2d(Path(psf_path), "PSF")
        if psf.shape[0] != psf.shape[1] or psf.shape[0] % 2 == 0:
            raise IngestError(f"{psf_path}: PSF kernel must be square with odd size, got {psf.shape}")
        if not np.all(np.isfinite(psf)) or psf.sum() <= 0:
            raise IngestError(f"{psf_path}: PSF kernel has non-finite values or no positive flux")
        psf = psf / psf.sum()
    if psf_variance_path is not None:
        psf_var, _ = _read_fits_2d(Path(psf_variance_path), "PSF variance map")
        if not np.all(np.isfinite(psf_var)) or np.any(psf_var < 0):
            raise IngestError(f"{psf_variance_path}: PSF variance map must be finite and non-negative")

    return NativeImage(path=str(path), data=data, valid=valid, pixel_scale=scale, noise=noise, psf=psf,
                       psf_variance=psf_var, n_nonfinite=n_nonfinite, n_user_masked=n_user,
                       n_negative_outliers=n_neg, illustrative_only=illustrative, notes=notes)


def find_lens_centre(native: NativeImage, search_radius_arcsec: float, smooth_sigma_arcsec: float = 0.08,
                     guess_rc: tuple[float, float] | None = None) -> tuple[float, float]:
    """(row, column) of the lens galaxy: the brightest local maximum of the smoothed image within
    ``search_radius_arcsec`` of ``guess_rc`` (default: the image centre), refined to sub-pixel
    precision by a parabola through the peak and its neighbours along each axis.

    Quasar images are often brighter than the lens galaxy, hence a local maximum inside a radius
    smaller than theta_E rather than the global maximum.
    """
    data = np.where(native.valid, native.data, 0.0)
    sig_pix = smooth_sigma_arcsec / native.pixel_scale.mean_arcsec
    smooth = ndimage.gaussian_filter(data, sig_pix, mode="constant")
    ny, nx = data.shape
    if guess_rc is None:
        guess_rc = (0.5 * (ny - 1), 0.5 * (nx - 1))
    rows, cols = np.mgrid[0:ny, 0:nx]
    r_arcsec = np.hypot((rows - guess_rc[0]) * native.pixel_scale.y_arcsec,
                        (cols - guess_rc[1]) * native.pixel_scale.x_arcsec)
    is_peak = (smooth == ndimage.maximum_filter(smooth, size=3, mode="nearest")) & native.valid
    candidates = is_peak & (r_arcsec <= search_radius_arcsec)
    candidates[[0, -1], :] = False
    candidates[:, [0, -1]] = False
    if not candidates.any():
        raise IngestError(f"{native.path}: no local maximum within {search_radius_arcsec:.2f}\" of pixel "
                          f"({guess_rc[0]:.1f}, {guess_rc[1]:.1f}); cannot centre on the lens")
    idx = np.flatnonzero(candidates)
    best = idx[np.argmax(smooth.ravel()[idx])]
    r, c = divmod(int(best), nx)

    def _vertex(m1: float, m0: float, p1: float) -> float:
        denom = m1 - 2.0 * m0 + p1
        return 0.0 if denom >= 0 else float(np.clip(0.5 * (m1 - p1) / denom, -0.5, 0.5))

    return (r + _vertex(smooth[r - 1, c], smooth[r, c], smooth[r + 1, c]),
            c + _vertex(smooth[r, c - 1], smooth[r, c], smooth[r, c + 1]))


def choose_pixel_scale(theta_e_arcsec: float, extent_arcsec: float | None = None, *, fov_factor: float = 2.5,
                       margin_arcsec: float = 0.2, npix: int = MODEL_NPIX,
                       scales_arcsec: tuple[float, ...] = TRAINING_PIXEL_SCALES_ARCSEC) -> float:
    """Smallest training pixel scale whose field of view holds the lens.

    Required field of view = max(fov_factor x theta_E, 2 x (extent + margin)), where ``extent`` is
    the largest distance of a lensed image from the lens centre when known (quasar images can lie
    well outside theta_E when the shear is strong).
    """
    if not np.isfinite(theta_e_arcsec) or theta_e_arcsec <= 0:
        raise ValueError(f"theta_E must be a positive number of arcsec, got {theta_e_arcsec!r}")
    need = fov_factor * theta_e_arcsec
    if extent_arcsec is not None:
        need = max(need, 2.0 * (extent_arcsec + margin_arcsec))
    for s in sorted(scales_arcsec):
        if npix * s >= need:
            return float(s)
    raise ValueError(f"a field of view of {need:.2f}\" exceeds the largest training field "
                     f"({npix * max(scales_arcsec):.2f}\")")


def snap_centre(centre_rc: tuple[float, float], npix: int) -> tuple[float, float]:
    """The native-grid point nearest ``centre_rc`` that a ``npix`` cut-out can be centred on without
    splitting native pixels: a pixel corner (j + 1/2) for even ``npix``, a pixel centre for odd.

    Rebinning onto a grid whose edges fall between native pixel edges averages neighbouring pixels
    (an extra box blur that the PSF does not contain); with the snap an output/native size ratio of
    1 copies pixels and a ratio of 2 sums 2x2 blocks exactly.
    """
    if npix % 2 == 0:
        return float(np.floor(centre_rc[0]) + 0.5), float(np.floor(centre_rc[1]) + 0.5)
    return float(np.round(centre_rc[0])), float(np.round(centre_rc[1]))


def cutout_for_model(native: NativeImage, centre_rc: tuple[float, float], pixel_scale_arcsec: float, *,
                     npix: int = MODEL_NPIX, max_padded_fraction: float = 0.5, allow_padding: bool = True,
                     min_coverage: float = 0.999, normalise: bool = True, snap: bool = True) -> ModelInput:
    """Cut a ``npix`` x ``npix`` field around the lens at ``centre_rc`` and rebin it to ``pixel_scale_arcsec``.

    With ``snap`` the field is centred on :func:`snap_centre` (within half a native pixel of the
    lens; the offset is recorded in ``lens_centre_arcsec``).  With ``allow_padding`` False any part
    of the field outside the image is an error; otherwise it is zero-filled and masked, up to
    ``max_padded_fraction`` of the field.  ``normalise`` divides image and noise by one scalar (the
    largest valid output pixel), recorded as ``flux_scale``.
    """
    ps = native.pixel_scale
    lens_rc = (float(centre_rc[0]), float(centre_rc[1]))
    if snap:
        centre_rc = snap_centre(lens_rc, npix)
    lens_xy = ((lens_rc[1] - centre_rc[1]) * ps.x_arcsec, (lens_rc[0] - centre_rc[0]) * ps.y_arcsec)
    ratio_rc = (pixel_scale_arcsec / ps.y_arcsec, pixel_scale_arcsec / ps.x_arcsec)
    inside = coverage_fraction(np.ones(native.shape), centre_rc, npix, ratio_rc)
    padded = float(np.mean(inside < min_coverage))
    fov = npix * pixel_scale_arcsec
    if padded > 0 and not allow_padding:
        raise IngestError(f"{native.path}: the {fov:.2f}\" field at {pixel_scale_arcsec}\"/pix centred on pixel "
                          f"({centre_rc[0]:.1f}, {centre_rc[1]:.1f}) does not fit the {native.shape[1]}x"
                          f"{native.shape[0]} image ({padded:.1%} of it lies outside)")
    if padded > max_padded_fraction:
        raise IngestError(f"{native.path}: the {fov:.2f}\" field at {pixel_scale_arcsec}\"/pix does not fit the "
                          f"{native.shape[1]}x{native.shape[0]} image: {padded:.1%} of it lies outside "
                          f"(more than the allowed {max_padded_fraction:.0%})")
    valid = native.valid.astype(float)
    cover = coverage_fraction(valid, centre_rc, npix, ratio_rc)
    mask = cover >= min_coverage
    data = np.where(native.valid, native.data, 0.0)
    image = np.where(mask, rebin_flux(data, centre_rc, npix, ratio_rc), 0.0)
    noise = None
    if native.noise is not None:
        var = np.where(native.valid, native.noise, 0.0) ** 2
        noise = np.where(mask, np.sqrt(rebin_variance(var, centre_rc, npix, ratio_rc)), 0.0)
    psf = None
    if native.psf is not None:
        psf = rebin_psf(native.psf, pixel_scale_arcsec / ps.mean_arcsec)
    if not mask.any():
        raise IngestError(f"{native.path}: no valid pixel in the cut-out")
    flux_scale = float(np.max(image[mask])) if normalise else 1.0
    if not flux_scale > 0:
        raise IngestError(f"{native.path}: the cut-out has no positive flux to normalise by")
    notes = list(native.notes)
    if padded > 0:
        notes.append(f"{padded:.1%} of the field lies outside the image: zero-filled and masked")
    return ModelInput(
        image=(image / flux_scale).astype(np.float32),
        noise=None if noise is None else (noise / flux_scale).astype(np.float32),
        mask=mask,
        psf=None if psf is None else psf.astype(np.float32),
        pixel_scale_arcsec=float(pixel_scale_arcsec),
        native_pixel_scale_arcsec=(ps.x_arcsec, ps.y_arcsec),
        centre_rc_native=(float(centre_rc[0]), float(centre_rc[1])),
        lens_centre_arcsec=(float(lens_xy[0]), float(lens_xy[1])),
        flux_scale=flux_scale,
        padded_fraction=padded,
        illustrative_only=native.illustrative_only,
        source_path=native.path,
        notes=notes,
        native_pixel_scale_source=native.pixel_scale_source,
    )

