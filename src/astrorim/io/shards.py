"""Simulation shards: one self-describing HDF5 file per (phase, version, split, shard).

Layout (documented for users in docs/data-format.md):

    /source     float32 (n, npix, npix)   unlensed truth on the reconstruction grid
    /observed   float32 (n, npix, npix)   noisy observation [ADU]
    /psf        float32 (n, K, K)          PSF applied by the simulator (sum 1)
    /noise_sigma float32 (n,)              background noise standard deviation [ADU]
    /diagnostics/<name>                    optional noiseless images (noiseless, lensed_source_noiseless, ...)
    /truth/<column>                        one 1-D dataset per truth-table column
    attrs: format, format_version, version, phase, split, seed, start_index, n, npix, astrorim_version

Every array dataset carries HDF5's Fletcher-32 checksum filter, so a corrupted chunk is detected when read; a
truncated file fails to open.  Both surface as :class:`ShardError` naming the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import h5py
import numpy as np
import pandas as pd

from astrorim import __version__
from astrorim.io.atomic import atomic_path

SHARD_FORMAT = "astrorim-shard"
SHARD_FORMAT_VERSION = 1
IMAGE_FIELDS = ("source", "observed")
REQUIRED_FIELDS = ("source", "observed", "psf", "noise_sigma")
DIAGNOSTIC_FIELDS = ("noiseless", "lensed_source_noiseless", "psf_measured")
REQUIRED_ATTRS = ("format", "format_version", "version", "phase", "split", "seed", "start_index", "n", "npix")


class ShardError(RuntimeError):
    """A shard file is missing, truncated, corrupted or not a shard; the message names the file."""


@dataclass
class Shard:
    """The contents of one shard file."""

    path: Path
    attrs: dict[str, Any]
    arrays: dict[str, np.ndarray]
    truth: pd.DataFrame
    diagnostics: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.attrs["n"])

    @property
    def index_range(self) -> tuple[int, int]:
        """Half-open range of example indices this shard holds within its (seed, version, phase, split) stream."""
        start = int(self.attrs["start_index"])
        return start, start + len(self)


def _write_truth(group: h5py.Group, truth: pd.DataFrame) -> None:
    for column in truth.columns:
        values = truth[column].to_numpy()
        if values.dtype.kind in "OUS":
            data = np.array([str(v) for v in values], dtype=h5py.string_dtype("utf-8"))
        elif values.dtype.kind == "b":
            data = values.astype(np.bool_)
        else:
            data = values
        group.create_dataset(str(column), data=data)


def write_shard(path: str | os.PathLike, batch: Any, meta: dict[str, Any], *,
                store_diagnostics: bool = False) -> Path:
    """Write a simulated batch (``astrorim.sim.SimulationBatch``) to ``path`` atomically.

    ``meta`` must hold version, phase, split, seed and start_index; n and npix are taken from the arrays.
    """
    path = Path(path)
    observed = np.asarray(batch.observed, dtype=np.float32)
    n, npix, _ = observed.shape
    attrs = {
        "format": SHARD_FORMAT,
        "format_version": SHARD_FORMAT_VERSION,
        "n": n,
        "npix": npix,
        "astrorim_version": __version__,
        **{k: meta[k] for k in ("version", "phase", "split", "seed", "start_index")},
    }
    if len(batch.truth) != n:
        raise ValueError(f"{path}: truth table has {len(batch.truth)} rows for {n} images")
    with atomic_path(path, suffix=".h5.partial") as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs.update(attrs)
            for name in REQUIRED_FIELDS:
                data = np.asarray(getattr(batch, name), dtype=np.float32)
                chunks = (1,) + data.shape[1:] if data.ndim > 1 else None
                f.create_dataset(name, data=data, chunks=chunks, fletcher32=True)
            if store_diagnostics:
                diag = f.create_group("diagnostics")
                for name in DIAGNOSTIC_FIELDS:
                    value = getattr(batch, name, None)
                    if value is not None:
                        data = np.asarray(value, dtype=np.float32)
                        diag.create_dataset(name, data=data, chunks=(1,) + data.shape[1:], fletcher32=True)
            _write_truth(f.create_group("truth"), batch.truth)
    return path


def read_shard_attrs(path: str | os.PathLike) -> dict[str, Any]:
    """The shard's attributes only (cheap: no array is read)."""
    path = Path(path)
    with _open(path) as f:
        return _checked_attrs(path, f)


