"""Snakemake script: held-out evaluation of the finetuned checkpoint and the classical methods (rule evaluate)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821
from _rule import redirect_to_log  # noqa: E402

import pandas as pd  # noqa: E402

from astrorim.evaluate.pipeline import EvaluationSettings, OutputDirs, run_evaluation  # noqa: E402


def manifest_paths(manifest, split):
    """Shard paths of one split listed in a phase manifest (CSV with path, split, ...)."""
    frame = pd.read_csv(manifest)
    missing = [c for c in ("path", "split") if c not in frame.columns]
    if missing:
        raise KeyError(f"{manifest}: manifest lacks columns {missing}")
    paths = frame.loc[frame["split"] == split, "path"].tolist()
    if not paths:
        raise ValueError(f"{manifest}: no '{split}' shards listed")
    return paths


with redirect_to_log(snakemake):  # noqa: F821
    sm = snakemake  # noqa: F821
    settings = dict(sm.params.settings)
    if "lambda_grid" in settings:
        settings["lambda_grid"] = tuple(float(v) for v in settings["lambda_grid"])
    known = set(EvaluationSettings.__dataclass_fields__) - {"threads", "tikhonov_lambda"}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise KeyError(f"config evaluation: unknown keys {unknown}; known: {sorted(known | {'checkpoint'})}")
    settings = EvaluationSettings(**settings, threads=sm.threads)
    dirs = OutputDirs(Path(sm.output.table2).parent, Path(sm.output.figure7).parent, Path(sm.output.metrics).parent)
    run_evaluation(sm.input.checkpoint, manifest_paths(sm.input.test_manifest, "test"),
                   manifest_paths(sm.input.val_manifest, "val"), dirs, sm.input.paper_table, settings,
                   expected_npix=int(sm.params.npix))
    missing = [f for f in sm.output if not Path(f).exists()]
    if missing:
        raise RuntimeError(f"evaluation finished without writing declared outputs {missing}")
