"""Training data: shard Dataset, lazy per-process HDF5 handles, resumable sampler, loaders."""

import os
import pickle

import numpy as np
import pandas as pd
import pytest
import torch

from astrorim.io.shards import ShardError, read_shard
from astrorim.train.augment import Augmentation, apply_to_image, apply_to_params
from astrorim.train.data import (TRUTH_COLUMNS, EpochSampler, ShardDataset, make_loader,
                                 shards_from_manifest)
from astrorim.train.testing import make_tiny_dataset


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return make_tiny_dataset(root, counts={"initial": {"train": 16, "val": 8}}, shard_size=4)


def test_dataset_indexes_all_shards_in_manifest_order(tiny):
    paths = shards_from_manifest(tiny["initial"], "train", phase="initial")
    assert len(paths) == 4
    ds = ShardDataset(paths)
    assert len(ds) == 16 and ds.npix == 32
    for index in (0, 5, 15):
        shard, row = ds.locate(index)
        ref = read_shard(paths[shard])
        item = ds[index]
        assert np.array_equal(item["observed"], ref.arrays["observed"][row])
        assert np.array_equal(item["source"], ref.arrays["source"][row])
        assert item["noise_sigma"] == ref.arrays["noise_sigma"][row]
        assert np.array_equal(item["params"], ref.truth[list(TRUTH_COLUMNS)].to_numpy(np.float32)[row],
                              equal_nan=True)
    with pytest.raises(IndexError):
        ds[16]
    streams = ds.streams("train")
    assert [s["start_index"] for s in streams] == [0, 4, 0, 4]
    assert {s["version"] for s in streams} == {"v1", "v2"} and all(s["seed"] == 1001 for s in streams)


def test_augmented_item_transforms_source_observation_and_params_together(tiny):
    ds = ShardDataset(shards_from_manifest(tiny["initial"], "train"), with_psf=True)
    plain = ds[3]
    for code in (1, 6, 13):
        aug = Augmentation.decode(code)
        item = ds[(3, code)]
        assert np.array_equal(item["observed"], apply_to_image(plain["observed"], aug))
        assert np.array_equal(item["source"], apply_to_image(plain["source"], aug))
        assert np.array_equal(item["psf"], apply_to_image(plain["psf"], aug))
        assert np.allclose(item["params"], apply_to_params(plain["params"], aug), equal_nan=True)
        assert item["augmentation"] == code


def test_handles_are_per_process_and_not_pickled(tiny):
    ds = ShardDataset(shards_from_manifest(tiny["initial"], "val"))
    ds[0]
    assert ds._files and ds._pid == os.getpid()
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._files == {}
    ds._pid = -1  # as seen in a forked worker: inherited handles must not be reused
    old = dict(ds._files)
    ds[1]
    assert all(ds._files[k] is not old.get(k) for k in ds._files)


def test_missing_truth_columns_and_bad_manifest_are_named(tiny, tmp_path):
    manifest = pd.read_csv(tiny["initial"])
    bad = tmp_path / "manifest.csv"
    manifest.assign(path=manifest["path"].str.replace("shard-00000", "shard-99999")).to_csv(bad, index=False)
    with pytest.raises(FileNotFoundError, match="shard-99999"):
        shards_from_manifest(bad, "train")
    with pytest.raises(ValueError, match="no shards of split 'test'"):
        shards_from_manifest(tiny["initial"], "test")
    with pytest.raises(ValueError, match="expected phase 'finetune'"):
        shards_from_manifest(tiny["initial"], "train", phase="finetune")
    with pytest.raises(ShardError, match="does not exist"):
        ShardDataset([tmp_path / "nope.h5"])


def test_sampler_is_deterministic_and_resumable():
    s = EpochSampler(50, seed=3, stream=0, flip_prob=0.5, rot90_prob=0.5)
    s.set_epoch(2)
    full = list(s)
    assert sorted(i for i, _ in full) == list(range(50))
    s.set_epoch(2, start=20)
    assert list(s) == full[20:] and len(s) == 30
    s.set_epoch(3)
    assert list(s) != full
    other_phase = EpochSampler(50, seed=3, stream=1, flip_prob=0.5, rot90_prob=0.5)
    other_phase.set_epoch(2)
    assert list(other_phase) != full
    assert len({c for _, c in full}) > 4  # augmentations vary


def test_loader_batches_do_not_depend_on_workers(tiny):
    ds = ShardDataset(shards_from_manifest(tiny["initial"], "train"))
    batches = []
    for workers in (0, 2):
        sampler = EpochSampler(len(ds), seed=1, flip_prob=0.5, rot90_prob=0.5)
        sampler.set_epoch(1, start=4)
        loader = make_loader(ds, 4, sampler=sampler, num_workers=workers, drop_last=True)
        batches.append([b for b in loader])
    assert len(batches[0]) == 3
    for a, b in zip(*batches):
        assert torch.equal(a["observed"], b["observed"]) and torch.equal(a["index"], b["index"])
        assert torch.equal(a["augmentation"], b["augmentation"])
