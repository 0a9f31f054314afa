"""Shard files: round trip, validation, and detection of truncated or corrupted files."""

from dataclasses import dataclass

import h5py
import numpy as np
import pandas as pd
import pytest

from astrorim.io.shards import ShardError, read_shard, read_shard_attrs, verify_shard, write_shard
from astrorim.manifest import build_manifest


@dataclass
class FakeBatch:
    source: np.ndarray
    observed: np.ndarray
    psf: np.ndarray
    noise_sigma: np.ndarray
    truth: pd.DataFrame
    noiseless: np.ndarray | None = None


def make_batch(n=3, npix=16, seed=0):
    rng = np.random.default_rng(seed)
    truth = pd.DataFrame({"index": np.arange(n), "theta_E": rng.uniform(0.9, 1.5, n),
                          "psf_family": ["gaussian"] * n, "has_nfw": rng.random(n) < 0.5})
    return FakeBatch(source=rng.random((n, npix, npix), dtype=np.float32),
                     observed=rng.random((n, npix, npix), dtype=np.float32),
                     psf=rng.random((n, 5, 5), dtype=np.float32),
                     noise_sigma=rng.random(n, dtype=np.float32), truth=truth,
                     noiseless=rng.random((n, npix, npix), dtype=np.float32))


META = {"version": "v1", "phase": "initial", "split": "train", "seed": 7, "start_index": 10}


def test_round_trip(tmp_path):
    batch = make_batch()
    path = write_shard(tmp_path / "s.h5", batch, META, store_diagnostics=True)
    shard = read_shard(path, diagnostics=True)
    np.testing.assert_array_equal(shard.arrays["observed"], batch.observed)
    np.testing.assert_array_equal(shard.arrays["source"], batch.source)
    np.testing.assert_array_equal(shard.diagnostics["noiseless"], batch.noiseless)
    pd.testing.assert_frame_equal(shard.truth[batch.truth.columns], batch.truth, check_dtype=False)
    assert shard.index_range == (10, 13)
    assert read_shard_attrs(path)["version"] == "v1"
    assert [p.name for p in tmp_path.iterdir()] == ["s.h5"], "no temporary file may be left behind"


def test_failed_write_leaves_nothing(tmp_path):
    batch = make_batch()
    batch.truth = batch.truth.iloc[:2]  # inconsistent with 3 images
    with pytest.raises(ValueError, match="truth table"):
        write_shard(tmp_path / "s.h5", batch, META)
    assert list(tmp_path.iterdir()) == []


def test_truncated_shard_is_named(tmp_path):
    path = write_shard(tmp_path / "s.h5", make_batch(npix=32), META)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ShardError, match="s.h5"):
        read_shard(path)


def test_corrupted_chunk_is_detected(tmp_path):
    batch = make_batch(npix=32)
    path = write_shard(tmp_path / "s.h5", batch, META)
    with h5py.File(path, "r") as f:
        offset = f["observed"].id.get_chunk_info(1).byte_offset
    raw = bytearray(path.read_bytes())
    raw[offset + 100] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(ShardError, match=r"s\.h5.*corrupted"):
        read_shard(path)


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(ShardError, match="does not exist"):
        read_shard(tmp_path / "nope.h5")
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(ShardError, match="not an astrorim shard"):
        read_shard(foreign)


def test_shards_written_before_per_subhalo_columns_still_read(tmp_path):
    """Truth tables gained subhalo_{k}_* and second_e1/e2 columns; older shards lack them and still read."""
    old = make_batch()
    old.truth["n_subhalos"] = [0, 2, 1]
    old.truth["subhalo_theta_E_sum"] = [0.0, 0.02, 0.01]
    new = make_batch(seed=1)
    new.truth["n_subhalos"] = [1, 0, 0]
    new.truth["subhalo_theta_E_sum"] = [0.01, 0.0, 0.0]
    new.truth["subhalo_0_theta_E"] = [0.01, np.nan, np.nan]
    new.truth["subhalo_0_center_x"] = [0.5, np.nan, np.nan]
    new.truth["subhalo_0_center_y"] = [-0.5, np.nan, np.nan]
    a = read_shard(write_shard(tmp_path / "old.h5", old, META)).truth
    b = read_shard(write_shard(tmp_path / "new.h5", new, META)).truth
    assert "subhalo_0_theta_E" not in a.columns and list(a.n_subhalos) == [0, 2, 1]
    np.testing.assert_array_equal(b.subhalo_0_center_x, new.truth.subhalo_0_center_x)
    both = pd.concat([a, b], ignore_index=True)
    assert both.subhalo_0_theta_E.isna().sum() == 5


@pytest.mark.parametrize("dataset, chunk", [("observed", 2), ("source", 0), ("diagnostics/noiseless", 1)])
def test_manifest_reads_every_example_and_names_the_bad_shard(tmp_path, dataset, chunk):
    """The attributes of a shard with one corrupted chunk read fine; the manifest reads every chunk."""
    good = write_shard(tmp_path / "good.h5", make_batch(npix=32), META, store_diagnostics=True)
    bad = write_shard(tmp_path / "bad.h5", make_batch(npix=32, seed=1), {**META, "start_index": 13},
                      store_diagnostics=True)
    with h5py.File(bad, "r") as f:
        offset = f[dataset].id.get_chunk_info(chunk).byte_offset
    raw = bytearray(bad.read_bytes())
    raw[offset + 100] ^= 0xFF
    bad.write_bytes(bytes(raw))
    assert read_shard_attrs(bad)["n"] == 3  # the cheap check alone passes it
    assert len(build_manifest([good, bad], verify=False)) == 2
    with pytest.raises(ShardError, match=rf"bad\.h5: corrupted shard: dataset '{dataset}' rows 0-2"):
        build_manifest([good, bad])
    assert verify_shard(good)["n"] == 3
    assert list(build_manifest([good])["n"]) == [3]
