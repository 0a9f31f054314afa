"""Snakemake script (rule training_curves) and CLI: training curves of both phases in one PNG.

    python scripts/training_curves.py --initial results/quick/models/initial/metrics.csv \
        --finetune results/quick/models/finetune/metrics.csv --out results/quick/figures/training_curves.png
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _rule import redirect_to_log  # noqa: E402

from astrorim.train.curves import plot_training_curves  # noqa: E402

if "snakemake" in globals():
    with redirect_to_log(snakemake):  # noqa: F821
        paths = {phase: snakemake.input[phase] for phase in ("initial", "finetune")  # noqa: F821
                 if phase in snakemake.input.keys()}  # noqa: F821
        out = plot_training_curves(paths, snakemake.output[0], title=snakemake.params.title)  # noqa: F821
        print(f"wrote {out}")
else:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--initial", required=True)
    parser.add_argument("--finetune")
    parser.add_argument("--out", required=True)
    parser.add_argument("--title", default="")
    args = parser.parse_args()
    paths = {"initial": args.initial, **({"finetune": args.finetune} if args.finetune else {})}
    print(plot_training_curves(paths, args.out, title=args.title))
