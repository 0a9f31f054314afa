"""Ingest: FITS reading, masking, refusals with messages naming the file and the problem, centring, cut-outs."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from astropy.io import fits  # noqa: E402

from astrorim.real.ingest import (  # noqa: E402
    IngestError,
    choose_pixel_scale,
    cutout_for_model,
    find_lens_centre,
    read_native,
)

REPO = Path(__file__).resolve().parents[1]


def _write(path: Path, data: np.ndarray, **header) -> Path:
    h = fits.Header()
    for k, v in header.items():
        h[k] = v
    fits.PrimaryHDU(np.asarray(data, dtype=np.float32), header=h).writeto(path)
    return path


def _lens_scene(n: int = 81, scale: float = 0.05) -> np.ndarray:
    """A Gaussian 'lens galaxy' off the exact centre plus four brighter point sources at ~1.2"."""
    y, x = np.mgrid[:n, :n].astype(float)
    c = (n - 1) / 2 + np.array([1.3, -0.8])  # (row, col) of the galaxy
    img = 5.0 * np.exp(-0.5 * ((y - c[0]) ** 2 + (x - c[1]) ** 2) / 4.0 ** 2)
    r_pix = 1.2 / scale
    for k, amp in enumerate([40.0, 35.0, 30.0, 20.0]):
        a = 0.3 + k * np.pi / 2
        yy, xx = c[0] + r_pix * np.sin(a), c[1] + r_pix * np.cos(a)
        img += amp * np.exp(-0.5 * ((y - yy) ** 2 + (x - xx) ** 2) / 1.0 ** 2)
    return img


def test_reads_fits_with_noise_and_counts_nans(tmp_path):
    img = _lens_scene()
    img[3, 4] = np.nan
    img[10, 10:13] = np.inf
    noise = np.full(img.shape, 0.01)
    noise[20, 20] = 0.0  # a pixel without a usable noise value is bad too
    p = _write(tmp_path / "img.fits", img, PIXSCALE=0.05)
    q = _write(tmp_path / "noise.fits", noise)
    native = read_native(p, noise_path=q)
    assert native.n_nonfinite == 5
    assert native.nonfinite_fraction == pytest.approx(5 / img.size)
    assert not native.valid[3, 4] and not native.valid[10, 11] and not native.valid[20, 20]
    assert np.all(np.isfinite(native.data))
    assert native.valid.sum() == img.size - 5
    assert native.pixel_scale.x_arcsec == pytest.approx(0.05)


def test_too_many_nans_refused(tmp_path):
    img = _lens_scene()
    img[:10] = np.nan
    p = _write(tmp_path / "holey.fits", img, PIXSCALE=0.05)
    with pytest.raises(IngestError, match=r"holey\.fits: 810 of 6561 pixels \(12\.3%\) are NaN/inf"):
        read_native(p, max_nonfinite_fraction=0.05)


def test_png_refused_with_file_and_reason(tmp_path):
    p = tmp_path / "lens.png"
    plt.imsave(p, _lens_scene(), cmap="gray")
    with pytest.raises(IngestError, match=r"lens\.png: image is a PNG, not a calibrated FITS file.*--allow-nonlinear"):
        read_native(p, pixel_scale_arcsec=0.05)


def test_png_renamed_to_fits_is_still_refused(tmp_path):
    p = tmp_path / "disguised.fits"
    plt.imsave(tmp_path / "tmp.png", _lens_scene(), cmap="gray")
    p.write_bytes((tmp_path / "tmp.png").read_bytes())
    with pytest.raises(IngestError, match=r"disguised\.fits: image is a PNG"):
        read_native(p, pixel_scale_arcsec=0.05)


def test_png_allowed_only_as_illustrative(tmp_path):
    p = tmp_path / "lens.png"
    plt.imsave(p, _lens_scene(), cmap="gray")
    with pytest.raises(IngestError, match=r"lens\.png: a PNG carries no pixel scale; pass --pixel-scale"):
        read_native(p, allow_nonlinear=True)
    native = read_native(p, allow_nonlinear=True, pixel_scale_arcsec=0.074)
    assert native.illustrative_only
    assert any("illustrative" in n for n in native.notes)
    mi = cutout_for_model(native, (40.0, 40.0), 0.08, max_padded_fraction=1.0)
    assert mi.illustrative_only and mi.metadata()["illustrative_only"]


