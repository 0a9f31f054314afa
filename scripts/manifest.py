"""Snakemake script: the manifest of one phase's shards (rule manifest)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821
from _rule import redirect_to_log  # noqa: E402

from astrorim.manifest import build_manifest, check_no_overlap, write_manifest  # noqa: E402

with redirect_to_log(snakemake):  # noqa: F821
    manifest = build_manifest(snakemake.input, progress=True)  # noqa: F821 (reads every example once)
    check_no_overlap(manifest)
    write_manifest(manifest, snakemake.output[0])  # noqa: F821
    print(f"{len(manifest)} shards, {int(manifest['n'].sum())} examples -> {snakemake.output[0]}")  # noqa: F821
