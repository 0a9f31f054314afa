"""Reproducibility and input validation of astrorim.sim.simulate."""

import numpy as np
import pandas as pd
import pytest

from astrorim.sim import VERSIONS, example_rng, simulate

ARRAYS = ("source", "observed", "noiseless", "lensed_source_noiseless", "noise_sigma", "psf", "psf_measured")


def _assert_batches_equal(a, b):
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    pd.testing.assert_frame_equal(a.truth.reset_index(drop=True), b.truth.reset_index(drop=True))


def test_versions_tuple():
    assert VERSIONS == ("v1", "v2", "v3", "v4", "v5", "v6")


@pytest.mark.parametrize("version", VERSIONS)
def test_shard_split_invariance(version):
    whole = simulate(version, 6, 123, phase="finetune", split="val")
    first = simulate(version, 2, 123, phase="finetune", split="val", start_index=0)
    rest = simulate(version, 4, 123, phase="finetune", split="val", start_index=2)
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(whole, name),
                                      np.concatenate([getattr(first, name), getattr(rest, name)]), err_msg=name)
    pd.testing.assert_frame_equal(whole.truth, pd.concat([first.truth, rest.truth], ignore_index=True))
    assert list(whole.truth["index"]) == list(range(6))


def test_same_key_identical_and_keys_differ():
    a = simulate("v3", 2, 5, phase="test", split="test", start_index=7)
    b = simulate("v3", 2, 5, phase="test", split="test", start_index=7)
    _assert_batches_equal(a, b)
    for other in (dict(seed=6), dict(phase="initial"), dict(split="train"), dict(start_index=8)):
        kw = dict(seed=5, phase="test", split="test", start_index=7) | other
        c = simulate("v3", 1, kw.pop("seed"), **kw)
        assert not np.array_equal(c.source[0], a.source[0]), other
        assert not np.array_equal(c.observed[0], a.observed[0]), other


def test_versions_differ_for_same_key():
    a = simulate("v1", 1, 0)
    b = simulate("v2", 1, 0)
    assert not np.array_equal(a.observed, b.observed)


def test_example_rng_is_the_documented_seed_sequence():
    got = example_rng(11, "v4", "finetune", "val", 3).random(5)
    want = np.random.default_rng(np.random.SeedSequence([11, 4, 1, 1, 3])).random(5)
    np.testing.assert_array_equal(got, want)
    want_test = np.random.default_rng(np.random.SeedSequence([11, 6, 2, 2, 0])).random(5)
    np.testing.assert_array_equal(example_rng(11, "v6", "test", "test", 0).random(5), want_test)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(version="v7", n=1, seed=0), "'v7'"),
        (dict(version="V1", n=1, seed=0), "'V1'"),
        (dict(version="v1", n=0, seed=0), "n must be >= 1, got 0"),
        (dict(version="v1", n=-3, seed=0), "got -3"),
        (dict(version="v1", n=1, seed=0, phase="warmup"), "'warmup'"),
        (dict(version="v1", n=1, seed=0, split="holdout"), "'holdout'"),
        (dict(version="v1", n=1, seed=0, start_index=-1), "start_index must be >= 0, got -1"),
        (dict(version="v1", n=1, seed=-2), "seed must be >= 0, got -2"),
        (dict(version="v1", n=1.5, seed=0), "n must be an integer"),
        (dict(version="v1", n=1, seed=0, npix=95), "npix must be even"),
    ],
)
def test_bad_inputs_raise_value_error_naming_the_value(kwargs, fragment):
    version = kwargs.pop("version")
    n = kwargs.pop("n")
    seed = kwargs.pop("seed")
    with pytest.raises(ValueError, match=None) as info:
        simulate(version, n, seed, **kwargs)
    assert fragment in str(info.value)


def test_example_rng_rejects_bad_keys():
    with pytest.raises(ValueError, match="'v0'"):
        example_rng(0, "v0", "initial", "train", 0)
    with pytest.raises(ValueError, match="index must be >= 0"):
        example_rng(0, "v1", "initial", "train", -1)
