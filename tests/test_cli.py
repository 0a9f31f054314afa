"""The ``astrorim`` command line as a user meets it: WCS and units in the output FITS, the pixel scale,
refusals of unusable inputs, the reconstruct flags passed to the inference API, and the help texts."""

import contextlib
import io

import numpy as np
import pandas as pd
import pytest
import torch
from astropy.io import fits
from astropy.wcs import WCS

import astrorim.inference
from astrorim.cli import build_parser, main
from astrorim.inference import ReconstructionResult
from astrorim.model import AstroRIM
from astrorim.model.checkpoint import save_model_checkpoint
from astrorim.params import PARAMETER_NAMES

NPIX = 32


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = AstroRIM(dict(npix=NPIX, n_iter=2)).eval()
    return save_model_checkpoint(tmp_path_factory.mktemp("ckpt") / "small.pt", model, meta={"epoch": 1})


def _ring(n=NPIX, seed=0):
    g = np.random.default_rng(seed)
    yy, xx = np.mgrid[:n, :n] - (n - 1) / 2
    return 50.0 * np.exp(-0.5 * ((np.hypot(xx, yy) - n / 4) / 1.5) ** 2) + g.normal(0, 0.5, (n, n))


def _sky_header(n, scale_arcsec=0.08, rotation_deg=30.0, cd=True):
    """A TAN header with a rotated, RA-flipped pixel grid (CD matrix or PC + CDELT)."""
    h = fits.Header()
    h["CTYPE1"], h["CTYPE2"] = "RA---TAN", "DEC--TAN"
    h["CRVAL1"], h["CRVAL2"] = 150.1, 2.2
    h["CRPIX1"], h["CRPIX2"] = n / 2 + 0.3, n / 2 - 1.7
    h["CUNIT1"], h["CUNIT2"] = "deg", "deg"
    c, s = np.cos(np.radians(rotation_deg)), np.sin(np.radians(rotation_deg))
    d = scale_arcsec / 3600.0
    if cd:
        h["CD1_1"], h["CD1_2"], h["CD2_1"], h["CD2_2"] = -d * c, d * s, d * s, d * c
    else:
        h["CDELT1"], h["CDELT2"] = -d, d
        h["PC1_1"], h["PC1_2"], h["PC2_1"], h["PC2_2"] = c, -s, s, c
    h["BUNIT"] = "electron/s"
    return h


def _run(argv):
    return main([str(a) for a in argv])


def _world(wcs, x, y):
    return np.stack(wcs.all_pix2world(x, y, 0), axis=-1)


def test_wcs_pixscale_bunit_on_every_hdu_and_units_on_every_column(tmp_path, checkpoint, capsys):
    inp, out = tmp_path / "lens.fits", tmp_path / "rec.fits"
    header = _sky_header(NPIX, scale_arcsec=0.08)
    fits.PrimaryHDU(_ring().astype(np.float32), header=header).writeto(inp)
    assert _run(["reconstruct", inp, "--checkpoint", checkpoint, "--out", out]) == 0
    assert "warning" not in capsys.readouterr().err
    w_in = WCS(header)
    x, y = np.meshgrid([0.0, 7.5, 31.0], [0.0, 15.5, 31.0])
    with fits.open(out) as hdul:
        for hdu in hdul[:3]:
            h = hdu.header
            assert h["BUNIT"] == "electron/s" and h["PIXSCALE"] == pytest.approx(0.08, rel=1e-9)
            assert all(f"CD{i}_{j}" in h for i in (1, 2) for j in (1, 2))  # the input's CD form is kept
            assert np.allclose(_world(WCS(h), x, y), _world(w_in, x, y), rtol=0, atol=1e-10)
        table = hdul["PARAMS"]
        names = table.columns.names
        assert [f"TUNIT{i}" in table.header for i in range(1, len(names) + 1)] == [True] * len(names)
        units = dict(zip(names, (table.header[f"TUNIT{i}"] for i in range(1, len(names) + 1))))
        assert units["phi"] == "rad" and units["b"] == "" and units["theta_e_arcsec"] == "arcsec"
        row = table.data[0]
        half_fov = NPIX / 2 * 0.08
        assert row["theta_e_arcsec"] == pytest.approx(row["b"] * half_fov, rel=1e-12)
        assert row["x0_arcsec"] == pytest.approx(row["x0"] * half_fov, rel=1e-12)
        assert row["y0_arcsec"] == pytest.approx(row["y0"] * half_fov, rel=1e-12)
        assert hdul[0].header["PSCLSRC"] == "CD matrix"


