"""Per-phase manifest of simulation shards: what each file holds, checked against the plan."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import pandas as pd

from astrorim.io.atomic import atomic_path
from astrorim.io.shards import read_shard_attrs, verify_shard
from astrorim.progress import Progress

MANIFEST_COLUMNS = ("path", "phase", "version", "split", "seed", "start_index", "n", "npix", "bytes")


def build_manifest(shard_paths: Iterable[str | os.PathLike], *, verify: bool = True,
                   progress: bool = False) -> pd.DataFrame:
    """One row per shard, from the shards' own attributes; any unusable shard raises ShardError naming it.

    ``verify``: read every example of every shard once (:func:`astrorim.io.shards.verify_shard`), so
    a corrupted chunk fails here rather than mid-training; False reads the attributes only.
    ``progress``: report shards done/total (a line every 30 s in a job's log).
    """
    paths = [Path(p) for p in shard_paths]
    bar = Progress(len(paths), "manifest: verify shards", unit="shard") if progress and verify else None
    rows = []
    for path in paths:
        attrs = verify_shard(path) if verify else read_shard_attrs(path)
        rows.append({"path": str(path), "bytes": path.stat().st_size,
                     **{k: attrs[k] for k in MANIFEST_COLUMNS if k not in ("path", "bytes")}})
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.close()
    return pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))


def check_no_overlap(manifest: pd.DataFrame) -> None:
    """Raise ValueError if two shards claim the same example of the same random stream."""
    key = ["seed", "version", "phase", "split"]
    for group_key, group in manifest.groupby(key):
        ranges = sorted(zip(group["start_index"], group["start_index"] + group["n"]))
        for (a0, a1), (b0, b1) in zip(ranges, ranges[1:]):
            if b0 < a1:
                raise ValueError(f"shards overlap in stream {dict(zip(key, group_key))}: [{a0},{a1}) and [{b0},{b1})")


def write_manifest(manifest: pd.DataFrame, out: str | os.PathLike) -> None:
    """Write the manifest CSV atomically."""
    with atomic_path(out, suffix=".csv.partial") as tmp:
        manifest.to_csv(tmp, index=False)
