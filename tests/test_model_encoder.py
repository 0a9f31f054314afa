"""LensParameterEncoder: bounds, initial values, shapes."""

import pytest
import torch

from astrorim.model.encoder import DEFAULT_INITIAL_VALUES, LensParameterEncoder, bounded
from astrorim.params import ENCODER_BOUNDS, PARAMETER_NAMES


def test_outputs_within_bounds_for_random_and_extreme_inputs():
    torch.manual_seed(0)
    enc = LensParameterEncoder()
    inputs = [torch.randn(4, 96, 96), 1e4 * torch.randn(2, 96, 96), torch.zeros(1, 96, 96)]
    for y in inputs:
        with torch.no_grad():
            out = enc(y)
        assert set(out) == set(PARAMETER_NAMES)
        for name, v in out.items():
            b = ENCODER_BOUNDS[name]
            assert v.shape == (y.shape[0],) and v.dtype == torch.float32
            assert torch.all(v >= b.low) and torch.all(v <= b.high), name


def test_bounded_reaches_both_ends_and_is_log_spaced():
    z = torch.tensor([-50.0, 0.0, 50.0])
    b = ENCODER_BOUNDS["b"]
    v = bounded(z, b)
    assert torch.allclose(v[[0, 2]], torch.tensor([b.low, b.high]))
    assert torch.isclose(v[1], torch.tensor((b.low * b.high) ** 0.5))  # geometric mid-point
    phi = bounded(z, ENCODER_BOUNDS["phi"])
    assert torch.allclose(phi, torch.tensor([-torch.pi, 0.0, torch.pi]))


def test_untrained_predictions_start_near_initial_values():
    torch.manual_seed(1)
    enc = LensParameterEncoder()
    with torch.no_grad():
        out = enc(torch.rand(8, 96, 96))
    for name, v in out.items():
        b = ENCODER_BOUNDS[name]
        assert (v - DEFAULT_INITIAL_VALUES[name]).abs().max() < 0.1 * (b.high - b.low), name


def test_other_input_sizes_and_bad_shape():
    enc = LensParameterEncoder()
    with torch.no_grad():
        assert enc(torch.rand(2, 64, 64))["b"].shape == (2,)
    with pytest.raises(ValueError, match=r"\(B, H, W\)"):
        enc(torch.rand(2, 1, 64, 64))


def test_bad_initial_value_rejected():
    with pytest.raises(ValueError, match="inside the bounds"):
        LensParameterEncoder(initial_values={"q": 1.5})