@pytest.mark.parametrize("n_in, cd", [(64, True), (48, False)])
def test_wcs_survives_resize(tmp_path, checkpoint, n_in, cd):
    """After --resize each output pixel centre maps to the sky point astropy gives for the same point of
    the input grid: input pixel (p + 1/2) f - 1/2 (0-based) with f = n_in / npix."""
    inp, out = tmp_path / "big.fits", tmp_path / "rec.fits"
    header = _sky_header(n_in, scale_arcsec=0.05, cd=cd)
    fits.PrimaryHDU(_ring(n_in).astype(np.float32), header=header).writeto(inp)
    assert _run(["reconstruct", inp, "--checkpoint", checkpoint, "--out", out, "--resize"]) == 0
    f = n_in / NPIX
    p = np.array([0.0, 3.0, 15.5, 31.0])
    x, y = np.meshgrid(p, p[::-1])
    with fits.open(out) as hdul:
        for hdu in hdul[:3]:
            w_out = WCS(hdu.header)
            expected = _world(WCS(header), (x + 0.5) * f - 0.5, (y + 0.5) * f - 0.5)
            assert np.allclose(_world(w_out, x, y), expected, rtol=0, atol=1e-10)
            assert hdu.header["PIXSCALE"] == pytest.approx(0.05 * f, rel=1e-9)
        assert hdul[0].header["ORIGPSCL"] == pytest.approx(0.05, rel=1e-9)
        row = hdul["PARAMS"].data[0]
        assert row["theta_e_arcsec"] == pytest.approx(row["b"] * NPIX / 2 * 0.05 * f, rel=1e-12)
        # the field outline: output corners sit on the input's outer pixel edges
        corner = _world(WCS(hdul[0].header), np.array([-0.5]), np.array([-0.5]))
        assert np.allclose(corner, _world(WCS(header), np.array([-0.5]), np.array([-0.5])), atol=1e-10)


def test_sip_distortion_dropped_after_resize_with_a_warning(tmp_path, checkpoint, capsys):
    inp, out = tmp_path / "sip.fits", tmp_path / "rec.fits"
    header = _sky_header(64, scale_arcsec=0.05)
    header["CTYPE1"], header["CTYPE2"] = "RA---TAN-SIP", "DEC--TAN-SIP"
    header["A_ORDER"], header["B_ORDER"], header["A_2_0"], header["B_0_2"] = 2, 2, 1e-6, -1e-6
    fits.PrimaryHDU(_ring(64).astype(np.float32), header=header).writeto(inp)
    assert WCS(header).sip is not None
    assert _run(["reconstruct", inp, "--checkpoint", checkpoint, "--out", out, "--resize"]) == 0
    assert "distortion terms (SIP / lookup tables) are dropped" in capsys.readouterr().err
    with fits.open(out) as hdul:
        assert "A_ORDER" not in hdul[0].header and WCS(hdul[0].header).sip is None
        assert hdul[0].header["CTYPE1"] == "RA---TAN"


