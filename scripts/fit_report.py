"""Snakemake script: "AstroRIM" beside "AstroRIM + fit" on the fitted test examples (rule evaluate_fit)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821
from _rule import redirect_to_log  # noqa: E402

from astrorim.evaluate.fit_report import load_rows, write_report  # noqa: E402

with redirect_to_log(snakemake):  # noqa: F821
    sm = snakemake  # noqa: F821
    rows = load_rows(list(sm.input.rows))
    for path in write_report(rows, dict(sm.output.items()), sm.input.paper_table):
        print(f"wrote {path}")
    missing = [f for f in sm.output if not Path(f).exists()]
    if missing:
        raise RuntimeError(f"evaluate_fit finished without writing declared outputs {missing}")
