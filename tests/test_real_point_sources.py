"""Quasar-image finder: checked on all ten samana lenses against samana's own image positions."""

import json
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from astrorim.real.catalogue import read_catalogue
from astrorim.real.ingest import find_lens_centre, read_native
from astrorim.real.point_sources import PointSourceError, find_point_images
from astrorim.real.prepare import CENTRE_SEARCH_FRACTION, read_entry

REPO = Path(__file__).resolve().parents[1]
CATALOGUE = REPO / "config/real_lenses.csv"
SAMANA_POSITIONS = json.loads((REPO / "resources/real_lenses/samana_image_positions.json").read_text())
LENSES = [e for e in read_catalogue(CATALOGUE) if e.has_data]


@pytest.mark.parametrize("entry", LENSES, ids=[e.name for e in LENSES])
def test_detected_images_match_samana_positions(entry):
    native = read_entry(entry)
    centre = find_lens_centre(native, CENTRE_SEARCH_FRACTION * entry.theta_e_catalogue_arcsec)
    found = find_point_images(native, centre, entry.theta_e_catalogue_arcsec).images
    # samana's positions are in its sky frame; map them to native pixels with the header's
    # lenstronomy matrix and reference point (the independent frame definition).
    h = fits.getheader(entry.image)
    t = np.array([[h["TPA1_1"], h["TPA1_2"]], [h["TPA2_1"], h["TPA2_2"]]])
    ref = SAMANA_POSITIONS[entry.name]
    cols, rows = np.linalg.solve(t, np.array([np.array(ref["x"]) - h["RA_XY0"], np.array(ref["y"]) - h["DEC_XY0"]]))
    dist = np.hypot(np.array([im.col for im in found])[:, None] - cols[None],
                    np.array([im.row for im in found])[:, None] - rows[None])
    assert sorted(dist.argmin(axis=1)) == [0, 1, 2, 3], "two detections matched the same samana image"
    assert dist.min(axis=1).max() < 1.0  # pixels


def test_too_few_peaks_is_an_error(tmp_path):
    y, x = np.mgrid[:61, :61].astype(float)
    img = np.exp(-0.5 * ((x - 30) ** 2 + (y - 30) ** 2) / 3.0 ** 2)
    img += 5 * np.exp(-0.5 * ((x - 50) ** 2 + (y - 30) ** 2))
    p = tmp_path / "one.fits"
    h = fits.Header()
    h["PIXSCALE"] = 0.05
    fits.PrimaryHDU(img.astype(np.float32), header=h).writeto(p)
    native = read_native(p)
    with pytest.raises(PointSourceError, match=r"one\.fits: only 1 candidate peak"):
        find_point_images(native, (30.0, 30.0), 1.0)
