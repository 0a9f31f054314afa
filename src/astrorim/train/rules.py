"""What the workflow's train/finetune rules declare: their named outputs and their params.

Kept apart from :mod:`astrorim.train.run` and free of torch, because the Snakefile imports it at parse time and
every Snakemake process (each local or SLURM job included) parses the Snakefile.
"""

from __future__ import annotations

from astrorim.train.config import TrainingConfig

RULE_OUTPUTS = {"best": "best.pt", "last": "last.pt", "metrics": "metrics.csv", "summary": "summary.json"}
# Training keys that do not change the result: not rule params (nor part of the checkpoint's config hash).
NOT_RULE_PARAMS = ("num_workers", "torch_threads", "checkpoint_every_s", "checkpoint_every_batches", "log_every_steps")


PRETRAIN_OUTPUTS = {"encoder": "encoder.pt", "metrics": "metrics.csv", "summary": "summary.json"}
# Pre-training keys that do not change the result (excluded from the rule's params and the state's hash).
PRETRAIN_OPERATIONAL = ("checkpoint_every_s", "deadline_s")


def pretrain_outputs(models_dir: str) -> dict[str, str]:
    """Named outputs of rule pretrain_encoder: {models_dir}/pretrain/encoder.pt, metrics.csv, summary.json."""
    return {key: f"{models_dir}/pretrain/{name}" for key, name in PRETRAIN_OUTPUTS.items()}


def pretrain_phases(config: dict) -> list[str]:
    """Simulation phases whose train split the encoder is pre-trained on (default: the initial phase)."""
    return list((config.get("pretrain") or {}).get("phases", ["initial"]))


def pretrain_params(config: dict) -> dict:
    """The pretrain section minus operational keys (a change reruns the rule)."""
    return {k: v for k, v in (config.get("pretrain") or {}).items() if k not in PRETRAIN_OPERATIONAL}


def rule_outputs(models_dir: str, phase: str) -> dict[str, str]:
    """Named outputs of the train/finetune rule: {models_dir}/{phase}/best.pt, last.pt, metrics.csv, summary.json."""
    return {key: f"{models_dir}/{phase}/{name}" for key, name in RULE_OUTPUTS.items()}


def rule_params(config: dict) -> dict:
    """The validated training section with defaults filled in, minus operational keys (Snakemake params:
    a change reruns the training rules; an invalid section fails when the DAG is built, naming the key)."""
    settings = TrainingConfig.from_dict(config.get("training")).to_dict()
    return {k: v for k, v in settings.items() if k not in NOT_RULE_PARAMS}
