"""Snakemake script (rule baseline_compare): AstroRIM vs the paper-003 MAP fit and NUTS, lens by lens."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821
from baseline_common import baseline_rule  # noqa: E402

with baseline_rule(snakemake) as settings:  # noqa: F821
    from astrorim.baseline.stages import compare_stage

    sm = snakemake  # noqa: F821
    keys = [(s, n) for s in sm.params.systems for n in sm.params.noises]
    summary = compare_stage(settings, sm.input.model, sm.input.checkpoint, list(sm.input.shards),
                            {Path(p).stem: p for p in sm.input.mocks}, dict(zip(keys, sm.input.maps)),
                            dict(zip(keys, sm.input.nuts_json)), dict(zip(keys, sm.input.nuts)),
                            sm.output.table, sm.output.summary, sm.output.figure)
    print(summary.to_string(index=False))
