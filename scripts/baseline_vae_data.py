"""Snakemake script (rule baseline_vae_data): simulator sources + HDF cutouts -> the VAE data file."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821
from baseline_common import baseline_rule  # noqa: E402

with baseline_rule(snakemake) as settings:  # noqa: F821
    from astrorim.baseline.stages import build_vae_data

    shards = {split: list(snakemake.input[split]) for split in ("train", "val", "test")}  # noqa: F821
    counts = build_vae_data(settings, shards, snakemake.output[0])  # noqa: F821
    print(f"VAE data: {counts} images -> {snakemake.output[0]}")  # noqa: F821
