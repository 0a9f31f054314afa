"""Snakemake script (rule baseline_nuts): NUTS posterior of one (system, noise level) from its MAP."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821
from baseline_common import baseline_rule  # noqa: E402

with baseline_rule(snakemake) as settings:  # noqa: F821
    from astrorim.baseline.stages import nuts_stage

    sm = snakemake  # noqa: F821
    info = nuts_stage(settings, sm.input.model, sm.input.mock, sm.input.map, sm.wildcards.noise, sm.output.npz,
                      sm.output.json)
    print(f"{sm.wildcards.system}/{sm.wildcards.noise}: warmup {info['warmup_s']:.1f} s, "
          f"{info['samples']} samples in {info['sampling_s']:.1f} s ({info['seconds_per_sample']:.2f} s/sample, "
          f"{info['gradients_per_sample']:.1f} gradients/sample); {info['diagnostics']}")
