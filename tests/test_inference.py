"""Inference API and the reconstruct / model-info command line (and simulate's refusals)."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from astropy.io import fits

from astrorim.inference import reconstruct
from astrorim.io.fits_io import (FitsInputError, read_fits_image, resample_flux_conserving,
                                 resampled_noise_sigma)
from astrorim.model import AstroRIM
from astrorim.model.checkpoint import save_model_checkpoint
from astrorim.cli import build_parser
from astrorim.params import PARAMETER_NAMES

NPIX = 32


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    return AstroRIM(dict(npix=NPIX, n_iter=2)).eval()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, small_model):
    return save_model_checkpoint(tmp_path_factory.mktemp("ckpt") / "small.pt", small_model,
                                 meta={"epoch": 1})


def _image(seed=0, n=NPIX):
    g = np.random.default_rng(seed)
    yy, xx = np.mgrid[:n, :n] - (n - 1) / 2
    ring = np.exp(-0.5 * ((np.hypot(xx, yy) - n / 4) / 1.5) ** 2)
    return 50.0 * ring + g.normal(0, 0.5, (n, n))


def test_api_shapes_and_units(small_model):
    obs = np.stack([_image(0), _image(1)])
    res = reconstruct(obs, small_model, noise_sigma=0.5, batch_size=1, device="cpu")
    assert res.source.shape == (2, NPIX, NPIX) and res.iterates.shape == (2, 2, NPIX, NPIX)
    assert np.allclose(res.residual, obs - res.model_image, atol=1e-4)
    assert list(res.params.columns[:9]) == list(PARAMETER_NAMES) and len(res.params) == 2
    assert np.allclose(res.params["noise_sigma"], 0.5)
    # linear in flux: scaling the input scales every image output by the same factor
    res10 = reconstruct(10.0 * obs, small_model, noise_sigma=5.0, device="cpu")
    assert np.allclose(res10.source, 10.0 * res.source, rtol=1e-4, atol=1e-4 * np.abs(res10.source).max())
    assert np.allclose(res10.model_image, 10.0 * res.model_image, rtol=1e-4,
                       atol=1e-4 * np.abs(res10.model_image).max())
    pd.testing.assert_frame_equal(res10.params[list(PARAMETER_NAMES)], res.params[list(PARAMETER_NAMES)],
                                  rtol=1e-4, atol=1e-5)
    # a 2-D input gives un-batched outputs; chunking does not change results
    single = reconstruct(obs[0], small_model, noise_sigma=0.5, device="cpu")
    assert single.source.shape == (NPIX, NPIX) and single.iterates.shape == (2, NPIX, NPIX)
    assert np.allclose(single.source, res.source[0], atol=1e-5 * np.abs(single.source).max())


def test_api_estimates_noise_and_refuses_bad_input(small_model, checkpoint):
    res = reconstruct(_image(2), checkpoint, device="cpu")
    assert bool(res.params["noise_sigma_estimated"].iloc[0])
    assert 0.3 < res.params["noise_sigma"].iloc[0] < 0.7
    with pytest.raises(ValueError, match="model needs 32 x 32"):
        reconstruct(np.zeros((40, 40)), small_model, device="cpu")
    bad = _image(3)
    bad[3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        reconstruct(bad, small_model, device="cpu")
    with pytest.raises(ValueError, match="noise_sigma"):
        reconstruct(_image(3), small_model, noise_sigma=-1.0, device="cpu")
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        reconstruct(np.zeros((1, 1, NPIX, NPIX)), small_model, device="cpu")


def test_flux_conserving_resample():
    img = np.random.default_rng(0).random((50, 50))
    for n in (32, 96, 25):
        out = resample_flux_conserving(img, n)
        assert out.shape == (n, n) and np.isclose(out.sum(), img.sum(), rtol=1e-12)
    # integer down-sampling is a plain block sum
    assert np.allclose(resample_flux_conserving(img, 25), img.reshape(25, 2, 25, 2).sum(axis=(1, 3)))
    assert np.isclose(resampled_noise_sigma(1.0, 50, 25), 2.0)
    noise = np.random.default_rng(1).normal(0, 1.0, (300, 300))
    assert np.isclose(resample_flux_conserving(noise, 100).std(), resampled_noise_sigma(1.0, 300, 100),
                      rtol=0.05)


def _run(argv):
    args = build_parser().parse_args([str(a) for a in argv])
    return args.func(args)


def test_cli_reconstruct_good_input(tmp_path, checkpoint, capsys):
    inp = tmp_path / "lens.fits"
    hdr = fits.Header()
    hdr["BUNIT"] = "ADU"
    fits.PrimaryHDU(_image(4).astype(np.float32)[None], header=hdr).writeto(inp)  # 3-D, leading 1
    out = tmp_path / "rec.fits"
    assert _run(["reconstruct", inp, "--checkpoint", checkpoint, "--out", out, "--noise-sigma", 0.5]) == 0
    with fits.open(out) as hdul:
        assert [h.name for h in hdul] == ["SOURCE", "MODEL", "RESIDUAL", "PARAMS"]
        assert hdul[0].data.shape == (NPIX, NPIX)
        h = hdul[0].header
        assert len(h["CKPTSHA"]) == 64 and h["MODNPIX"] == NPIX and h["BUNIT"] == "ADU"
        assert h["NOISESIG"] == pytest.approx(0.5) and h["RESAMPLD"] is False
        assert list(hdul["PARAMS"].columns.names) == list(PARAMETER_NAMES)
        assert np.allclose(hdul["RESIDUAL"].data, _image(4).astype(np.float32) - hdul["MODEL"].data,
                           atol=1e-3)
    # with --resize a 64 px image is rebinned (flux-conserving) to 32 px
    big = tmp_path / "big.fits"
    fits.PrimaryHDU(_image(5, n=64)).writeto(big)
    out2 = tmp_path / "rec2.fits"
    assert _run(["reconstruct", big, "--checkpoint", checkpoint, "--out", out2, "--resize"]) == 0
    with fits.open(out2) as hdul:
        assert hdul[0].header["RESAMPLD"] is True and hdul[0].header["ORIGSHP"] == "64x64"
    assert _run(["model-info", "--checkpoint", checkpoint]) == 0
    assert "encoder" in capsys.readouterr().out


def _assert_refused(argv, out, capsys, match):
    assert _run(argv) == 2
    err = capsys.readouterr().err
    assert match in err, err
    assert not out.exists()
    assert not list(out.parent.glob("*.partial"))


def test_cli_refusals(tmp_path, checkpoint, capsys):
    out = tmp_path / "out.fits"
    cube = tmp_path / "cube.fits"
    fits.PrimaryHDU(np.zeros((2, NPIX, NPIX), np.float32)).writeto(cube)
    nan = tmp_path / "nan.fits"
    d = _image(6).astype(np.float32)
    d[5, 5] = np.nan
    fits.PrimaryHDU(d).writeto(nan)
    wrong = tmp_path / "wrong.fits"
    fits.PrimaryHDU(_image(7, n=48)).writeto(wrong)
    rect = tmp_path / "rect.fits"
    fits.PrimaryHDU(np.random.default_rng(0).normal(size=(NPIX, 40))).writeto(rect)
    text = tmp_path / "text.fits"
    text.write_text("SIMPLE? no, this is not FITS\n")
    good = tmp_path / "good.fits"
    fits.PrimaryHDU(_image(8)).writeto(good)
    notckpt = tmp_path / "bad.pt"
    notckpt.write_bytes(b"\x00\x01garbage")
    other = tmp_path / "other.pt"
    torch.save({"hello": 1}, other)
    ck = ["--checkpoint", checkpoint, "--out", out]

    _assert_refused(["reconstruct", cube, *ck], out, capsys, "expected one 2-D image")
    _assert_refused(["reconstruct", nan, *ck], out, capsys, "NaN/inf")
    _assert_refused(["reconstruct", wrong, *ck], out, capsys, "pass --resize")
    _assert_refused(["reconstruct", rect, *ck, "--resize"], out, capsys, "square")
    _assert_refused(["reconstruct", text, *ck], out, capsys, "not a readable FITS")
    _assert_refused(["reconstruct", tmp_path / "none.fits", *ck], out, capsys, "does not exist")
    _assert_refused(["reconstruct", good, *ck, "--hdu", 3], out, capsys, "--hdu 3")
    _assert_refused(["reconstruct", good, *ck, "--noise-sigma", -1], out, capsys, "--noise-sigma")
    _assert_refused(["reconstruct", good, "--checkpoint", tmp_path / "no.pt", "--out", out], out, capsys,
                    "does not exist")
    _assert_refused(["reconstruct", good, "--checkpoint", notckpt, "--out", out], out, capsys,
                    "not an astrorim checkpoint")
    _assert_refused(["reconstruct", good, "--checkpoint", other, "--out", out], out, capsys,
                    "not an astrorim checkpoint")
    assert _run(["model-info", "--checkpoint", other]) == 2


def test_read_fits_image_picks_first_image_hdu(tmp_path):
    p = tmp_path / "ext.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.ones((4, 4)), name="SCI")]).writeto(p)
    data, _ = read_fits_image(p)
    assert data.shape == (4, 4)
    with pytest.raises(FitsInputError, match="no image data"):
        read_fits_image(p, hdu=0)


def test_registered_in_project_cli(capsys):
    from astrorim.cli import main

    assert main(["model-info"]) == 0
    assert "total" in capsys.readouterr().out


@pytest.mark.parametrize("argv, bad", [(["--simulator", "v7", "--n", "2"], "'v7'"),
                                       (["--simulator", "v1", "--n", "0"], "n must be >= 1, got 0"),
                                       (["--simulator", "v1", "--n", "-3"], "n must be >= 1, got -3")])
def test_cli_simulate_refuses_bad_version_or_count(tmp_path, capsys, argv, bad):
    from astrorim.cli import main

    out = tmp_path / "shard.h5"
    assert main(["simulate", *argv, "--seed", "0", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "astrorim simulate: error" in err and bad in err
    assert not list(tmp_path.iterdir())  # no shard, no partial file


def test_cli_simulate_exit_status_from_shell(tmp_path):
    out = tmp_path / "shard.h5"
    proc = subprocess.run([sys.executable, "-m", "astrorim.cli", "simulate", "--simulator", "v7", "--n", "2",
                           "--seed", "0", "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "'v7'" in proc.stderr
    assert not list(tmp_path.iterdir())
