"""Snakemake script: initial joint training (rule train); also ``python scripts/train.py --config ... --phase ...``.

The rule's outputs must all lie in one directory, the phase's output directory; the resumable state is
kept in its undeclared ``resume/`` subdirectory, which Snakemake never deletes (docs/training.md).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _rule import redirect_to_log  # noqa: E402

PHASE = "initial"

if "snakemake" in globals():
    with redirect_to_log(snakemake):  # noqa: F821
        from astrorim.train.run import run_snakemake_job

        run_snakemake_job(snakemake, PHASE)  # noqa: F821
else:
    from astrorim.train.run import main

    sys.exit(main())