def read_shard(path: str | os.PathLike, fields: Iterable[str] = REQUIRED_FIELDS, *,
               diagnostics: bool = False) -> Shard:
    """Read and validate a shard; any defect raises :class:`ShardError` naming ``path``."""
    path = Path(path)
    with _open(path) as f:
        attrs = _checked_attrs(path, f)
        n, npix = int(attrs["n"]), int(attrs["npix"])
        arrays: dict[str, np.ndarray] = {}
        try:
            for name in fields:
                if name not in f:
                    raise ShardError(f"{path}: dataset '{name}' is missing")
                arrays[name] = f[name][...]
                if arrays[name].shape[0] != n:
                    raise ShardError(f"{path}: dataset '{name}' has {arrays[name].shape[0]} rows, attrs say n={n}")
                if name in IMAGE_FIELDS and arrays[name].shape[1:] != (npix, npix):
                    raise ShardError(f"{path}: dataset '{name}' has shape {arrays[name].shape}, expected npix={npix}")
            truth = _read_truth(path, f, n)
            diag = {}
            if diagnostics and "diagnostics" in f:
                diag = {name: f["diagnostics"][name][...] for name in f["diagnostics"]}
        except ShardError:
            raise
        except (OSError, KeyError, ValueError) as exc:  # Fletcher-32 mismatch and truncated chunks land here
            raise ShardError(f"{path}: corrupted shard ({exc})") from exc
    for name, data in arrays.items():
        if data.dtype.kind == "f" and not np.all(np.isfinite(data)):
            raise ShardError(f"{path}: dataset '{name}' contains NaN or inf")
    return Shard(path=path, attrs=attrs, arrays=arrays, truth=truth, diagnostics=diag)


# Rows per read when verifying a shard: bounds memory for large shards (2000 x 96 x 96 float32 = 74 MB).
VERIFY_ROWS = 256


def verify_shard(path: str | os.PathLike) -> dict[str, Any]:
    """Read every example of every dataset once; return the attributes, or raise :class:`ShardError`.

    Reading checks each chunk's Fletcher-32 checksum, so a corrupted chunk anywhere in the file
    (images, PSFs, diagnostics, truth) is found here -- not mid-training -- and the message names
    the shard, the dataset and the rows.  Required datasets must hold ``n`` rows of finite values.
    """
    path = Path(path)
    with _open(path) as f:
        attrs = _checked_attrs(path, f)
        n = int(attrs["n"])
        for name in REQUIRED_FIELDS:
            if name not in f:
                raise ShardError(f"{path}: dataset '{name}' is missing")
        if "truth" not in f:
            raise ShardError(f"{path}: group 'truth' is missing")
        datasets: list[tuple[str, h5py.Dataset]] = []
        f.visititems(lambda name, obj: datasets.append((name, obj)) if isinstance(obj, h5py.Dataset) else None)
        for name, dataset in datasets:
            rows = dataset.shape[0] if dataset.shape else 1
            if (name in REQUIRED_FIELDS or name.startswith("truth/")) and rows != n:
                raise ShardError(f"{path}: dataset '{name}' has {rows} rows, attrs say n={n}")
            for start in range(0, rows, VERIFY_ROWS):
                stop = min(start + VERIFY_ROWS, rows)
                try:
                    block = dataset[start:stop] if dataset.shape else dataset[()]
                except (OSError, ValueError) as exc:  # Fletcher-32 mismatch, truncated chunk
                    raise ShardError(f"{path}: corrupted shard: dataset '{name}' rows {start}-{stop - 1} "
                                     f"cannot be read ({exc})") from exc
                if name in REQUIRED_FIELDS and not np.all(np.isfinite(block)):
                    raise ShardError(f"{path}: dataset '{name}' contains NaN or inf in rows {start}-{stop - 1}")
    return attrs


def _open(path: Path) -> h5py.File:
    if not path.exists():
        raise ShardError(f"{path}: shard file does not exist")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise ShardError(f"{path}: not a readable HDF5 shard (truncated or corrupted?): {exc}") from exc


def _checked_attrs(path: Path, f: h5py.File) -> dict[str, Any]:
    attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()}
    missing = [k for k in REQUIRED_ATTRS if k not in attrs]
    if missing:
        raise ShardError(f"{path}: not an astrorim shard (missing attributes {missing})")
    if attrs["format"] != SHARD_FORMAT or int(attrs["format_version"]) != SHARD_FORMAT_VERSION:
        raise ShardError(f"{path}: unsupported shard format {attrs['format']!r} v{attrs['format_version']}")
    return attrs


def _read_truth(path: Path, f: h5py.File, n: int) -> pd.DataFrame:
    if "truth" not in f:
        raise ShardError(f"{path}: group 'truth' is missing")
    columns = {}
    for name, dataset in f["truth"].items():
        values = dataset[...]
        if values.dtype.kind == "O" or h5py.check_string_dtype(dataset.dtype) is not None:
            values = dataset.asstr()[...]
        if len(values) != n:
            raise ShardError(f"{path}: truth column '{name}' has {len(values)} rows, expected {n}")
        columns[name] = values
    return pd.DataFrame(columns)
