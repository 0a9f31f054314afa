"""run_model: the checkpoint is loaded before the clock starts; runtime_s is the reconstruction alone."""

import time

import numpy as np
import pytest
import torch

from astrorim.model import AstroRIM
from astrorim.model.checkpoint import save_model_checkpoint
from astrorim.params import PARAMETER_NAMES
from astrorim.real.ingest import ModelInput
from astrorim.real.model_step import run_model


def _model_input(n=96):
    y, x = np.mgrid[:n, :n] - (n - 1) / 2
    image = np.exp(-0.5 * ((np.hypot(x, y) - 18) / 2.0) ** 2).astype(np.float32)
    return ModelInput(image=image, noise=np.full((n, n), 0.01, np.float32), mask=np.ones((n, n), bool), psf=None,
                      pixel_scale_arcsec=0.04, native_pixel_scale_arcsec=(0.04, 0.04), centre_rc_native=(48.0, 48.0),
                      lens_centre_arcsec=(0.0, 0.0), flux_scale=1.0, padded_fraction=0.0, illustrative_only=False,
                      source_path="synthetic")


def test_runtime_excludes_checkpoint_loading(tmp_path, monkeypatch):
    import astrorim.model.checkpoint as ckpt_module

    torch.manual_seed(0)
    path = save_model_checkpoint(tmp_path / "m.pt", AstroRIM(dict(npix=96, n_iter=1)).eval(), meta={"epoch": 1})
    original = ckpt_module.load_model
    slow_load_s = 0.5

    def slow_load(*args, **kwargs):  # loading made visibly slow: it must not be counted
        time.sleep(slow_load_s)
        return original(*args, **kwargs)

    monkeypatch.setattr(ckpt_module, "load_model", slow_load)
    t0 = time.perf_counter()
    out = run_model(_model_input(), path, device="cpu")
    total = time.perf_counter() - t0
    assert set(PARAMETER_NAMES) <= set(out.params)
    assert out.device == "cpu"
    assert 0 < out.runtime_s < total - slow_load_s


def test_missing_checkpoint_named():
    with pytest.raises(FileNotFoundError, match=r"nowhere\.pt: checkpoint not found"):
        run_model(_model_input(), "nowhere.pt")