def test_missing_pixel_scale_refused(tmp_path):
    p = _write(tmp_path / "noscale.fits", _lens_scene())
    with pytest.raises(IngestError, match=r"noscale\.fits: no pixel scale in the header .*--pixel-scale ARCSEC"):
        read_native(p)
    native = read_native(p, pixel_scale_arcsec=0.05)
    assert native.pixel_scale.x_arcsec == 0.05 and native.pixel_scale.source == "--pixel-scale"
    assert native.pixel_scale_source == "user"
    assert any("pixel_scale_source: user" in n for n in native.notes)
    assert read_native(p, catalogue_pixel_scale_arcsec=0.04).pixel_scale_source == "catalogue"
    # Both given: the user's wins, but they must agree (the catalogue is a cross-check).
    both = read_native(p, pixel_scale_arcsec=0.0502, catalogue_pixel_scale_arcsec=0.05)
    assert both.pixel_scale.x_arcsec == 0.0502 and both.pixel_scale_source == "user"
    with pytest.raises(IngestError, match=r"noscale\.fits: --pixel-scale 0\.05\"/pix disagrees with catalogue "
                                          r"field pixel_scale=0\.04 by more than 1%"):
        read_native(p, pixel_scale_arcsec=0.05, catalogue_pixel_scale_arcsec=0.04)
    mi = cutout_for_model(native, (40.0, 40.0), 0.08, max_padded_fraction=1.0)
    assert mi.metadata()["pixel_scale_source"] == "user"


def test_header_scale_wins_and_disagreement_is_an_error(tmp_path):
    p = _write(tmp_path / "scaled.fits", _lens_scene(), PIXSCALE=0.05)
    native = read_native(p, pixel_scale_arcsec=0.0502, catalogue_pixel_scale_arcsec=0.0499)  # within 1 %
    assert native.pixel_scale.source == "PIXSCALE" and native.pixel_scale_source == "header"
    with pytest.raises(IngestError, match=r"scaled\.fits: header pixel scale \(PIXSCALE\) 0\.05\"/pix disagrees "
                                          r"with --pixel-scale=0\.04 by more than 1%"):
        read_native(p, pixel_scale_arcsec=0.04)
    with pytest.raises(IngestError, match=r"scaled\.fits: .* disagrees with catalogue field pixel_scale=0\.06"):
        read_native(p, catalogue_pixel_scale_arcsec=0.06)


def test_mask_and_excluded_circle(tmp_path):
    img = _lens_scene()
    mask = np.ones(img.shape)
    mask[:5] = 0
    p = _write(tmp_path / "img.fits", img, PIXSCALE=0.05)
    m = _write(tmp_path / "mask.fits", mask)
    native = read_native(p, mask_path=m, exclude_circles_pix=[(60.0, 60.0, 2.0)])
    assert native.n_user_masked == 5 * 81 + 13  # 13 pixel centres lie within 2 px of (60, 60)
    assert not native.valid[60, 60] and not native.valid[0, 0] and native.valid[40, 40]


def test_negative_defect_masked(tmp_path):
    img = _lens_scene() + 0.0
    img[30, 30] = -1.0
    p = _write(tmp_path / "img.fits", img, PIXSCALE=0.05)
    q = _write(tmp_path / "noise.fits", np.full(img.shape, 0.01))
    native = read_native(p, noise_path=q)
    assert native.n_negative_outliers == 1 and not native.valid[30, 30]


def test_centre_is_the_galaxy_not_a_brighter_quasar(tmp_path):
    p = _write(tmp_path / "img.fits", _lens_scene(), PIXSCALE=0.05)
    native = read_native(p)
    r, c = find_lens_centre(native, search_radius_arcsec=0.5)
    assert r == pytest.approx(40 + 1.3, abs=0.15) and c == pytest.approx(40 - 0.8, abs=0.15)
    # The global maximum is a point source, 1.2" away.
    gr, gc = np.unravel_index(np.argmax(native.data), native.shape)
    assert np.hypot(gr - r, gc - c) * 0.05 > 1.0


