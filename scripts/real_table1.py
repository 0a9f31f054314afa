"""Snakemake script: Table 1 over every real lens (rule table1)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821
from _rule import redirect_to_log  # noqa: E402

from astrorim.real import build_table1  # noqa: E402

with redirect_to_log(snakemake):  # noqa: F821
    out_prefix = Path(snakemake.output.csv).with_suffix("")  # noqa: F821
    table = build_table1(snakemake.input.diagnostics, snakemake.input.catalogue, out_prefix)  # noqa: F821
    print(table.to_string())
