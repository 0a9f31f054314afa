"""Snakemake script (rule baseline_report): Figs. 6-9 and the MAP / posterior accuracy tables."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821
from baseline_common import baseline_rule  # noqa: E402

with baseline_rule(snakemake) as settings:  # noqa: F821
    from astrorim.baseline.stages import report_stage

    sm = snakemake  # noqa: F821
    systems = list(sm.params.systems)
    noises = list(sm.params.noises)
    keys = [(s, n) for s in systems for n in noises]
    mocks = {Path(p).stem: p for p in sm.input.mocks}
    maps = dict(zip(keys, sm.input.maps))
    nuts = dict(zip(keys, sm.input.nuts))
    nuts_json = dict(zip(keys, sm.input.nuts_json))
    fig_map = dict(zip(systems, sm.output.fig_map))
    fig_post = dict(zip(systems, sm.output.fig_post))
    report_stage(settings, sm.input.model, mocks, maps, nuts, nuts_json, fig_map, fig_post, sm.output.map_csv,
                 sm.output.posterior_csv)
    print(f"wrote {list(sm.output)}")
