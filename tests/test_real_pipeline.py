"""run_lens end to end with a STAND-IN for the trained model (test fixture only; the pipeline never uses one).

The stand-in answers with the lenstronomy reference fit of J2205: its lens parameters converted to
the model's nine normalised parameters, and its full model image (lens light + lensed source +
quasars) rendered on the 96x96 cut-out grid with the rebinned PSF.  That makes the run a real
consistency check of ingest: a wrong frame, centre, flux normalisation or PSF rebinning would show
up as a large chi2 of the rendered reference model against the cut-out.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from astrorim.real.model_step import ModelOutput
from astrorim.real.pipeline import build_table1, run_lens
from astrorim.real.reference_fit import reference_params_normalised

REPO = Path(__file__).resolve().parents[1]
CATALOGUE = REPO / "config/real_lenses.csv"

# Fixture: the J2205 reference fit (seed 12345; results/cpu_small/real_lenses/J2205/reference_fit.json), the fields the stand-in needs.
J2205_REFERENCE = {
    "name": "J2205", "status": "ok",
    "theta_e_arcsec": 0.7971331067166457, "theta_e_err_arcsec": 0.007599093701583848,
    "theta_e_eff_arcsec": 0.7584561024039999, "theta_e_eff_err_arcsec": 0.0018994938611488488,
    "chi2_reduced": 1.0263758587523226, "method": "fixture",
    "kwargs_lens": [{"theta_E": 0.7971331067166457, "e1": 0.3490156667330864, "e2": 0.23793761301326535,
                     "center_x": -0.14319224669005315, "center_y": -0.08609193127948597},
                    {"gamma1": 0.22194734860230309, "gamma2": 0.1847018920505489, "ra_0": 0.0, "dec_0": 0.0}],
    "kwargs_lens_light": [{"amp": 11.122093632211378, "R_sersic": 0.4939053783361079, "n_sersic": 5.433156480045868,
                           "e1": -0.08382018878976025, "e2": 0.09063518886098995,
                           "center_x": 0.0004033885789349183, "center_y": 0.000883888586165372}],
    "kwargs_source": [{"amp": 0.4717815549185913, "R_sersic": 0.5091140726500927, "n_sersic": 1.538209130291881,
                       "e1": -0.23829085500863142, "e2": -0.2839380843320273,
                       "center_x": -0.08520288123517997, "center_y": -0.08512064894274893}],
    "kwargs_ps": [{"ra_image": [0.7381137714869206, 0.2965686452866399, -0.9077831806247763, 0.4434893829648586],
                   "dec_image": [-0.016687932237066196, -0.620563482618452, 0.10278739310420543, 0.5367299478235504],
                   "point_amp": [48.10279406065281, 27.89943916646379, 18.58109088453468, 13.42003170582565]}],
}


def _render_reference(model_input, ref, source_only=False):
    from lenstronomy.Data.imaging_data import ImageData
    from lenstronomy.Data.psf import PSF
    from lenstronomy.ImSim.image_model import ImageModel
    from lenstronomy.LensModel.lens_model import LensModel
    from lenstronomy.LightModel.light_model import LightModel
    from lenstronomy.PointSource.point_source import PointSource

    n, s = model_input.npix, model_input.pixel_scale_arcsec
    # Pixel (0, 0)'s centre in the reference frame, whose origin is the lens centre.
    lx, ly = model_input.lens_centre_arcsec
    first_x, first_y = (0.5 - n / 2) * s - lx, (0.5 - n / 2) * s - ly
    data = ImageData(image_data=np.zeros((n, n)), ra_at_xy_0=first_x, dec_at_xy_0=first_y,
                     transform_pix2angle=np.diag([s, s]))
    if source_only:  # the unlensed source on the same grid, as the model's source plane
        light = LightModel(["SERSIC_ELLIPSE"])
        x = (np.arange(n) + 0.5 - n / 2) * s
        xx, yy = np.meshgrid(x - lx, x - ly)
        return light.surface_brightness(xx, yy, ref["kwargs_source"]) * s ** 2 / model_input.flux_scale
    psf = PSF(psf_type="PIXEL", kernel_point_source=model_input.psf.astype(float))
    model = ImageModel(data, psf, LensModel(["SIE", "SHEAR"]), LightModel(["SERSIC_ELLIPSE"]),
                       LightModel(["SERSIC_ELLIPSE"]), PointSource(["LENSED_POSITION"], fixed_magnification_list=[False]))
    img = model.image(ref["kwargs_lens"], ref["kwargs_source"], ref["kwargs_lens_light"], ref["kwargs_ps"])
    return img / model_input.flux_scale


def _stand_in(ref, scale_model=1.0):
    def runner(model_input, checkpoint):
        assert checkpoint == "NO-CHECKPOINT-stand-in"
        params = reference_params_normalised(ref, model_input.npix, model_input.pixel_scale_arcsec,
                                             model_input.lens_centre_arcsec)
        return ModelOutput(params=params, source=_render_reference(model_input, ref, source_only=True),
                           model_image=scale_model * _render_reference(model_input, ref), noise_sigma=float("nan"),
                           checkpoint=checkpoint)
    return runner


@pytest.fixture(scope="module")
def j2205_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("j2205")
    ref_json = out / "reference_fit.json"
    ref_json.write_text(json.dumps(J2205_REFERENCE))
    payload = run_lens("J2205", CATALOGUE, "NO-CHECKPOINT-stand-in", out / "lens", ref_json,
                       figure_path=out / "fig" / "J2205.png", model_runner=_stand_in(J2205_REFERENCE))
    return out, payload


def test_run_lens_outputs(j2205_run):
    out, payload = j2205_run
    on_disk = json.loads((out / "lens" / "diagnostics.json").read_text())  # strict JSON (no NaN)
    assert on_disk["name"] == "J2205" and on_disk["status"] == "ok"
    assert (out / "fig" / "J2205.png").stat().st_size > 10_000
    for f in ("lens_table.csv", "lens_table.tex", "arrays.npz"):
        assert (out / "lens" / f).is_file()
    arrays = np.load(out / "lens" / "arrays.npz")
    assert arrays["observed"].shape == (96, 96) and arrays["kappa"].shape == (192, 192)
    assert payload["pixel_scale_arcsec"] == 0.04 and payload["fov_arcsec"] == pytest.approx(3.84)


def test_stand_in_reproduces_reference_quantities(j2205_run):
    _, payload = j2205_run
    model = payload["model"]
    assert model["theta_e_arcsec"] == pytest.approx(J2205_REFERENCE["theta_e_arcsec"], rel=1e-9)
    assert payload["theta_e_model_minus_reference_percent"] == pytest.approx(0.0, abs=1e-6)
    # theta_E,eff from the model diagnostics (torch profiles) equals the reference fit's value.
    assert model["theta_e_effective_arcsec"] == pytest.approx(J2205_REFERENCE["theta_e_eff_arcsec"], rel=1e-4)
    assert model["sigma_sis_kms"] == pytest.approx(payload["reference"]["sigma_sis_kms"], rel=1e-9)


def _near_images(model_input, ref, radius_arcsec=0.25):
    n, s = model_input.npix, model_input.pixel_scale_arcsec
    lx, ly = model_input.lens_centre_arcsec
    x = (np.arange(n) + 0.5 - n / 2) * s
    xx, yy = np.meshgrid(x - lx, x - ly)
    ps = ref["kwargs_ps"][0]
    return np.any([np.hypot(xx - a, yy - b) < radius_arcsec for a, b in zip(ps["ra_image"], ps["dec_image"])], axis=0)


def _native_chi2(ref, model_input):
    """Noise-only chi2 per pixel of the reference model on the native pixels the cut-out covers."""
    from lenstronomy.Data.imaging_data import ImageData
    from lenstronomy.Data.psf import PSF
    from lenstronomy.ImSim.image_model import ImageModel
    from lenstronomy.LensModel.lens_model import LensModel
    from lenstronomy.LightModel.light_model import LightModel
    from lenstronomy.PointSource.point_source import PointSource

    from astrorim.real.catalogue import get_entry
    from astrorim.real.prepare import read_entry

    native = read_entry(get_entry(CATALOGUE, "J2205"))
    sx, sy = native.pixel_scale.x_arcsec, native.pixel_scale.y_arcsec
    rc, cc = model_input.centre_rc_native
    lx, ly = model_input.lens_centre_arcsec
    data = ImageData(image_data=native.data, ra_at_xy_0=-cc * sx - lx, dec_at_xy_0=-rc * sy - ly,
                     transform_pix2angle=np.diag([sx, sy]))
    model = ImageModel(data, PSF(psf_type="PIXEL", kernel_point_source=native.psf), LensModel(["SIE", "SHEAR"]),
                       LightModel(["SERSIC_ELLIPSE"]), LightModel(["SERSIC_ELLIPSE"]),
                       PointSource(["LENSED_POSITION"], fixed_magnification_list=[False]))
    img = model.image(ref["kwargs_lens"], ref["kwargs_source"], ref["kwargs_lens_light"], ref["kwargs_ps"])
    chi2 = ((native.data - img) / native.noise) ** 2
    return float(chi2[native.valid].mean())


def test_cutout_is_consistent_with_the_native_fit(j2205_run):
    # The reference model was fitted on native pixels; rendered on the rebinned cut-out it must
    # misfit the cut-out exactly as much as it misfits the native pixels.  A wrong frame, centre,
    # flux normalisation or PSF rebinning would change that.  (Near the quasars the reference model
    # itself is poor against the noise map alone -- its fit also used samana's PSF error map --
    # which is why the comparison is relative; away from them chi2 per pixel must be ~1.)
    out, payload = j2205_run
    from astrorim.real.prepare import prepare_lens
    from astrorim.real.catalogue import get_entry

    mi = prepare_lens(get_entry(CATALOGUE, "J2205")).model_input
    chi2_map = np.load(out / "lens" / "arrays.npz")["chi2_map"]
    near = _near_images(mi, J2205_REFERENCE)
    ok = np.isfinite(chi2_map)
    assert 0.8 < chi2_map[ok & ~near].mean() < 1.3
    # The whole J2205 image lies inside the cut-out (it is padded), so both sums cover the same sky.
    assert payload["consistency"]["chi2"] / payload["consistency"]["n_pixels"] == pytest.approx(
        _native_chi2(J2205_REFERENCE, mi), rel=0.1)


def test_reference_about_another_centre_is_refused(tmp_path):
    ref_json = tmp_path / "ref.json"
    ref_json.write_text(json.dumps(dict(J2205_REFERENCE, lens_centre_rc_native=[30.0, 30.0])))
    with pytest.raises(ValueError, match=r"ref\.json: field lens_centre_rc_native=\[30\.0, 30\.0\] differs"):
        run_lens("J2205", CATALOGUE, "NO-CHECKPOINT-stand-in", tmp_path / "lens", ref_json,
                 model_runner=_stand_in(J2205_REFERENCE))


def test_wrong_model_is_flagged(tmp_path):
    ref_json = tmp_path / "ref.json"
    ref_json.write_text(json.dumps(J2205_REFERENCE))
    payload = run_lens("J2205", CATALOGUE, "NO-CHECKPOINT-stand-in", tmp_path / "lens", ref_json,
                       model_runner=_stand_in(J2205_REFERENCE, scale_model=1.3))
    assert payload["consistency"]["flag_high_chi2"]
    assert (tmp_path / "lens" / "diagnostic_panel.png").is_file()


def test_lens_without_data(tmp_path):
    payload = run_lens("SDSSJ1004", CATALOGUE, "unused", tmp_path)
    assert payload["status"] == "no data available offline"
    assert json.loads((tmp_path / "diagnostics.json").read_text())["status"] == "no data available offline"


def test_table1_from_run_lens_output(j2205_run, tmp_path):
    out, _ = j2205_run
    table = build_table1([out / "lens" / "diagnostics.json"], CATALOGUE, tmp_path / "table1")
    row = table[table["lens"] == "J2205"].iloc[0]
    diag = json.loads((out / "lens" / "diagnostics.json").read_text())["consistency"]
    # the stand-in's model image is not a fit to the real data: the status says so rather than "ok"
    assert diag["flag_high_chi2"] and row["flag_high_chi2"]
    assert row["status"] == (f"high model chi2/dof {diag['chi2_dof']:.3g} > {diag['chi2_dof_threshold']:g}: "
                             "model image does not fit the data")
    assert row["abs_pct_diff_theta_e"] == pytest.approx(0.0, abs=1e-6)
    assert table.iloc[-1]["abs_pct_diff_theta_e"] == pytest.approx(0.0, abs=1e-6)


def test_png_lens_is_processed_as_illustrative_only(tmp_path):
    """The paper's LRG-3-757 route: a PNG, an assumed pixel scale, no PSF or noise map."""
    import csv

    import matplotlib.pyplot as plt

    y, x = np.mgrid[:120, :120].astype(float)
    r = np.hypot(x - 60, y - 60)
    ring = np.exp(-0.5 * ((r - 14.0) / 2.0) ** 2) + 0.6 * np.exp(-0.5 * (r / 3.0) ** 2)
    png = tmp_path / "lrg.png"
    plt.imsave(png, ring[::-1], cmap="gray")  # raster row 0 is the top
    cat = tmp_path / "cat.csv"
    header = next(csv.reader([CATALOGUE.read_text().splitlines()[0]])) + ["allow_nonlinear"]
    with open(cat, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=header)
        w.writeheader()
        w.writerow({k: "" for k in header} | {"name": "LRG-3-757", "image": str(png), "pixel_scale": "0.074214",
                                              "z_lens": "0.44", "z_source": "2.37", "theta_e_catalogue": "1.04",
                                              "in_paper_table1": "false", "allow_nonlinear": "true"})

    def runner(model_input, checkpoint):
        params = {"b": 1.04 / 1.92, "q": 0.95, "phi": 0.0, "x0": 0.0, "y0": 0.0, "gamma": 0.03, "gamma_phi": 0.0,
                  "kappa_s": 0.0, "r_s": float("nan")}
        return ModelOutput(params=params, source=np.zeros((96, 96)), model_image=0.5 * model_input.image,
                           noise_sigma=float("nan"), checkpoint=checkpoint)

    payload = run_lens("LRG-3-757", cat, "NO-CHECKPOINT-stand-in", tmp_path / "lens", model_runner=runner)
    assert payload["illustrative_only"] and payload["noise_estimated_from_image"]
    assert payload["pixel_scale_arcsec"] == 0.04
    assert payload["consistency"]["flag_high_chi2"]
    assert (tmp_path / "lens" / "diagnostic_panel.png").is_file()
    assert "ILLUSTRATIVE ONLY" in (tmp_path / "lens" / "lens_table.csv").read_text()
    table = build_table1([tmp_path / "lens" / "diagnostics.json"], cat, tmp_path / "t1")
    assert bool(table.iloc[0]["illustrative_only"])