def test_pixel_scale_sources_and_warnings(tmp_path, checkpoint, capsys):
    bare, out = tmp_path / "bare.fits", tmp_path / "rec.fits"
    fits.PrimaryHDU(_ring()).writeto(bare)
    # no scale anywhere: a warning says why the arcsec columns are missing
    assert _run(["reconstruct", bare, "--checkpoint", checkpoint, "--out", out]) == 0
    err = capsys.readouterr().err
    assert "warning" in err and "no pixel scale" in err and "theta_e_arcsec" in err
    with fits.open(out) as hdul:
        assert "theta_e_arcsec" not in hdul["PARAMS"].columns.names
        assert "PIXSCALE" not in hdul[0].header and "b" in hdul["PARAMS"].columns.names
    # --pixel-scale supplies it
    assert _run(["reconstruct", bare, "--checkpoint", checkpoint, "--out", out, "--pixel-scale", 0.04]) == 0
    assert "warning" not in capsys.readouterr().err
    with fits.open(out) as hdul:
        assert hdul[0].header["PIXSCALE"] == pytest.approx(0.04)
        assert hdul[0].header["PSCLSRC"] == "--pixel-scale"
        assert hdul["PARAMS"].data[0]["theta_e_arcsec"] == pytest.approx(hdul["PARAMS"].data[0]["b"] * 16 * 0.04)
    # PIXSCALE alone in the header, outside the training range (0.04-0.2"/pix): a warning
    h = fits.Header()
    h["PIXSCALE"] = 0.5
    fine = tmp_path / "coarse.fits"
    fits.PrimaryHDU(_ring(), header=h).writeto(fine)
    assert _run(["reconstruct", fine, "--checkpoint", checkpoint, "--out", out]) == 0
    err = capsys.readouterr().err
    assert "outside the training range" in err and "0.5" in err
    # a --pixel-scale contradicting the header is refused
    assert _run(["reconstruct", fine, "--checkpoint", checkpoint, "--out", tmp_path / "x.fits",
                 "--pixel-scale", 0.1]) == 2
    assert "disagrees" in capsys.readouterr().err


def _refused(argv, capsys, *needles):
    assert _run(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # one line
    for needle in needles:
        assert needle in err, err
    return err


@pytest.mark.parametrize("value", [0.0, 3.5])
def test_constant_image_refused(tmp_path, checkpoint, capsys, value):
    inp, out = tmp_path / "flat.fits", tmp_path / "rec.fits"
    fits.PrimaryHDU(np.full((NPIX, NPIX), value)).writeto(inp)
    _refused(["reconstruct", inp, "--checkpoint", checkpoint, "--out", out], capsys, str(inp), "constant image")
    assert not out.exists()


def test_png_refused_with_own_message(tmp_path, checkpoint, capsys):
    png = tmp_path / "lens.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    err = _refused(["reconstruct", png, "--checkpoint", checkpoint, "--out", tmp_path / "o.fits"], capsys,
                   "is a PNG image", "--allow-nonlinear")
    assert "ignore_missing_simple" not in err


def test_pickled_model_is_not_an_astrorim_checkpoint(tmp_path, checkpoint, capsys):
    inp = tmp_path / "lens.fits"
    fits.PrimaryHDU(_ring()).writeto(inp)
    pickled = tmp_path / "model.pt"
    torch.save(torch.nn.Linear(2, 2), pickled)
    for argv in (["reconstruct", inp, "--checkpoint", pickled, "--out", tmp_path / "o.fits"],
                 ["model-info", "--checkpoint", pickled]):
        err = _refused(argv, capsys, f"not an astrorim checkpoint: {pickled}")
        assert "weights_only" not in err and "Weights only" not in err


def test_simulate_checks_out_before_simulating(tmp_path, capsys, monkeypatch):
    import astrorim.sim

    def must_not_run(*a, **k):
        raise AssertionError("simulated before checking --out")

    monkeypatch.setattr(astrorim.sim, "simulate", must_not_run)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    _refused(["simulate", "--simulator", "v1", "--n", 3, "--seed", 0, "--out", blocker / "sub" / "s.h5"],
             capsys, "cannot write --out", str(blocker / "sub" / "s.h5"))
    _refused(["simulate", "--simulator", "v1", "--n", 3, "--seed", 0, "--out", tmp_path], capsys, "directory")


def test_simulate_version_renamed_and_program_version(tmp_path, capsys):
    _refused(["simulate", "--version", "v1", "--n", 2, "--seed", 0, "--out", tmp_path / "s.h5"], capsys,
             "--simulator v1", "astrorim --version")
    assert not list(tmp_path.iterdir())
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.startswith("astrorim ")


def test_the_old_model_cli_module_is_refused_with_the_new_spelling():
    # reconstruct and model-info moved from astrorim.model.cli into astrorim.cli (one command-line module)
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "astrorim.model.cli", "model-info"], capture_output=True, text=True)
    assert run.returncode == 2 and "astrorim model-info" in run.stderr and "astrorim.cli" in run.stderr
    with pytest.raises(ImportError, match="merged into astrorim.cli"):
        import astrorim.model.cli  # noqa: F401


