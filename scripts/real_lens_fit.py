"""Snakemake script: "AstroRIM + fit" on one real lens (rule real_lens_fit)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821
from _rule import redirect_to_log  # noqa: E402

from astrorim.real.fit_step import run_lens_fit  # noqa: E402

with redirect_to_log(snakemake):  # noqa: F821
    sm = snakemake  # noqa: F821
    payload = run_lens_fit(sm.wildcards.lens, sm.input.catalogue, sm.input.checkpoint, sm.output.json,
                           reference_json=sm.input.reference)
    print(f"{sm.wildcards.lens}: {payload.get('status')} {payload.get('flag', '')}; theta_E fit "
          f"{payload.get('theta_e_fit_arcsec')} (reference {payload.get('theta_e_reference_arcsec')}), "
          f"chi2/pixel {payload.get('chi2_per_pixel')}")