def test_cutout_conserves_flux_and_normalises_linearly(tmp_path):
    img = _lens_scene(n=81, scale=0.05)
    noise = np.full(img.shape, 0.02)
    p = _write(tmp_path / "img.fits", img, PIXSCALE=0.05)
    q = _write(tmp_path / "noise.fits", noise)
    native = read_native(p, noise_path=q)
    # 0.05 -> 0.08 "/pix; 24 output pixels cover 1.92", well inside the 4.05" image.
    mi = cutout_for_model(native, (40.0, 40.0), 0.08, npix=24, snap=False)
    assert mi.padded_fraction == 0.0 and mi.mask.all()
    # The field spans input coordinates 40 -+ 19.2 = [20.8, 59.2]: pixels 22..58 lie fully inside,
    # pixels 21 and 59 contribute 0.7 of their flux along that axis.
    w = np.zeros(81)
    w[22:59] = 1.0
    w[21] = w[59] = 0.7
    expected = w @ native.data @ w
    total = mi.image.astype(float).sum() * mi.flux_scale
    assert total == pytest.approx(expected, rel=1e-6)
    assert mi.image.max() == pytest.approx(1.0)
    # Noise: an output pixel covers (0.08/0.05)^2 = 2.56 input pixels of variance 0.02^2 each
    # (fully or in part), so its variance is sum of squared overlaps x 0.02^2.
    ratio = 0.08 / 0.05
    assert (mi.noise.astype(float) * mi.flux_scale).max() <= 0.02 * ratio + 1e-6
    assert (mi.noise.astype(float) * mi.flux_scale).min() >= 0.02 * ratio / np.sqrt(2.56) - 1e-6


def test_snapped_cutout_copies_or_block_sums_native_pixels(tmp_path):
    img = _lens_scene(n=81, scale=0.04)
    p = _write(tmp_path / "img.fits", img, PIXSCALE=0.04)
    native = read_native(p)
    lens = (40.3, 39.6)
    same = cutout_for_model(native, lens, 0.04, npix=40, normalise=False)
    # Snapped to the native pixel corner (40.5, 39.5): output pixel (i, j) is native (21 + i, 20 + j).
    assert same.centre_rc_native == (40.5, 39.5)
    np.testing.assert_allclose(same.image, img[21:61, 20:60], rtol=1e-6)
    assert same.lens_centre_arcsec == pytest.approx(((39.6 - 39.5) * 0.04, (40.3 - 40.5) * 0.04))
    binned = cutout_for_model(native, lens, 0.08, npix=20, normalise=False)
    np.testing.assert_allclose(binned.image, img[21:61, 20:60].reshape(20, 2, 20, 2).sum(axis=(1, 3)), rtol=1e-6)


def test_cutout_that_does_not_fit_is_refused_or_padded(tmp_path):
    p = _write(tmp_path / "small.fits", _lens_scene(n=61), PIXSCALE=0.05)
    native = read_native(p)
    with pytest.raises(IngestError, match=r"small\.fits: the 3\.84\" field .* does not fit the 61x61 image"):
        cutout_for_model(native, (30.0, 30.0), 0.04, allow_padding=False)
    with pytest.raises(IngestError, match=r"small\.fits: the 7\.68\" field .* lies outside"):
        cutout_for_model(native, (30.0, 30.0), 0.08, max_padded_fraction=0.5)
    mi = cutout_for_model(native, (30.0, 30.0), 0.04, max_padded_fraction=0.5)
    assert 0 < mi.padded_fraction < 0.5
    assert np.all(mi.image[~mi.mask] == 0)
    assert any("zero-filled and masked" in n for n in mi.notes)


def test_choose_pixel_scale():
    assert choose_pixel_scale(1.2) == 0.04
    assert choose_pixel_scale(1.2, extent_arcsec=2.25) == 0.08
    assert choose_pixel_scale(6.0) == 0.20
    with pytest.raises(ValueError, match="exceeds the largest training field"):
        choose_pixel_scale(9.0)


def test_real_rxj1131_ingest():
    base = REPO / "resources/real_lenses/samana/rxj1131_f814w"
    native = read_native(base / "image.fits", noise_path=base / "noise_map_derived.fits", psf_path=base / "psf.fits")
    assert native.pixel_scale.x_arcsec == pytest.approx(0.04999, rel=2e-4)
    assert native.psf.sum() == pytest.approx(1.0)
    assert native.n_nonfinite == 0
