"""ComponentEncoder: derived nine parameters, component round trip, sigma heads, checkpoint format 1 -> 2."""

import math

import numpy as np
import pytest
import torch

from astrorim.model import AstroRIM, AstroRIMConfig
from astrorim.model.checkpoint import (CHECKPOINT_FORMAT_VERSION, CheckpointError, load_model, read_checkpoint,
                                       save_model_checkpoint)
from astrorim.model.encoder import (COMPONENT_NAMES, ComponentEncoder, LensParameterEncoder,
                                    components_from_nine, nine_from_components)
from astrorim.params import PARAMETER_NAMES, ellipticity_from_q_phi, shear_components

SMALL = dict(n_iter=2, encoder_channels=(8, 8, 8, 8), encoder_hidden=(16, 8), rim_channels=(8, 8), rim_hidden=8,
             rim_fine_hidden=4)


def _truth(n=64, seed=0):
    rng = np.random.default_rng(seed)
    t = np.column_stack([rng.uniform(0.05, 1.5, n), rng.uniform(0.3, 0.99, n), rng.uniform(-1.5, 1.5, n),
                         rng.uniform(-0.2, 0.2, n), rng.uniform(-0.2, 0.2, n), rng.uniform(0.001, 0.15, n),
                         rng.uniform(-1.5, 1.5, n), np.where(rng.random(n) < 0.5, 0.0, rng.uniform(0.01, 0.5, n)),
                         rng.uniform(0.5, 10, n)])
    t[t[:, 7] == 0, 8] = np.nan
    return torch.tensor(t, dtype=torch.float32)


def test_components_match_lenstronomy_conventions_and_round_trip():
    truth = _truth()
    comp, masks = components_from_nine(truth)
    e1, e2 = ellipticity_from_q_phi(truth[:, 1].numpy(), truth[:, 2].numpy())
    g1, g2 = shear_components(truth[:, 5].numpy(), truth[:, 6].numpy())
    np.testing.assert_allclose(comp["e1"], e1, atol=1e-6)
    np.testing.assert_allclose(comp["e2"], e2, atol=1e-6)
    np.testing.assert_allclose(comp["gamma1"], g1, atol=1e-6)
    np.testing.assert_allclose(comp["gamma2"], g2, atol=1e-6)
    halo = truth[:, 7] > 0
    assert torch.equal(masks["log_r_s"], halo) and masks["log_b"].all()
    nine = nine_from_components(comp)
    for j, name in enumerate(PARAMETER_NAMES):
        want, got = truth[:, j], nine[name]
        if name in ("phi", "gamma_phi"):  # pi-periodic axial angles
            d = torch.remainder(got - want + math.pi / 2, math.pi) - math.pi / 2
            assert d.abs().max() < 1e-4, name
        elif name == "r_s":
            assert torch.allclose(got[halo], want[halo], rtol=1e-5)
        else:
            assert torch.allclose(got, want, rtol=1e-4, atol=1e-6), name


def test_derived_parameters_stay_in_physical_ranges():
    comp = {k: 10 * torch.randn(100) for k in COMPONENT_NAMES}
    nine = nine_from_components(comp)
    assert (nine["q"] >= 0.2 - 1e-6).all() and (nine["q"] <= 1).all()
    assert (nine["gamma"] <= 0.5 + 1e-6).all() and (nine["kappa_s"] >= 0).all()
    assert (nine["b"] > 0).all() and torch.isfinite(torch.stack(list(nine.values()))).all()


def test_model_output_carries_components_and_sigmas():
    torch.manual_seed(0)
    model = AstroRIM(AstroRIMConfig(**SMALL))
    assert isinstance(model.encoder, ComponentEncoder)
    out = model(torch.rand(3, 96, 96))
    assert set(out["params"]) == set(PARAMETER_NAMES)
    assert set(out["components"]) == set(COMPONENT_NAMES) == set(out["components_sigma"])
    for name in COMPONENT_NAMES:
        assert out["components"][name].shape == (3,) and (out["components_sigma"][name] > 0).all()
    # the nine parameters are those derived from the components
    derived = nine_from_components(out["components"])
    for name in PARAMETER_NAMES:
        assert torch.allclose(derived[name], out["params"][name])


def test_periodic_model_has_no_components():
    model = AstroRIM(AstroRIMConfig(**SMALL, encoder_heads="periodic"))
    assert isinstance(model.encoder, LensParameterEncoder)
    assert "components" not in model(torch.rand(1, 96, 96))
    with pytest.raises(ValueError, match="encoder_heads"):
        AstroRIMConfig(encoder_heads="angles")


def test_format_1_checkpoint_loads_as_the_periodic_encoder(tmp_path):
    torch.manual_seed(1)
    model = AstroRIM(AstroRIMConfig(**SMALL, encoder_heads="periodic"))
    path = save_model_checkpoint(tmp_path / "v2.pt", model, meta={})
    ck = torch.load(path, weights_only=True)
    # a format_version 1 file: no encoder_heads key, version 1
    ck["format_version"] = 1
    del ck["model_config"]["encoder_heads"]
    torch.save(ck, tmp_path / "v1.pt")
    loaded, meta = load_model(tmp_path / "v1.pt")
    assert loaded.config.encoder_heads == "periodic" and meta["converted_from_format_version"] == 1
    y = torch.rand(2, 96, 96)
    model.eval()
    with torch.no_grad():
        a, b = model(y)["source"], loaded(y)["source"]
    assert torch.equal(a, b)
    ck["model_config"]["encoder_heads"] = "components"
    torch.save(ck, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="format_version 1"):
        read_checkpoint(tmp_path / "bad.pt")
    ck["format_version"] = 7
    torch.save(ck, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="format_version 7"):
        read_checkpoint(tmp_path / "future.pt")


def test_new_checkpoints_are_format_2_and_round_trip(tmp_path):
    torch.manual_seed(2)
    model = AstroRIM(AstroRIMConfig(**SMALL))
    path = save_model_checkpoint(tmp_path / "m.pt", model, meta={})
    ck = read_checkpoint(path)
    assert ck["format_version"] == CHECKPOINT_FORMAT_VERSION == 2
    assert ck["model_config"]["encoder_heads"] == "components"
    loaded, _ = load_model(path)
    y = torch.rand(2, 96, 96)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(y)["components"]["e1"], loaded(y)["components"]["e1"])


@pytest.mark.parametrize("name", ["cpu-medium", "cpu-small"])
def test_committed_format_1_models_still_load(name):
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "models" / name / "model.pt"
    if not path.exists():
        pytest.skip(f"{path} not present")
    model, meta = load_model(path)
    assert model.config.encoder_heads == "periodic" and meta["converted_from_format_version"] == 1
