"""VAE training data: HDF cutouts, simulator-source crops, splits, the data file."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from astrorim.baseline.data import (build_dataset, crop_to_light, read_dataset, resample_to_64, split_indices,
                                    write_dataset)
from astrorim.baseline.hdf import HDFCutoutConfig, extract_cutouts
from astrorim.baseline.mocks import denoise_source, light_radius, select_source, substructure_score
from astrorim.io.shards import write_shard


def gaussian(shape, r0, c0, s, amp=1.0):
    rows, cols = np.indices(shape)
    return amp * np.exp(-0.5 * ((rows - r0) ** 2 + (cols - c0) ** 2) / s ** 2)


def test_cutouts_of_a_synthetic_frame_are_centred_and_normalised():
    rng = np.random.default_rng(0)
    frame = 0.05 + 0.01 * rng.standard_normal((300, 300))
    for r, c in ((80, 90), (200, 150), (150, 240)):
        frame += gaussian(frame.shape, r, c, 4.0, 0.8)
    cut = extract_cutouts(frame, HDFCutoutConfig(min_area_pix=20))
    assert cut.images.shape == (3, 64, 64)
    np.testing.assert_allclose(cut.images.max(axis=(1, 2)), 1.0)
    peaks = [np.unravel_index(np.argmax(im), im.shape) for im in cut.images]
    for pr, pc in peaks:
        assert abs(pr - 31.5) <= 3 and abs(pc - 31.5) <= 3
    assert sorted(map(tuple, cut.centres)) == [(80, 90), (150, 240), (200, 150)]


def test_hubble_deep_field_gives_hundreds_of_galaxies():
    cut = extract_cutouts()
    assert len(cut.images) > 150
    assert cut.images.shape[1:] == (64, 64)
    np.testing.assert_allclose(cut.images.max(axis=(1, 2)), 1.0, rtol=1e-6)
    assert 0.005 < np.median(cut.noise) < 0.1  # JPEG frame noise in peak units


def test_crop_to_light_centres_an_offset_galaxy():
    img = gaussian((96, 96), 70, 20, 3.0)
    crop = crop_to_light(img, crop_factor=8.0, min_crop_pix=16)
    assert crop.shape[0] == crop.shape[1] >= 16
    r, c = np.unravel_index(np.argmax(crop), crop.shape)
    assert abs(r - crop.shape[0] / 2) <= 1 and abs(c - crop.shape[1] / 2) <= 1
    out, keep = resample_to_64([crop, np.zeros((20, 20))])
    assert out.shape == (1, 64, 64) and keep.tolist() == [True, False]


def test_split_indices_partition_deterministically():
    parts = split_indices(50, [0.8, 0.1, 0.1], seed=4)
    assert sorted(np.concatenate(parts).tolist()) == list(range(50))
    assert [len(p) for p in parts] == [40, 5, 5]
    again = split_indices(50, [0.8, 0.1, 0.1], seed=4)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))


def fake_shard(path, n, split, phase="initial", version="v1"):
    rng = np.random.default_rng(1)
    src = np.stack([gaussian((32, 32), rng.uniform(10, 22), rng.uniform(10, 22), 2.0, 100.0) for _ in range(n)])
    batch = SimpleNamespace(observed=src, source=src, psf=np.ones((n, 3, 3)) / 9, noise_sigma=np.ones(n),
                            truth=pd.DataFrame({"theta_E": np.ones(n)}))
    write_shard(path, batch, {"version": version, "phase": phase, "split": split, "seed": 1, "start_index": 5})
    return path


def test_dataset_from_sim_shards_roundtrip(tmp_path):
    train = [fake_shard(tmp_path / f"train_{v}.h5", 4, "train", version=v) for v in ("v2", "v1")]
    val = fake_shard(tmp_path / "val.h5", 3, "val")
    ds = build_dataset({"train": train, "val": [val], "test": []}, use_hdf=False, seed=0, max_sim={"train": 3})
    assert ds.counts() == {"train": 3, "val": 3, "test": 0}
    # the cap is shared between versions: 2 from v1, 1 from v2
    assert list(ds.origin["train"]) == ["sim/initial/v1/train/000005", "sim/initial/v1/train/000006",
                                        "sim/initial/v2/train/000005"]
    np.testing.assert_allclose(ds.images["train"].max(axis=(1, 2)), 1.0)
    path = write_dataset(tmp_path / "d.h5", ds, {"seed": 0})
    back = read_dataset(path)
    assert back.counts() == ds.counts()
    np.testing.assert_array_equal(back.images["val"], ds.images["val"])
    assert list(back.origin["val"]) == list(ds.origin["val"])
    with pytest.raises(ValueError, match="at least 2"):
        build_dataset({"train": [], "val": []}, use_hdf=False, seed=0)


def test_source_selection_scores():
    smooth = gaussian((64, 64), 32, 32, 6.0)
    clumpy = smooth + sum(gaussian((64, 64), 32 + dr, 32 + dc, 1.0, 0.8) for dr, dc in ((5, 3), (-6, 2), (2, -7)))
    clumpy /= clumpy.max()
    assert substructure_score(clumpy) > substructure_score(smooth)
    imgs = np.stack([smooth, clumpy]).astype(np.float32)
    origins = np.array(["sim/a", "sim/b"], dtype=object)
    assert select_source(imgs, origins, select="smooth", radius_range=(0.0, 1.0)) == 0
    assert select_source(imgs, origins, select="clumpy", radius_range=(0.0, 1.0)) == 1
    assert select_source(imgs, origins, origin="sim/b") == 1
    assert 0.05 < light_radius(smooth) < 0.2
    assert denoise_source(clumpy, denoise=False).max() == pytest.approx(1.0)
