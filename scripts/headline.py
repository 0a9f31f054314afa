"""Snakemake script (rules headline_*) and CLI: a stage's headline numbers as a small flat JSON for DVC.

    python scripts/headline.py evaluation results/cpu_medium/metrics/evaluate.json \
        results/cpu_medium/metrics/headline_evaluation.json
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _rule import redirect_to_log  # noqa: E402

from astrorim.headline import KINDS, write_headline  # noqa: E402

if "snakemake" in globals():
    with redirect_to_log(snakemake):  # noqa: F821
        out = write_headline(snakemake.params.kind, snakemake.input[0], snakemake.output[0])  # noqa: F821
        print(f"wrote {out}: {out.read_text()}")
else:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("source", help="the stage output the headline is read from")
    parser.add_argument("out", help="the headline JSON to write")
    args = parser.parse_args()
    print(write_headline(args.kind, args.source, args.out))