# --- command line: --allow-nonlinear, --pixel-scale, and the model-step timing ------------------------------

def _ring(n=120):
    y, x = np.mgrid[:n, :n].astype(float)
    r = np.hypot(x - n / 2, y - n / 2)
    return np.exp(-0.5 * ((r - 14.0) / 2.0) ** 2) + 0.6 * np.exp(-0.5 * (r / 3.0) ** 2)


def _one_lens_catalogue(tmp_path, name, **fields):
    import csv

    cat = tmp_path / "cat.csv"
    header = next(csv.reader([CATALOGUE.read_text().splitlines()[0]]))
    header += [c for c in ("allow_nonlinear",) if c not in header]
    with open(cat, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=header)
        w.writeheader()
        w.writerow({k: "" for k in header} | {"name": name, "z_lens": "0.44", "z_source": "2.37",
                                              "theta_e_catalogue": "0.7", "in_paper_table1": "false"} | fields)
    return cat


def _fits_without_scale(tmp_path):
    from astropy.io import fits

    img, noise = tmp_path / "noscale.fits", tmp_path / "noscale_noise.fits"
    fits.PrimaryHDU(_ring().astype(np.float32)).writeto(img)  # no WCS, no PIXSCALE
    fits.PrimaryHDU(np.full((120, 120), 0.01, dtype=np.float32)).writeto(noise)
    return img, noise


