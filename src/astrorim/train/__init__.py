"""Joint training and finetuning of AstroRIM (paper §3.3): data, loss, optimisation, resumable checkpoints.

Modules: ``augment`` (D4 symmetries of images and lens parameters), ``data`` (shard Dataset, resumable
sampler), ``loss`` (eq. 43-49), ``optim`` (AdamW groups, warm-up + plateau, EMA), ``metrics`` (MSE, SSIM),
``step`` (one step, validation), ``state`` (training checkpoints), ``loop`` (one phase), ``run`` (from a
workflow configuration; also ``python -m astrorim.train``), ``rules`` (what the workflow's rules declare).
See docs/training.md.
"""

from astrorim.train.config import TrainingConfig, TrainingConfigError

__all__ = ["TrainingConfig", "TrainingConfigError", "train_phase"]


def __getattr__(name: str):
    # Imported lazily: the Snakefile imports astrorim.train.rules at parse time, and importing this package
    # must not pull in torch there (every SLURM job parses the Snakefile twice).
    if name == "train_phase":
        from astrorim.train.run import train_phase

        return train_phase
    raise AttributeError(f"module 'astrorim.train' has no attribute {name!r}")
