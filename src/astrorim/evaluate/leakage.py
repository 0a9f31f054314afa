"""Refuse a checkpoint whose training (or validation) data overlaps the test examples.

Every simulated example is identified by its random-stream key (seed, version, phase, split, index)
(``astrorim.sim.keys.example_rng``), and a shard holds the index range [start_index, start_index + n)
of one (seed, version, phase, split) stream.  Two examples are the same draw exactly when these keys
are equal, so a checkpoint has seen a test example if and only if one of the streams recorded in its
metadata has the same (seed, version, phase, split) as a test shard and an intersecting index range.

Checkpoint metadata records its data as a list of stream records with keys (role,) phase, version,
split, seed, start_index, n: the trainer writes ``meta['training_data']`` with the train and val
streams of the phase and of every phase the checkpoint descends from (``astrorim.train.run``).  Lists
under the other keys in :data:`STREAM_LIST_KEYS`, at the top level of the metadata or inside
``meta['data']``, are read as well, so every recorded stream is checked.  Metadata without any
stream record cannot be verified and is refused as well (the error says so).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from astrorim.io.shards import read_shard_attrs

STREAM_FIELDS = ("seed", "version", "phase", "split")
STREAM_LIST_KEYS = ("training_data", "streams", "data_streams", "training_streams", "train_streams", "val_streams",
                    "initial_streams", "finetune_streams", "parent_streams")


class LeakageError(RuntimeError):
    """The checkpoint was trained on (or validated with) examples of the test set, or cannot be checked."""


@dataclass(frozen=True)
class Stream:
    """A half-open index range [start, stop) of one (seed, version, phase, split) random stream."""

    seed: int
    version: str
    phase: str
    split: str
    start: int
    stop: int
    origin: str = ""

    @property
    def key(self) -> tuple:
        return (self.seed, self.version, self.phase, self.split)

    def overlaps(self, other: "Stream") -> bool:
        return self.key == other.key and self.start < other.stop and other.start < self.stop

    def describe(self) -> str:
        return (f"seed={self.seed} version={self.version} phase={self.phase} split={self.split} "
                f"indices [{self.start}, {self.stop})" + (f" ({self.origin})" if self.origin else ""))


def stream_from_record(record: Mapping[str, Any], origin: str = "") -> Stream:
    """A Stream from a metadata record {seed, version, phase, split, start_index, n} (or start/stop)."""
    missing = [k for k in STREAM_FIELDS if k not in record]
    if missing:
        raise LeakageError(f"{origin or 'stream record'}: missing fields {missing} in {dict(record)}")
    if "start_index" in record and "n" in record:
        start, stop = int(record["start_index"]), int(record["start_index"]) + int(record["n"])
    elif "start" in record and "stop" in record:
        start, stop = int(record["start"]), int(record["stop"])
    elif "index_range" in record:
        start, stop = (int(v) for v in record["index_range"])
    else:
        raise LeakageError(f"{origin or 'stream record'}: no index range (start_index + n, start/stop or "
                           f"index_range) in {dict(record)}")
    if stop < start:
        raise LeakageError(f"{origin or 'stream record'}: empty or reversed index range [{start}, {stop})")
    return Stream(int(record["seed"]), str(record["version"]), str(record["phase"]), str(record["split"]),
                  start, stop, origin)


def checkpoint_streams(meta: Mapping[str, Any], source: str = "checkpoint") -> list[Stream]:
    """Every data stream a checkpoint's metadata records (see the module docstring for where)."""
    if not isinstance(meta, Mapping):
        raise LeakageError(f"{source}: metadata is {type(meta).__name__}, not a mapping")
    found: list[Stream] = []
    places = [("", meta)]
    if isinstance(meta.get("data"), Mapping):
        places.append(("data.", meta["data"]))
    for prefix, place in places:
        for key in STREAM_LIST_KEYS:
            records = place.get(key)
            if records is None:
                continue
            if isinstance(records, Mapping):  # e.g. {"train": [...], "val": [...]}
                items = [(f"{prefix}{key}.{k}[{i}]", r) for k, lst in records.items() for i, r in enumerate(lst)]
            else:
                items = [(f"{prefix}{key}[{i}]", r) for i, r in enumerate(records)]
            for origin, record in items:
                found.append(stream_from_record(record, f"{source}: {origin}"))
    return found


def shard_streams(shard_paths: Iterable[str | os.PathLike]) -> list[Stream]:
    """The stream of each test shard, read from the shard's own attributes."""
    out = []
    for path in shard_paths:
        a = read_shard_attrs(path)
        out.append(Stream(int(a["seed"]), str(a["version"]), str(a["phase"]), str(a["split"]),
                          int(a["start_index"]), int(a["start_index"]) + int(a["n"]), str(Path(path))))
    return out


def find_overlaps(trained: Sequence[Stream], test: Sequence[Stream]) -> list[tuple[Stream, Stream]]:
    return [(a, b) for a in trained for b in test if a.overlaps(b)]


def check_no_leakage(meta: Mapping[str, Any], shard_paths: Iterable[str | os.PathLike],
                     source: str = "checkpoint") -> list[Stream]:
    """Raise :class:`LeakageError` (saying why) if the checkpoint saw any test example; return its streams."""
    trained = checkpoint_streams(meta, source)
    if not trained:
        raise LeakageError(
            f"{source}: the metadata records no training/validation data streams (looked for "
            f"{list(STREAM_LIST_KEYS)} at the top level and under 'data'), so it cannot be verified that the "
            f"model never saw the test examples; refusing to evaluate it")
    test = shard_streams(shard_paths)
    if not test:
        raise LeakageError(f"{source}: no test shards given to check against")
    overlaps = find_overlaps(trained, test)
    if overlaps:
        lines = [f"  trained on {a.describe()}\n    overlaps test {b.describe()}" for a, b in overlaps[:10]]
        more = f"\n  ... and {len(overlaps) - 10} more" if len(overlaps) > 10 else ""
        raise LeakageError(f"{source}: refusing to evaluate, the checkpoint's data overlaps the test set "
                           f"(same random stream and intersecting example indices):\n" + "\n".join(lines) + more)
    return trained
