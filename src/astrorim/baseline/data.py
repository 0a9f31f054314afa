"""The VAE training set: simulator sources and Hubble-Deep-Field cutouts, 64 x 64, peak-normalised.

Two inputs (paper 003 used COSMOS/GREAT3 galaxies, which are not available offline):

* ``sim``: the unlensed ``source`` arrays of the project's simulation shards (noise-free, npix x npix).
  They span the whole lens field, so a galaxy covers only a few pixels of them; each is first cropped
  to a square of side ``crop_factor`` x its flux-weighted rms radius around its light centroid
  (:func:`crop_to_light`, at least ``min_crop_pix``), as the HDF cutouts are, and then resampled to
  64 x 64 with anti-aliasing (``skimage.transform.resize``).  Shards of phase ``initial``
  give train/val (their own split), shards of phase ``test`` give the VAE test set.
* ``hdf``: galaxy cutouts of ``skimage.data.hubble_deep_field()`` (:mod:`astrorim.baseline.hdf`; JPEG,
  non-linear photometry), split at random (seeded) into train/val/test fractions.

Every image is divided by its maximum (paper §2.2).  The result is one HDF5 file with groups
``train``, ``val``, ``test``, each holding ``images`` (N, 64, 64) float32 and ``origin`` (N,) strings
such as ``sim/initial/v3/train/000012`` or ``hdf/000041``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import h5py
import numpy as np
from skimage import transform

from astrorim.baseline.hdf import HDFCutoutConfig, extract_cutouts
from astrorim.io.atomic import atomic_path

SPLITS = ("train", "val", "test")
IMAGE_SIZE = 64


@dataclass
class VAEDataset:
    images: dict[str, np.ndarray]
    origin: dict[str, np.ndarray]

    def counts(self) -> dict[str, int]:
        return {s: int(len(self.images[s])) for s in SPLITS}


def resample_to_64(images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """N 2-D images (any sizes) -> (N', 64, 64): anti-aliased linear resampling, each divided by its
    maximum.  Images whose maximum is not positive and finite are dropped; the boolean ``keep`` mask
    (N,) is returned with the images."""
    out, keep = [], np.zeros(len(images), dtype=bool)
    for i, img in enumerate(images):
        img = np.asarray(img, dtype=np.float64)
        if img.ndim != 2:
            raise ValueError(f"expected 2-D images, got shape {img.shape}")
        if img.shape != (IMAGE_SIZE, IMAGE_SIZE):
            img = transform.resize(img, (IMAGE_SIZE, IMAGE_SIZE), order=1, anti_aliasing=True, preserve_range=True)
        peak = float(np.max(img))
        if np.isfinite(peak) and peak > 0 and np.all(np.isfinite(img)):
            out.append((img / peak).astype(np.float32))
            keep[i] = True
    stacked = np.stack(out) if out else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.float32)
    return stacked, keep


def crop_to_light(image: np.ndarray, crop_factor: float = 8.0, min_crop_pix: int = 16) -> np.ndarray:
    """Square crop of side max(min_crop_pix, crop_factor * rms radius) centred on the light centroid,
    zero-padded where it leaves the frame."""
    img = np.asarray(image, dtype=np.float64)
    w = np.clip(img, 0, None)
    total = w.sum()
    if not total > 0:
        return img
    rows, cols = np.indices(img.shape)
    rc, cc = (w * rows).sum() / total, (w * cols).sum() / total
    rms = np.sqrt((w * ((rows - rc) ** 2 + (cols - cc) ** 2)).sum() / total)
    side = int(max(min_crop_pix, np.ceil(crop_factor * rms)))
    top, left = int(round(rc)) - side // 2, int(round(cc)) - side // 2
    out = np.zeros((side, side))
    r0, c0 = max(top, 0), max(left, 0)
    r1, c1 = min(top + side, img.shape[0]), min(left + side, img.shape[1])
    out[r0 - top:r1 - top, c0 - left:c1 - left] = img[r0:r1, c0:c1]
    return out


def sim_sources(shard_paths: Iterable[str | os.PathLike], max_images: int | None = None,
                crop_factor: float = 8.0, min_crop_pix: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Cropped, resampled sources of the given shards (in order, at most ``max_images``) and origins."""
    from astrorim.io.shards import read_shard

    images, origins = [], []
    total = 0
    for path in shard_paths:
        if max_images is not None and total >= max_images:
            break
        shard = read_shard(path, fields=("source",))
        a = shard.attrs
        src = shard.arrays["source"]
        if max_images is not None:
            src = src[: max_images - total]
        resampled, keep = resample_to_64([crop_to_light(im, crop_factor, min_crop_pix) for im in src])
        start = int(a["start_index"])
        idx = np.flatnonzero(keep) + start
        origins += [f"sim/{a['phase']}/{a['version']}/{a['split']}/{i:06d}" for i in idx]
        images.append(resampled)
        total += len(resampled)
    if not images:
        return np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.float32), np.zeros(0, dtype=object)
    return np.concatenate(images), np.asarray(origins, dtype=object)


