"""Joint training and finetuning of AstroRIM (paper §3.3): data, loss, optimisation, resumable checkpoints.

Modules: ``augment`` (D4 symmetries of images and lens parameters), ``data`` (shard Dataset, resumable
sampler), ``loss`` (eq. 43-49), ``optim`` (AdamW groups, warm-up + plateau, EMA), ``metrics`` (MSE, SSIM),
``step`` (one step, validation), ``state`` (training checkpoints), ``loop`` (one phase), ``run`` (from a
workflow configuration; also ``python -m astrorim.train``).  See docs/training.md.
"""

from astrorim.train.config import TrainingConfig, TrainingConfigError
from astrorim.train.run import train_phase

__all__ = ["TrainingConfig", "TrainingConfigError", "train_phase"]