def _help(argv):
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), pytest.raises(SystemExit):
        build_parser().parse_args(argv)
    return buf.getvalue()


@pytest.mark.parametrize("command", [[], ["simulate"], ["reconstruct"], ["model-info"]])
def test_help_is_clean_with_examples(command):
    text = _help([*command, "--help"])
    assert "``" not in text and ":func:" not in text
    assert "examples:" in text and "astrorim " in text.split("examples:")[1]
    if command == ["simulate"]:
        assert "--simulator" in text and "--version" not in text
    if command == ["model-info"]:
        assert "number of trainable parameters" in text


# --- reconstruct's flags reach the inference API --------------------------------------------------

def _fake_reconstruct(calls, extra_columns=None):
    def reconstruct(observed, checkpoint, *, noise_sigma=None, n_iter=None, batch_size=64, device=None,
                    noise_map=None, psf=None, pixel_scale=None, refine=False):
        calls.append(dict(noise_sigma=noise_sigma, noise_map=noise_map, psf=psf, pixel_scale=pixel_scale,
                          refine=refine, passed=set(k for k, v in dict(noise_map=noise_map, psf=psf,
                                                                         pixel_scale=pixel_scale,
                                                                         refine=refine).items()
                                                    if v is not None and v is not False)))
        params = pd.DataFrame({name: [0.5] for name in PARAMETER_NAMES})
        params["noise_sigma"], params["noise_sigma_estimated"], params["flux_scale"] = 0.5, False, 10.0
        for name, value in (extra_columns or {}).items():
            params[name] = [value]
        zeros = np.zeros_like(observed, dtype=np.float32)
        return ReconstructionResult(source=zeros, model_image=zeros, residual=observed - zeros,
                                    iterates=zeros[None], params=params)
    return reconstruct


def _today_reconstruct(calls):
    """The interface before the refinement options: only the original keyword arguments."""
    fake = _fake_reconstruct(calls)

    def reconstruct(observed, checkpoint, *, noise_sigma=None, n_iter=None, batch_size=64, device=None):
        return fake(observed, checkpoint, noise_sigma=noise_sigma, n_iter=n_iter, batch_size=batch_size,
                    device=device)
    return reconstruct


def _psf(n=5, total=1.0):
    yy, xx = np.mgrid[:n, :n] - (n - 1) / 2
    k = np.exp(-0.5 * (xx ** 2 + yy ** 2))
    return total * k / k.sum()


