"""The evaluation refuses checkpoints whose recorded data streams overlap the test shards."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from astrorim.evaluate.leakage import (LeakageError, Stream, check_no_leakage, checkpoint_streams, shard_streams,
                                       stream_from_record)
from astrorim.io.shards import write_shard


def fake_shard(path, *, seed=3003, version="v1", phase="test", split="test", start_index=0, n=4, npix=16):
    batch = SimpleNamespace(observed=np.zeros((n, npix, npix)), source=np.zeros((n, npix, npix)),
                            psf=np.ones((n, 3, 3)) / 9, noise_sigma=np.ones(n), truth=pd.DataFrame({"i": range(n)}))
    meta = {"seed": seed, "version": version, "phase": phase, "split": split, "start_index": start_index}
    return write_shard(path, batch, meta)


@pytest.fixture
def test_shards(tmp_path):
    return [fake_shard(tmp_path / "v1.h5", version="v1", start_index=0, n=20),
            fake_shard(tmp_path / "v2.h5", version="v2", start_index=20, n=20)]


def record(**kw):
    base = {"seed": 1001, "version": "v1", "phase": "initial", "split": "train", "start_index": 0, "n": 80}
    base.update(kw)
    return base


def test_disjoint_streams_pass(test_shards):
    meta = {"streams": [record(),  # other seed and phase
                        record(seed=3003, phase="finetune", split="val"),  # test seed, other phase/split key
                        record(seed=3003, phase="test", split="test", version="v2", start_index=0, n=20),  # ends at 20
                        record(seed=3003, phase="test", split="test", version="v1", start_index=20, n=5)]}
    streams = check_no_leakage(meta, test_shards, source="ckpt.pt")
    assert len(streams) == 4


def test_overlap_is_refused_and_explained(test_shards):
    meta = {"data": {"streams": [record(), record(seed=3003, phase="test", split="test", version="v2",
                                                     start_index=35, n=10)]}}
    with pytest.raises(LeakageError) as err:
        check_no_leakage(meta, test_shards, source="best.pt")
    msg = str(err.value)
    assert "best.pt" in msg and "refusing" in msg
    assert "seed=3003 version=v2 phase=test split=test indices [35, 45)" in msg
    assert "indices [20, 40)" in msg and "v2.h5" in msg


def test_meta_without_streams_is_unverifiable(test_shards):
    with pytest.raises(LeakageError, match="cannot be verified"):
        check_no_leakage({"epoch": 30, "seeds": [1001, 2002]}, test_shards, source="x.pt")


def test_malformed_records_name_the_field():
    with pytest.raises(LeakageError, match=r"missing fields \['split'\]"):
        stream_from_record({"seed": 1, "version": "v1", "phase": "initial", "start_index": 0, "n": 3},
                           "meta.streams[0]")
    with pytest.raises(LeakageError, match="no index range"):
        stream_from_record({"seed": 1, "version": "v1", "phase": "initial", "split": "train"})


def test_grouped_stream_records_and_alternative_ranges():
    meta = {"train_streams": {"initial": [record()], "finetune": [record(phase="finetune", seed=2002)]},
            "val_streams": [{"seed": 2002, "version": "v3", "phase": "finetune", "split": "val",
                             "start": 5, "stop": 9}]}
    streams = checkpoint_streams(meta)
    assert {s.key for s in streams} == {(1001, "v1", "initial", "train"), (2002, "v1", "finetune", "train"),
                                        (2002, "v3", "finetune", "val")}
    assert Stream(2002, "v3", "finetune", "val", 8, 12).overlaps(streams[-1])
    assert not Stream(2002, "v3", "finetune", "val", 9, 12).overlaps(streams[-1])


def test_shard_streams_read_the_attributes(test_shards):
    s = shard_streams(test_shards)
    assert [(x.version, x.start, x.stop) for x in s] == [("v1", 0, 20), ("v2", 20, 40)]
