"""Export the EMA weights of a training checkpoint as a compact model checkpoint (no optimiser state).

    python -m astrorim.train.export data/cpu_small/results/models/finetune/best.pt models/cpu-small/model.pt

The result is an ordinary model checkpoint (:mod:`astrorim.model.checkpoint`) whose ``model_state`` *is*
the EMA shadow (``ema_state`` is None), with the training checkpoint's meta plus the source file's SHA-256;
``astrorim.model.checkpoint.load_model`` reads it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from astrorim.model import AstroRIM, AstroRIMConfig
from astrorim.model.checkpoint import CheckpointError, read_checkpoint, save_model_checkpoint, sha256_file


def export_ema(src: str | os.PathLike, dst: str | os.PathLike, extra_meta: dict | None = None) -> Path:
    """Write the EMA weights of checkpoint ``src`` to ``dst`` (atomically)."""
    ckpt = read_checkpoint(src)
    if not ckpt.get("ema_state"):
        raise CheckpointError(f"{src} has no EMA weights to export")
    model = AstroRIM(AstroRIMConfig.from_dict(ckpt["model_config"]))
    state = dict(ckpt["model_state"])
    state.update(ckpt["ema_state"])
    model.load_state_dict(state, strict=True)
    meta = dict(ckpt.get("meta") or {})
    meta.update({"exported_from": str(src), "exported_from_sha256": sha256_file(src),
                 "weights": "EMA shadow of the training run (model_state)", "epoch": ckpt.get("epoch"),
                 "config_hash": ckpt.get("config_hash"), **(extra_meta or {})})
    return save_model_checkpoint(dst, model, meta=meta)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m astrorim.train.export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", help="training checkpoint (best.pt or last.pt)")
    parser.add_argument("dst", help="output model checkpoint")
    args = parser.parse_args(argv)
    out = export_ema(args.src, args.dst)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
