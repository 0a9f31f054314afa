"""The ``astrorim`` command line: one subcommand per user-facing task."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DESCRIPTION = ("astrorim: simulate strong-lens observations and reconstruct their unlensed sources\n"
               "with a trained AstroRIM model.")
EPILOG = """\
examples:
  astrorim simulate --simulator v3 --n 64 --seed 7 --out shard.h5
  astrorim reconstruct lens.fits --checkpoint models/cpu-small/model.pt --out recon.fits
  astrorim model-info --checkpoint models/cpu-small/model.pt

'astrorim COMMAND --help' describes each command; the whole study runs as a Snakemake workflow
(README.md).
"""
SIMULATE_EPILOG = """\
examples:
  astrorim simulate --simulator v3 --n 64 --seed 7 --out shard.h5
  astrorim simulate --simulator v1 --n 150 --seed 3003 --phase test --split test --out test.h5 \\
      --store-diagnostics --progress
"""


def _simulate(args: argparse.Namespace) -> int:
    from astrorim.io.atomic import check_writable
    from astrorim.io.shards import write_shard
    from astrorim.sim import simulate

    if args.old_version is not None:
        raise ValueError(f"'simulate --version' was renamed: pass --simulator {args.old_version} "
                         "('astrorim --version' prints the program's version)")
    if args.simulator is None:
        raise ValueError("--simulator is required (v1 ... v6)")
    try:  # before the simulating, not after it
        check_writable(args.out)
    except OSError as exc:
        raise ValueError(f"cannot write --out {args.out}: {exc.strerror or exc}") from None
    batch = simulate(args.simulator, args.n, args.seed, phase=args.phase, split=args.split,
                     start_index=args.start_index, npix=args.npix, progress=args.progress)
    meta = {"version": args.simulator, "phase": args.phase, "split": args.split, "seed": args.seed,
            "start_index": args.start_index}
    write_shard(args.out, batch, meta, store_diagnostics=args.store_diagnostics)
    print(f"wrote {args.n} {args.simulator} pairs to {args.out}")
    return 0


def _register_simulate(subparsers) -> None:
    p = subparsers.add_parser("simulate", help="simulate (source, observation) pairs into one HDF5 shard",
                              description="Simulate n pairs of one simulator version into one shard file\n"
                                          "(format: docs/data-format.md).",
                              epilog=SIMULATE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--simulator", metavar="VERSION", help="simulator version, v1 ... v6 (required)")
    # The old spelling clashed with 'astrorim --version'; kept hidden only to refuse it with a hint.
    p.add_argument("--version", dest="old_version", default=None, help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, required=True, help="number of pairs")
    p.add_argument("--seed", type=int, required=True, help="base seed of the random stream")
    p.add_argument("--out", type=Path, required=True, help="output .h5 path (written atomically)")
    p.add_argument("--phase", default="initial", help="initial | finetune | test (keys the random stream)")
    p.add_argument("--split", default="train", help="train | val | test (keys the random stream)")
    p.add_argument("--start-index", type=int, default=0, help="index of the first example in its stream")
    p.add_argument("--npix", type=int, default=96, help="image side in pixels")
    p.add_argument("--store-diagnostics", action="store_true", help="also store noiseless images")
    p.add_argument("--progress", action="store_true",
                   help="report progress (a bar on a terminal, else a line every 30 s with ETA)")
    p.set_defaults(func=_simulate)


def build_parser() -> argparse.ArgumentParser:
    from astrorim import __version__

    parser = argparse.ArgumentParser(prog="astrorim", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"astrorim {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _register_simulate(subparsers)
    from astrorim.model.cli import register as register_model_commands

    register_model_commands(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, KeyError, RuntimeError) as exc:
        print(f"astrorim {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