def test_flags_passed_through(tmp_path, checkpoint, capsys, monkeypatch):
    calls = []
    refined = {"theta_e_arcsec": 0.77, "theta_e_arcsec_err": 0.01, "chi2_per_pixel": 1.1, "log_evidence": -123.4,
               "converged": True, "flag": "ok", "amortised_phi": 0.3, "amortised_b": 0.4, "b_err": 0.002,
               "log_evidence_missing": None}
    monkeypatch.setattr(astrorim.inference, "reconstruct", _fake_reconstruct(calls, refined))
    inp, psf, nmap, out = (tmp_path / n for n in ("lens.fits", "psf.fits", "noise.fits", "rec.fits"))
    fits.PrimaryHDU(_ring(), header=_sky_header(NPIX, 0.08)).writeto(inp)
    fits.PrimaryHDU(_psf()).writeto(psf)
    fits.PrimaryHDU(np.full((NPIX, NPIX), 0.7)).writeto(nmap)
    base = ["reconstruct", inp, "--checkpoint", checkpoint, "--out", out]

    assert _run(base) == 0  # nothing given: nothing new passed (works against today's reconstruct)
    assert calls[-1]["passed"] == set()
    assert _run([*base, "--psf", psf, "--noise-map", nmap, "--refine"]) == 0
    call = calls[-1]
    assert call["passed"] == {"psf", "noise_map", "refine", "pixel_scale"}
    assert np.allclose(call["psf"], _psf()) and np.allclose(call["noise_map"], 0.7)
    assert call["pixel_scale"] == pytest.approx(0.08) and call["noise_sigma"] is None
    with fits.open(out) as hdul:
        t = hdul["PARAMS"]
        names = t.columns.names
        units = {n: t.header[f"TUNIT{i}"] for i, n in enumerate(names, 1)}
        row = t.data[0]
        assert row["theta_e_arcsec"] == pytest.approx(0.77)  # the refined value, not b x half field
        assert row["chi2_per_pixel"] == pytest.approx(1.1) and row["log_evidence"] == pytest.approx(-123.4)
        assert bool(row["converged"]) is True and row["flag"] == "ok"
        assert units["theta_e_arcsec"] == "arcsec" and units["chi2_per_pixel"] == ""
        assert units["theta_e_arcsec_err"] == "arcsec" and units["amortised_phi"] == "rad"
        assert units["amortised_b"] == "" and units["b_err"] == "" and np.isnan(row["log_evidence_missing"])
        assert hdul[0].header["REFINED"] is True and "PSFFILE" in hdul[0].header
    # --resize: the PSF and the noise map follow the image to the model's grid
    big, bpsf, bmap = tmp_path / "big.fits", tmp_path / "bpsf.fits", tmp_path / "bmap.fits"
    fits.PrimaryHDU(_ring(64)).writeto(big)
    fits.PrimaryHDU(_psf(9)).writeto(bpsf)
    fits.PrimaryHDU(np.full((64, 64), 1.0)).writeto(bmap)
    assert _run(["reconstruct", big, "--checkpoint", checkpoint, "--out", out, "--resize", "--psf", bpsf,
                 "--noise-map", bmap, "--pixel-scale", 0.04]) == 0
    call = calls[-1]
    assert call["noise_map"].shape == (NPIX, NPIX) and np.allclose(call["noise_map"], 2.0)  # 2x2 sum of sigma 1
    assert call["psf"].shape[0] % 2 == 1 and call["psf"].sum() == pytest.approx(1.0)
    assert call["pixel_scale"] == pytest.approx(0.08) and "refine" not in call["passed"]


def test_flags_against_todays_reconstruct(tmp_path, checkpoint, capsys, monkeypatch):
    calls = []
    monkeypatch.setattr(astrorim.inference, "reconstruct", _today_reconstruct(calls))
    inp, out = tmp_path / "lens.fits", tmp_path / "rec.fits"
    fits.PrimaryHDU(_ring()).writeto(inp)
    assert _run(["reconstruct", inp, "--checkpoint", checkpoint, "--out", out, "--pixel-scale", 0.08]) == 0
    with fits.open(out) as hdul:  # the arcsec columns come from the CLI itself
        assert hdul["PARAMS"].data[0]["theta_e_arcsec"] == pytest.approx(0.5 * 16 * 0.08)
    _refused(["reconstruct", inp, "--checkpoint", checkpoint, "--out", tmp_path / "r2.fits", "--refine",
              "--pixel-scale", 0.08],
             capsys, "does not support refine")


@pytest.mark.parametrize("kind, data, needle", [
    ("psf", _psf(4), "odd size"),
    ("psf", _psf(5, total=2.0), "sums to 2"),
    ("psf", np.where(np.eye(5) > 0, np.nan, _psf(5)), "NaN/inf"),
    ("noise-map", np.full((NPIX, NPIX + 2), 1.0), "noise map has shape"),
    ("noise-map", np.pad(np.full((NPIX - 2, NPIX), 1.0), ((0, 2), (0, 0))), "<= 0"),
    ("noise-map", np.where(np.eye(NPIX) > 0, np.inf, 1.0), "NaN/inf"),
])
def test_psf_and_noise_map_validated(tmp_path, checkpoint, capsys, monkeypatch, kind, data, needle):
    calls = []
    monkeypatch.setattr(astrorim.inference, "reconstruct", _fake_reconstruct(calls))
    inp, aux, out = tmp_path / "lens.fits", tmp_path / f"{kind}.fits", tmp_path / "rec.fits"
    fits.PrimaryHDU(_ring()).writeto(inp)
    fits.PrimaryHDU(data).writeto(aux)
    _refused(["reconstruct", inp, "--checkpoint", checkpoint, "--out", out, f"--{kind}", aux], capsys,
             str(aux), needle)
    assert not calls and not out.exists()
