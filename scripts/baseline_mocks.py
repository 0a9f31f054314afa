"""Snakemake script (rule baseline_mocks): mock systems and Table 1 (S/N, eqs. 24-25)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821
from baseline_common import baseline_rule  # noqa: E402

with baseline_rule(snakemake) as settings:  # noqa: F821
    from astrorim.baseline.stages import mocks_stage

    paths = {Path(p).stem: p for p in snakemake.output.mocks}  # noqa: F821
    table = mocks_stage(settings, snakemake.input.data, paths, snakemake.output.table1)  # noqa: F821
    print(table.to_string(index=False))
