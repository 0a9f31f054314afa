"""Snakemake script: simulate one shard (rule simulate)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821
from _rule import redirect_to_log  # noqa: E402

from astrorim.io.shards import write_shard  # noqa: E402
from astrorim.sim import simulate  # noqa: E402

with redirect_to_log(snakemake):  # noqa: F821
    spec = snakemake.params.spec  # noqa: F821
    batch = simulate(spec.version, spec.n, spec.seed, phase=spec.phase, split=spec.split,
                     start_index=spec.start_index, npix=snakemake.params.npix, progress=True)  # noqa: F821
    meta = {"version": spec.version, "phase": spec.phase, "split": spec.split, "seed": spec.seed,
            "start_index": spec.start_index}
    write_shard(snakemake.output[0], batch, meta,  # noqa: F821
                store_diagnostics=snakemake.params.store_diagnostics)  # noqa: F821
    print(f"{spec}: wrote {snakemake.output[0]}")  # noqa: F821
