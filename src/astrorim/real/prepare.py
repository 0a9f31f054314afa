"""Shared first steps for one catalogue lens: read it, centre on the lens, find the quasar images,
choose the model pixel scale and cut out the model input.

Both the classical reference fit and the ML run start here, so they use the same centre (the origin
of both frames) and the same image positions.
"""

from __future__ import annotations

from dataclasses import dataclass

from astrorim.real.catalogue import LensEntry
from astrorim.real.ingest import (ModelInput, NativeImage, choose_pixel_scale, cutout_for_model, find_lens_centre,
                                  read_native)
from astrorim.real.point_sources import PointImageSearch, PointSourceError, find_point_images

# Lens-centre search radius as a fraction of the catalogue theta_E: quasar images lie at ~theta_E,
# so the brightest local maximum inside 0.4 theta_E is the lens galaxy.
CENTRE_SEARCH_FRACTION = 0.4


class LensNotAvailable(ValueError):
    """The catalogue lists the lens but has no image for it (no data available offline)."""


@dataclass
class PreparedLens:
    """Everything derived from the data before any fit or model run."""

    entry: LensEntry
    native: NativeImage
    centre_rc: tuple[float, float]
    search: PointImageSearch | None
    model_input: ModelInput

    @property
    def image_extent_arcsec(self) -> float | None:
        """Largest distance of a detected quasar image from the lens centre [arcsec] (None without images)."""
        return None if self.search is None else max(im.r_arcsec for im in self.search.images)


def read_entry(entry: LensEntry, *, allow_nonlinear: bool = False, pixel_scale_arcsec: float | None = None,
               **read_kwargs) -> NativeImage:
    """:func:`read_native` with the paths, masks and pixel scale of a catalogue row.

    ``allow_nonlinear`` (command line ``--allow-nonlinear``) admits a PNG/JPEG input as the
    catalogue column ``allow_nonlinear`` does.  ``pixel_scale_arcsec`` (``--pixel-scale``) and the
    catalogue's ``pixel_scale`` stand in for a header without a scale (user first) and are checked
    against the header when it has one: a disagreement above 1 % is an error.
    """
    if not entry.has_data:
        raise LensNotAvailable(f"{entry.name}: no data available offline ({entry.note or 'no image in the catalogue'})")
    return read_native(entry.image, psf_path=entry.psf, noise_path=entry.noise, mask_path=entry.mask,
                       psf_variance_path=entry.psf_variance,
                       exclude_circles_pix=list(entry.exclude_circles_pix) or None,
                       allow_nonlinear=entry.allow_nonlinear or allow_nonlinear,
                       pixel_scale_arcsec=pixel_scale_arcsec, catalogue_pixel_scale_arcsec=entry.pixel_scale_arcsec,
                       **read_kwargs)


def prepare_lens(entry: LensEntry, *, fov_factor: float = 2.5, max_padded_fraction: float = 0.5,
                 allow_nonlinear: bool = False, pixel_scale_arcsec: float | None = None) -> PreparedLens:
    """Read, centre, find images, choose the training pixel scale and cut out the 96x96 model input.

    A lens without four point images (a ring, an illustrative input) gets ``search=None`` and a
    field sized from theta_E alone; only the reference fit needs the images.  ``allow_nonlinear``
    and ``pixel_scale_arcsec`` are passed to :func:`read_entry`.
    """
    native = read_entry(entry, allow_nonlinear=allow_nonlinear, pixel_scale_arcsec=pixel_scale_arcsec)
    theta_e = entry.theta_e_catalogue_arcsec
    centre = find_lens_centre(native, CENTRE_SEARCH_FRACTION * theta_e)
    try:
        search = find_point_images(native, centre, theta_e)
        extent = max(im.r_arcsec for im in search.images)
    except PointSourceError:
        search, extent = None, None
    scale = choose_pixel_scale(theta_e, extent, fov_factor=fov_factor)
    model_input = cutout_for_model(native, centre, scale, max_padded_fraction=max_padded_fraction)
    return PreparedLens(entry=entry, native=native, centre_rc=centre, search=search, model_input=model_input)
