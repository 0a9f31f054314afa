"""Snakemake script (rule baseline_map): multi-start MAP of one (system, noise level)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821
from baseline_common import baseline_rule  # noqa: E402

with baseline_rule(snakemake) as settings:  # noqa: F821
    from astrorim.baseline.stages import map_stage

    sm = snakemake  # noqa: F821
    info = map_stage(settings, sm.input.model, sm.input.mock, sm.wildcards.noise, sm.output.npz, sm.output.json)
    print(f"{sm.wildcards.system}/{sm.wildcards.noise}: {info['steps']} steps x {info['n_starts']} starts in "
          f"{info['wall_s']:.1f} s; relative errors [%]: "
          + ", ".join(f"{k} {v:+.2f}" for k, v in info["rel_error_pct"].items()))