def _group_by_version(paths: Iterable[str | os.PathLike]) -> dict[str, list]:
    from astrorim.io.shards import read_shard_attrs

    groups: dict[str, list] = {}
    for path in paths:
        groups.setdefault(str(read_shard_attrs(path)["version"]), []).append(path)
    return groups


def split_indices(n: int, fractions: Sequence[float], seed: int) -> list[np.ndarray]:
    """Random (seeded) partition of range(n) into len(fractions) parts; the last part takes the rest."""
    if any(f < 0 for f in fractions) or sum(fractions) > 1 + 1e-9:
        raise ValueError(f"split fractions must be >= 0 and sum to <= 1, got {fractions}")
    order = np.random.default_rng(seed).permutation(n)
    parts, start = [], 0
    for frac in fractions[:-1]:
        k = int(round(frac * n))
        parts.append(np.sort(order[start:start + k]))
        start += k
    parts.append(np.sort(order[start:]))
    return parts


def build_dataset(sim_shards: dict[str, list[str | os.PathLike]], use_hdf: bool, *, seed: int,
                  hdf_val_fraction: float = 0.1, hdf_test_fraction: float = 0.1,
                  max_sim: dict[str, int] | None = None,
                  hdf_config: HDFCutoutConfig = HDFCutoutConfig()) -> VAEDataset:
    """Assemble the train/val/test images.

    ``sim_shards`` maps each split to its shard files (may be empty lists); ``max_sim`` caps the number of
    simulator images per split, shared equally between the simulator versions present.
    """
    images = {s: [] for s in SPLITS}
    origin = {s: [] for s in SPLITS}
    for split in SPLITS:
        by_version = _group_by_version(sim_shards.get(split, []))
        cap = None if max_sim is None else max_sim.get(split)
        for k, (version, paths) in enumerate(sorted(by_version.items())):
            # an equal share of the cap per simulator version (the first versions take the remainder)
            share = None if cap is None else cap // len(by_version) + (1 if k < cap % len(by_version) else 0)
            imgs, orig = sim_sources(paths, share)
            images[split].append(imgs)
            origin[split].append(orig)
    if use_hdf:
        cut = extract_cutouts(config=hdf_config)
        n = len(cut.images)
        train_frac = 1.0 - hdf_val_fraction - hdf_test_fraction
        parts = split_indices(n, [train_frac, hdf_val_fraction, hdf_test_fraction], seed)
        for split, idx in zip(SPLITS, parts):
            images[split].append(cut.images[idx])
            origin[split].append(np.asarray([f"hdf/{i:06d}" for i in idx], dtype=object))
    out_images, out_origin = {}, {}
    for split in SPLITS:
        if images[split]:
            out_images[split] = np.concatenate(images[split]).astype(np.float32)
            out_origin[split] = np.concatenate(origin[split])
        else:
            out_images[split] = np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.float32)
            out_origin[split] = np.zeros(0, dtype=object)
    for split in ("train", "val"):
        if len(out_images[split]) < 2:
            raise ValueError(f"the VAE {split} set has {len(out_images[split])} images; need at least 2 "
                             "(enable hdf or provide simulation shards)")
    return VAEDataset(out_images, out_origin)


def write_dataset(path: str | os.PathLike, dataset: VAEDataset, attrs: dict | None = None) -> Path:
    """Write ``dataset`` to an HDF5 file atomically."""
    path = Path(path)
    with atomic_path(path, suffix=".h5.partial") as tmp:
        with h5py.File(tmp, "w") as f:
            for k, v in (attrs or {}).items():
                f.attrs[k] = v
            for split in SPLITS:
                g = f.create_group(split)
                g.create_dataset("images", data=dataset.images[split], compression="gzip", compression_opts=4)
                g.create_dataset("origin", data=np.asarray([str(o) for o in dataset.origin[split]],
                                                           dtype=h5py.string_dtype("utf-8")))
    return path


def read_dataset(path: str | os.PathLike) -> VAEDataset:
    """Read a file written by :func:`write_dataset`; the images come back as float32 whatever their stored type
    (a packed copy holds float16)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: VAE dataset not found")
    images, origin = {}, {}
    with h5py.File(path, "r") as f:
        for split in SPLITS:
            if split not in f:
                raise ValueError(f"{path}: group {split!r} missing")
            images[split] = f[split]["images"][...].astype(np.float32, copy=False)
            origin[split] = f[split]["origin"].asstr()[...].astype(object)
    return VAEDataset(images, origin)
