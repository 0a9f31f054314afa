"""Snakemake script: Table 1 with "AstroRIM + fit" beside AstroRIM and the reference (rule table1_fit)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821
from _rule import redirect_to_log  # noqa: E402

from astrorim.real.fit_step import build_table1_fit  # noqa: E402

with redirect_to_log(snakemake):  # noqa: F821
    sm = snakemake  # noqa: F821
    table = build_table1_fit(sm.input.table1, list(sm.input.fits), Path(sm.output.csv).with_suffix(""))
    print(table.to_string())
