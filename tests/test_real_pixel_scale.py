"""Pixel scale from FITS headers: PIXSCALE, CD matrices (plain and rotated), PC/CDELT, lenstronomy TPA."""

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from astrorim.real.pixel_scale import (MissingPixelScaleError, PixelScaleError, pixel_scale_from_header,
                                      resolve_pixel_scale)

REPO = Path(__file__).resolve().parents[1]


def _cd_header(scale_deg: float, angle_deg: float, flip_x: bool = True) -> fits.Header:
    a = np.radians(angle_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    cd = rot @ np.diag([-scale_deg if flip_x else scale_deg, scale_deg])
    h = fits.Header()
    h["CTYPE1"], h["CTYPE2"] = "RA---TAN", "DEC--TAN"
    h["CRPIX1"], h["CRPIX2"] = 50.0, 50.0
    h["CRVAL1"], h["CRVAL2"] = 150.0, 2.0
    h["CD1_1"], h["CD1_2"], h["CD2_1"], h["CD2_2"] = cd[0, 0], cd[0, 1], cd[1, 0], cd[1, 1]
    return h


def test_pixscale_keyword():
    h = fits.Header()
    h["PIXSCALE"] = 0.05
    ps = pixel_scale_from_header(h, "x.fits")
    assert ps.x_arcsec == pytest.approx(0.05) and ps.y_arcsec == pytest.approx(0.05)
    assert ps.source == "PIXSCALE"


def test_cd_matrix_in_degrees():
    ps = pixel_scale_from_header(_cd_header(0.04 / 3600.0, 0.0), "cd.fits")
    assert ps.x_arcsec == pytest.approx(0.04, rel=1e-12)
    assert ps.y_arcsec == pytest.approx(0.04, rel=1e-12)
    assert ps.source == "CD matrix"


@pytest.mark.parametrize("angle", [17.0, 65.5, 90.0, 133.0])
def test_rotated_cd_matrix_keeps_per_axis_scale(angle):
    h = _cd_header(0.05 / 3600.0, angle)
    ps = pixel_scale_from_header(h, "rot.fits")
    assert ps.x_arcsec == pytest.approx(0.05, rel=1e-12)
    assert ps.y_arcsec == pytest.approx(0.05, rel=1e-12)
    # Independent check: astropy's own per-axis scales of the same WCS.
    scales = WCS(h).proj_plane_pixel_scales()
    assert ps.x_arcsec == pytest.approx(scales[0].to_value("arcsec"), rel=1e-10)
    # A naive read of the diagonal would be wrong for a rotated grid.
    if angle not in (0.0, 180.0):
        assert abs(abs(h["CD1_1"]) * 3600 - 0.05) > 1e-3


@pytest.mark.parametrize("cdelt_arcsec, angle", [((-0.1, 0.05), 0.0), ((-0.06, 0.06), 30.0)])
def test_pc_cdelt(cdelt_arcsec, angle):
    h = fits.Header()
    h["CTYPE1"], h["CTYPE2"] = "RA---TAN", "DEC--TAN"
    a = np.radians(angle)
    h["CDELT1"], h["CDELT2"] = cdelt_arcsec[0] / 3600.0, cdelt_arcsec[1] / 3600.0
    h["PC1_1"], h["PC1_2"], h["PC2_1"], h["PC2_2"] = np.cos(a), -np.sin(a), np.sin(a), np.cos(a)
    ps = pixel_scale_from_header(h, "pc.fits")
    scales = WCS(h).proj_plane_pixel_scales()
    assert ps.x_arcsec == pytest.approx(scales[0].to_value("arcsec"), rel=1e-10)
    assert ps.y_arcsec == pytest.approx(scales[1].to_value("arcsec"), rel=1e-10)
    assert ps.x_arcsec == pytest.approx(abs(cdelt_arcsec[0]), rel=1e-10)


def test_rxj1131_lenstronomy_matrix_is_rotated():
    header = fits.getheader(REPO / "resources/real_lenses/samana/rxj1131_f814w/image.fits")
    ps = pixel_scale_from_header(header, "rxj1131")
    assert ps.source.startswith("TPA")
    assert ps.x_arcsec == pytest.approx(0.04999, rel=2e-4)
    assert ps.y_arcsec == pytest.approx(0.04999, rel=2e-4)
    assert abs(header["TPA1_1"]) < 0.025  # the diagonal alone would give 0.0207"/pix


def test_missing_scale_names_file():
    with pytest.raises(PixelScaleError, match=r"nothing\.fits: no pixel scale"):
        pixel_scale_from_header(fits.Header(), "nothing.fits")


def test_conflicting_keywords_refused():
    h = _cd_header(0.04 / 3600.0, 0.0)
    h["PIXSCALE"] = 0.05
    with pytest.raises(PixelScaleError, match=r"conflict\.fits: pixel scale along x .* disagrees with PIXSCALE"):
        pixel_scale_from_header(h, "conflict.fits")


def test_skewed_axes_refused():
    h = fits.Header()
    h["CD1_1"], h["CD1_2"], h["CD2_1"], h["CD2_2"] = 1e-5, 3e-6, 0.0, 1e-5
    with pytest.raises(PixelScaleError, match=r"skew\.fits: pixel axes .* skewed"):
        pixel_scale_from_header(h, "skew.fits")


def test_bad_cunit_refused():
    h = _cd_header(0.04 / 3600.0, 0.0)
    h["CUNIT1"] = "m"
    with pytest.raises(PixelScaleError, match=r"unit\.fits: header field CUNIT1='m'"):
        pixel_scale_from_header(h, "unit.fits")


def test_resolve_header_then_user_then_catalogue():
    h = fits.Header()
    h["PIXSCALE"] = 0.05
    assert resolve_pixel_scale(h, "h.fits", user_arcsec=0.0504, catalogue_arcsec=0.0498).origin == "header"
    with pytest.raises(PixelScaleError, match=r"h\.fits: header pixel scale \(PIXSCALE\) 0\.05\"/pix disagrees "
                                              r"with catalogue field pixel_scale=0\.0506"):
        resolve_pixel_scale(h, "h.fits", catalogue_arcsec=0.0506)
    empty = fits.Header()
    with pytest.raises(MissingPixelScaleError, match=r"e\.fits: no pixel scale in the header .* pass --pixel-scale"):
        resolve_pixel_scale(empty, "e.fits")
    user = resolve_pixel_scale(empty, "e.fits", user_arcsec=0.04, catalogue_arcsec=0.0401)
    assert (user.x_arcsec, user.y_arcsec, user.origin, user.source) == (0.04, 0.04, "user", "--pixel-scale")
    cat = resolve_pixel_scale(empty, "e.fits", catalogue_arcsec=0.08)
    assert (cat.x_arcsec, cat.origin) == (0.08, "catalogue")
    with pytest.raises(PixelScaleError, match=r"e\.fits: --pixel-scale=-1\.0 must be a positive number"):
        resolve_pixel_scale(empty, "e.fits", user_arcsec=-1.0)
    # A header that contradicts itself is not rescued by a given value.
    bad = fits.Header()
    bad["PIXSCALE"], bad["CDELT1"], bad["CDELT2"] = 0.05, 0.04 / 3600, 0.04 / 3600
    with pytest.raises(PixelScaleError, match="disagrees with PIXSCALE"):
        resolve_pixel_scale(bad, "bad.fits", user_arcsec=0.05)
