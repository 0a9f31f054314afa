"""Training data: a torch Dataset over simulation shards, a resumable epoch sampler, data loaders.

``ShardDataset`` indexes the examples of a list of shard files (``astrorim.io.shards`` format) and reads
one example per item: ``observed`` and ``source`` [ADU], ``noise_sigma`` [ADU] and the nine true
normalised lens parameters (truth columns ``norm_b`` ... ``norm_r_s``, NaN ``r_s`` without a halo).
HDF5 handles are opened lazily by whichever process reads (h5py handles are not fork-safe): a handle
opened before a fork is never reused in a worker, and the dataset pickles without them.

Items are ``index`` or ``(index, augmentation_code)``; the code (:mod:`astrorim.train.augment`) is
applied to source, observation, PSF and parameters alike.  Augmentations and the shuffling order are
drawn in the main process by :class:`EpochSampler` from a generator keyed by (seed, epoch), so the
data stream is a pure function of (seed, epoch, position): it does not depend on the number of
workers, and a run resumed mid-epoch sees exactly the batches it would have seen.

Per-example flux normalisation is not done here but on the device, batched, by the model's
normalisation module (``astrorim.train.step``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import h5py
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from astrorim.io.shards import ShardError, read_shard
from astrorim.params import PARAMETER_NAMES
from astrorim.train.augment import Augmentation, apply_to_image, apply_to_params, sample_augmentation_codes

TRUTH_COLUMNS = tuple(f"norm_{name}" for name in PARAMETER_NAMES)
STREAM_KEYS = ("phase", "version", "split", "seed", "start_index", "n")


@dataclass(frozen=True)
class ShardInfo:
    """What one shard holds: its file and its example stream (for checkpoint metadata)."""

    path: str
    phase: str
    version: str
    split: str
    seed: int
    start_index: int
    n: int

    def stream(self) -> dict:
        return {"phase": self.phase, "version": self.version, "split": self.split, "seed": self.seed,
                "start_index": self.start_index, "n": self.n}


class ShardDataset(Dataset):
    """Examples of several shards, in the order given.

    Parameters
    ----------
    paths:
        Shard files.  Each is opened once here (attributes and truth table, validated by
        :func:`astrorim.io.shards.read_shard`); images are read per item.
    with_psf:
        Also return the simulator's PSF kernel (``psf``), transformed with the augmentation.
    """

    def __init__(self, paths: Sequence[str | os.PathLike], *, with_psf: bool = False):
        if len(paths) == 0:
            raise ValueError("ShardDataset needs at least one shard file")
        self.paths = [Path(p) for p in paths]
        self.with_psf = bool(with_psf)
        self.shards: list[ShardInfo] = []
        params, counts = [], []
        npix = None
        for path in self.paths:
            shard = read_shard(path, fields=())
            missing = [c for c in TRUTH_COLUMNS if c not in shard.truth.columns]
            if missing:
                raise ShardError(f"{path}: truth table lacks the normalised parameter columns {missing}")
            if npix is None:
                npix = int(shard.attrs["npix"])
            elif int(shard.attrs["npix"]) != npix:
                raise ShardError(f"{path}: npix={shard.attrs['npix']} differs from the other shards' {npix}")
            a = shard.attrs
            self.shards.append(ShardInfo(str(path), str(a["phase"]), str(a["version"]), str(a["split"]),
                                         int(a["seed"]), int(a["start_index"]), int(a["n"])))
            params.append(shard.truth[list(TRUTH_COLUMNS)].to_numpy(dtype=np.float32))
            counts.append(len(shard))
        self.npix = int(npix)
        self.params = np.concatenate(params, axis=0)
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self._files: dict[int, h5py.File] = {}
        self._pid = None

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_files"] = {}
        state["_pid"] = None
        return state

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files = {}

    def locate(self, index: int) -> tuple[int, int]:
        """(shard number, row within the shard) of a global example index."""
        if not 0 <= index < len(self):
            raise IndexError(f"example index {index} out of range for {len(self)} examples")
        shard = int(np.searchsorted(self.offsets, index, side="right") - 1)
        return shard, int(index - self.offsets[shard])

    def _file(self, shard: int) -> h5py.File:
        if self._pid != os.getpid():  # first use, or inherited through a fork: never reuse the handles
            self._files = {}
            self._pid = os.getpid()
        f = self._files.get(shard)
        if f is None:
            path = self.paths[shard]
            try:
                f = h5py.File(path, "r")
            except OSError as exc:
                raise ShardError(f"{path}: cannot open shard for reading: {exc}") from exc
            self._files[shard] = f
        return f

    def __getitem__(self, item) -> dict:
        if isinstance(item, (tuple, list)):
            index, code = int(item[0]), int(item[1])
        else:
            index, code = int(item), 0
        shard, row = self.locate(index)
        f = self._file(shard)
        try:
            observed = f["observed"][row]
            source = f["source"][row]
            noise_sigma = f["noise_sigma"][row]
            psf = f["psf"][row] if self.with_psf else None
        except (OSError, KeyError, ValueError) as exc:
            raise ShardError(f"{self.paths[shard]}: cannot read example {row}: {exc}") from exc
        params = self.params[index]
        if code:
            aug = Augmentation.decode(code)
            observed, source = apply_to_image(observed, aug), apply_to_image(source, aug)
            params = apply_to_params(params, aug)
            if psf is not None:
                psf = apply_to_image(psf, aug)
        item = {"observed": np.asarray(observed, dtype=np.float32),
                "source": np.asarray(source, dtype=np.float32),
                "noise_sigma": np.float32(noise_sigma),
                "params": np.asarray(params, dtype=np.float32),
                "index": np.int64(index),
                "augmentation": np.int64(code)}
        if psf is not None:
            item["psf"] = np.asarray(psf, dtype=np.float32)
        return item

    def streams(self, role: str) -> list[dict]:
        """The example streams this dataset covers, tagged with ``role`` (train / val), for checkpoint meta."""
        return [{**s.stream(), "role": role, "path": s.path} for s in self.shards]


def shards_from_manifest(manifest: str | os.PathLike, split: str, *, phase: str | None = None) -> list[Path]:
    """Paths of a manifest's shards of one split (checked to exist), in manifest order."""
    manifest = Path(manifest)
    if not manifest.exists():
        raise FileNotFoundError(f"{manifest}: manifest not found")
    table = pd.read_csv(manifest)
    for column in ("path", "phase", "split"):
        if column not in table.columns:
            raise ValueError(f"{manifest}: manifest has no '{column}' column")
    rows = table[table["split"] == split]
    if phase is not None:
        wrong = rows[rows["phase"] != phase]
        if len(wrong):
            raise ValueError(f"{manifest}: expected phase {phase!r}, found {sorted(set(wrong['phase']))}")
    if rows.empty:
        raise ValueError(f"{manifest}: no shards of split {split!r}")
    paths = [Path(p) for p in rows["path"]]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise FileNotFoundError(f"{manifest}: {len(missing)} listed shard(s) do not exist, e.g. {missing[0]}")
    return paths