def _fake_run_model(model_input, checkpoint):
    params = {"b": 0.7 / 1.92, "q": 0.95, "phi": 0.0, "x0": 0.0, "y0": 0.0, "gamma": 0.03, "gamma_phi": 0.0,
              "kappa_s": 0.0, "r_s": float("nan")}
    return ModelOutput(params=params, source=np.zeros((96, 96)), model_image=model_input.image.astype(float),
                       noise_sigma=0.01, checkpoint=str(checkpoint), runtime_s=0.0123, device="cpu")


def test_cli_fits_without_pixel_scale_needs_the_option(tmp_path, capsys, monkeypatch):
    from astrorim.real.pipeline import main

    monkeypatch.setattr("astrorim.real.model_step.run_model", _fake_run_model)
    img, noise = _fits_without_scale(tmp_path)
    cat = _one_lens_catalogue(tmp_path, "NOSCALE", image=str(img), noise=str(noise))
    for argv in (["reference", "NOSCALE", str(cat), str(tmp_path / "ref")],
                 ["lens", "NOSCALE", str(cat), "ckpt.pt", str(tmp_path / "lens")]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert f"error: {img}: no pixel scale in the header" in err and "--pixel-scale ARCSEC" in err
    assert not (tmp_path / "lens" / "diagnostics.json").exists()

    assert main(["lens", "NOSCALE", str(cat), "ckpt.pt", str(tmp_path / "lens"), "--pixel-scale", "0.05"]) == 0
    assert "pixel scale from the user" in capsys.readouterr().out
    diag = json.loads((tmp_path / "lens" / "diagnostics.json").read_text())
    assert diag["pixel_scale_source"] == "user" and diag["model_input"]["pixel_scale_source"] == "user"
    assert diag["model_input"]["native_pixel_scale_arcsec"] == [0.05, 0.05]
    assert any("pixel_scale_source: user" in n for n in diag["model_input"]["notes"])
    assert not diag["illustrative_only"]
    assert diag["model_runtime_s"] == pytest.approx(0.0123) and diag["model_device"] == "cpu"
    assert '"runtime, AstroRIM model step (cpu)",0.0123,s' in (tmp_path / "lens" / "lens_table.csv").read_text()
    with pytest.raises(SystemExit):
        main(["lens", "NOSCALE", str(cat), "ckpt.pt", str(tmp_path / "x"), "--pixel-scale", "-0.05"])


def test_catalogue_pixel_scale_rescues_a_header_without_one(tmp_path):
    img, noise = _fits_without_scale(tmp_path)
    cat = _one_lens_catalogue(tmp_path, "NOSCALE", image=str(img), noise=str(noise), pixel_scale="0.05")
    payload = run_lens("NOSCALE", cat, "ckpt.pt", tmp_path / "lens", model_runner=_fake_run_model)
    assert payload["pixel_scale_source"] == "catalogue"
    # A user value that contradicts the catalogue's is refused (file and both fields named).
    from astrorim.real.ingest import IngestError

    with pytest.raises(IngestError, match=r"noscale\.fits: --pixel-scale 0\.04\"/pix disagrees with catalogue "
                                          r"field pixel_scale=0\.05 by more than 1%"):
        run_lens("NOSCALE", cat, "ckpt.pt", tmp_path / "lens2", model_runner=_fake_run_model,
                 pixel_scale_arcsec=0.04)


def test_cli_png_needs_allow_nonlinear(tmp_path, capsys, monkeypatch):
    import matplotlib.pyplot as plt

    from astrorim.real.pipeline import main

    monkeypatch.setattr("astrorim.real.model_step.run_model", _fake_run_model)
    png = tmp_path / "lrg.png"
    # With sky noise, so that the background level estimated for the illustrative run is not zero.
    plt.imsave(png, (_ring() + np.random.default_rng(1).normal(0.0, 0.02, (120, 120)))[::-1], cmap="gray")
    cat = _one_lens_catalogue(tmp_path, "LRG", image=str(png))  # allow_nonlinear not set in the catalogue
    out = tmp_path / "lens"
    assert main(["lens", "LRG", str(cat), "ckpt.pt", str(out), "--pixel-scale", "0.05"]) == 2
    err = capsys.readouterr().err
    assert f"error: {png}: image is a PNG, not a calibrated FITS file" in err and "--allow-nonlinear" in err
    assert main(["lens", "LRG", str(cat), "ckpt.pt", str(out), "--allow-nonlinear"]) == 2
    assert f"{png}: a PNG carries no pixel scale; pass --pixel-scale" in capsys.readouterr().err
    assert main(["lens", "LRG", str(cat), "ckpt.pt", str(out), "--allow-nonlinear", "--pixel-scale", "0.05"]) == 0
    assert "ILLUSTRATIVE ONLY" in capsys.readouterr().out
    diag = json.loads((out / "diagnostics.json").read_text())
    assert diag["illustrative_only"] and diag["pixel_scale_source"] == "user"
    assert "ILLUSTRATIVE ONLY" in (out / "lens_table.csv").read_text()


def test_stand_in_without_timing_gives_null_runtime(j2205_run):
    out, payload = j2205_run
    on_disk = json.loads((out / "lens" / "diagnostics.json").read_text())
    assert on_disk["model_runtime_s"] is None and on_disk["pixel_scale_source"] == "header"
    assert payload["reference"]["runtime_s"] is None  # the fixture JSON records no runtime
