"""Snakemake script: the trained model on one real lens, with its physical diagnostics (rule real_lens_model)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821
from _rule import redirect_to_log  # noqa: E402

from astrorim.real import run_lens  # noqa: E402

with redirect_to_log(snakemake):  # noqa: F821
    lens = snakemake.wildcards.lens  # noqa: F821
    payload = run_lens(lens, snakemake.input.catalogue, snakemake.input.checkpoint,  # noqa: F821
                       Path(snakemake.output.json).parent, reference_json=snakemake.input.reference,  # noqa: F821
                       figure_path=snakemake.output.figure)  # noqa: F821
    print(f"{lens}: {payload.get('status')}; theta_E model - reference = "
          f"{payload.get('theta_e_model_minus_reference_percent')} %")
