"""Snakemake script: the classical lenstronomy reference fit of one real lens (rule real_lens_reference)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821
from _rule import redirect_to_log  # noqa: E402

from astrorim.real import run_reference  # noqa: E402

with redirect_to_log(snakemake):  # noqa: F821
    lens = snakemake.wildcards.lens  # noqa: F821
    payload = run_reference(lens, snakemake.input.catalogue, Path(snakemake.output.json).parent)  # noqa: F821
    print(f"{lens}: reference theta_E = {payload.get('theta_e_arcsec')} arcsec, status {payload.get('status')}")
