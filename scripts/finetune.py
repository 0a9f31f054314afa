"""Snakemake script: finetuning from the best initial checkpoint (rule finetune).

Same as scripts/train.py with the finetune phase: learning rates and early stopping from
``training.finetune``; the initial checkpoint is the rule's ``init`` input.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _rule import redirect_to_log  # noqa: E402

PHASE = "finetune"

if "snakemake" in globals():
    with redirect_to_log(snakemake):  # noqa: F821
        from astrorim.train.run import run_snakemake_job

        run_snakemake_job(snakemake, PHASE)  # noqa: F821
else:
    from astrorim.train.run import main

    sys.exit(main(["--phase", PHASE, *sys.argv[1:]]))
