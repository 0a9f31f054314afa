"""Snakemake script: "AstroRIM" and "AstroRIM + fit" rows of one held-out test shard (rule fit_shard)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821
from _rule import redirect_to_log  # noqa: E402

from astrorim.evaluate.fit_rows import fit_shard_rows  # noqa: E402
from astrorim.evaluate.tables import write_csv  # noqa: E402

with redirect_to_log(snakemake):  # noqa: F821
    sm = snakemake  # noqa: F821
    rows = fit_shard_rows(sm.input.checkpoint, sm.input.shard, int(sm.params.n_examples), threads=sm.threads,
                          expected_npix=int(sm.params.npix))
    write_csv(rows, sm.output.rows, index=False)
    fit = rows[rows["method"] == "astrorim_fit"]
    print(f"{sm.input.shard}: {len(fit)} lenses fitted, flags {fit['flag'].value_counts().to_dict()}, "
          f"median {fit['seconds'].median():.1f} s/lens")