class EpochSampler(Sampler):
    """Shuffled (index, augmentation code) pairs of one epoch, resumable at any position.

    The order and the codes come from ``numpy.random.default_rng([seed, stream, epoch])`` (``stream``
    separates the phases); ``set_epoch(epoch, start)`` selects the epoch and skips its first ``start``
    items (a mid-epoch resume).
    """

    def __init__(self, n: int, seed: int, *, stream: int = 0, shuffle: bool = True, flip_prob: float = 0.0,
                 rot90_prob: float = 0.0):
        self.n = int(n)
        self.seed = int(seed)
        self.stream = int(stream)
        self.shuffle = bool(shuffle)
        self.flip_prob = float(flip_prob)
        self.rot90_prob = float(rot90_prob)
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch = int(epoch)
        self.start = int(start)

    def epoch_items(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """(indices, augmentation codes) of a whole epoch."""
        rng = np.random.default_rng([self.seed, self.stream, int(epoch)])
        order = rng.permutation(self.n) if self.shuffle else np.arange(self.n)
        codes = sample_augmentation_codes(rng, self.n, self.flip_prob, self.rot90_prob)
        return order, codes

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order, codes = self.epoch_items(self.epoch)
        for i in range(self.start, self.n):
            yield int(order[i]), int(codes[i])

    def __len__(self) -> int:
        return self.n - self.start


def make_loader(dataset: ShardDataset, batch_size: int, *, sampler: Sampler | None = None,
                num_workers: int = 0, pin_memory: bool = False, drop_last: bool = False) -> DataLoader:
    """A DataLoader with lazily opened shards per worker (no shared h5py handle)."""
    dataset.close()  # never fork with open handles
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, shuffle=False,
                      num_workers=num_workers, pin_memory=pin_memory, drop_last=drop_last,
                      persistent_workers=num_workers > 0)


def batch_to_device(batch: dict, device: torch.device) -> dict:
    non_blocking = device.type == "cuda"
    return {k: (v.to(device, non_blocking=non_blocking) if isinstance(v, torch.Tensor) else v)
            for k, v in batch.items()}
