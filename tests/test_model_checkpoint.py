"""Checkpoints: round trip, EMA preference, refusals."""

import numpy as np
import pytest
import torch

from astrorim.model import AstroRIM
from astrorim.model.checkpoint import (CheckpointError, load_model, read_checkpoint,
                                       save_model_checkpoint)

SMALL = dict(npix=32, n_iter=2)


def _outputs(model, y):
    with torch.no_grad():
        out = model(y)
    return out["source"], torch.stack([out["params"][k] for k in sorted(out["params"])])


def test_round_trip_identical_outputs(tmp_path):
    torch.manual_seed(0)
    model = AstroRIM(SMALL)
    with torch.no_grad():
        model.forward_operator.psf.residual.normal_(0, 1e-3)
    path = save_model_checkpoint(tmp_path / "m.pt", model, meta={"epoch": np.int64(3), "note": "x"},
                                 extra={"optimizer_state": {"step": 7}})
    loaded, meta = load_model(path)
    assert meta == {"epoch": 3, "note": "x"}
    assert loaded.config == model.config
    y = torch.rand(2, 32, 32)
    a, pa = _outputs(model, y)
    b, pb = _outputs(loaded, y)
    assert torch.equal(a, b) and torch.equal(pa, pb)
    assert read_checkpoint(path)["optimizer_state"] == {"step": 7}
    assert not list(tmp_path.glob("*.partial"))


def test_ema_weights_preferred(tmp_path):
    torch.manual_seed(1)
    model = AstroRIM(SMALL)
    ema_model = AstroRIM(SMALL)  # different random weights play the EMA shadow
    path = save_model_checkpoint(tmp_path / "m.pt", model, ema_state=ema_model.state_dict(), meta={})
    y = torch.rand(1, 32, 32)
    with_ema, _ = load_model(path)
    without, _ = load_model(path, prefer_ema=False)
    assert torch.equal(_outputs(with_ema, y)[0], _outputs(ema_model, y)[0])
    assert torch.equal(_outputs(without, y)[0], _outputs(model, y)[0])


def test_refusals(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable torch checkpoint"):
        load_model(junk)
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(CheckpointError, match="not an AstroRIM checkpoint"):
        load_model(other)

    model = AstroRIM(SMALL)
    good = save_model_checkpoint(tmp_path / "good.pt", model, meta={})
    ckpt = torch.load(good, weights_only=True)
    ckpt["format_version"] = 99
    torch.save(ckpt, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="format_version 99"):
        load_model(tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="32 px"):
        load_model(good, expected_npix=96)

    ckpt = torch.load(good, weights_only=True)
    ckpt["model_config"]["rim_hidden"] = 48  # weights no longer fit the config
    torch.save(ckpt, tmp_path / "mismatch.pt")
    with pytest.raises(CheckpointError, match="weights do not fit"):
        load_model(tmp_path / "mismatch.pt")
    ckpt = torch.load(good, weights_only=True)
    ckpt["model_config"]["rim_channels"] = [16, 32, 64]  # an older 3-width layout
    torch.save(ckpt, tmp_path / "oldcfg.pt")
    with pytest.raises(CheckpointError, match="model_config"):
        load_model(tmp_path / "oldcfg.pt")
    ckpt = torch.load(good, weights_only=True)
    ckpt["model_config"]["unknown_knob"] = 1
    torch.save(ckpt, tmp_path / "badcfg.pt")
    with pytest.raises(CheckpointError, match="incompatible model_config"):
        load_model(tmp_path / "badcfg.pt")


def test_meta_must_be_plain(tmp_path):
    with pytest.raises(TypeError, match=r"meta\['bad'\]"):
        save_model_checkpoint(tmp_path / "m.pt", AstroRIM(SMALL), meta={"bad": object()})
    assert not list(tmp_path.iterdir())
