"""The one step that runs the trained AstroRIM model on a real-lens cut-out.

Everything before it (ingest) and after it (diagnostics, tables, figures) is independent of the
model; this function is the only place a checkpoint is read.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from astrorim.params import PARAMETER_NAMES
from astrorim.real.ingest import ModelInput


@dataclass
class ModelOutput:
    """The model's answer for one lens: nine normalised parameters and images on the 96x96 grid.

    Images are in the units of ``ModelInput.image`` (flux per pixel / flux_scale); ``source`` lives
    on a source-plane grid of the same pixel size.  ``runtime_s``: wall seconds of the
    reconstruction itself (checkpoint already loaded; NaN when not timed), on ``device``.
    """

    params: dict[str, float]
    source: np.ndarray
    model_image: np.ndarray
    noise_sigma: float
    checkpoint: str
    runtime_s: float = float("nan")
    device: str | None = None

    def __post_init__(self):
        missing = [k for k in PARAMETER_NAMES if k not in self.params]
        if missing:
            raise ValueError(f"model output lacks parameter(s) {missing}")
        if self.model_image.shape != self.source.shape:
            raise ValueError(f"source {self.source.shape} and model image {self.model_image.shape} differ in shape")


def background_sigma(model_input: ModelInput) -> float:
    """Scalar noise level handed to the model: the median noise-map value over the usable pixels.

    The model takes one noise standard deviation per image; on these cut-outs most pixels are sky,
    so the median of the per-pixel map is the background level (bright pixels carry more Poisson
    noise, which the chi2 diagnostics account for with the full map).
    """
    if model_input.noise is None:
        raise ValueError(f"{model_input.source_path}: no noise map; the model needs a noise level")
    return float(np.median(model_input.noise[model_input.mask]))


def run_model(model_input: ModelInput, checkpoint: str | Path, *, n_iter: int | None = None,
              device: str | None = None) -> ModelOutput:
    """Reconstruct the source and lens parameters of ``model_input`` with the checkpoint at ``checkpoint``.

    The checkpoint is loaded first; ``ModelOutput.runtime_s`` is the wall time (``time.perf_counter``)
    of :func:`astrorim.inference.reconstruct` alone, which returns host arrays (so GPU work is done).
    """
    import torch

    from astrorim.inference import default_device, reconstruct
    from astrorim.model.checkpoint import load_model

    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found (train the model first)")
    sigma = background_sigma(model_input)
    torch_device = torch.device(device) if device is not None else default_device()
    model, _ = load_model(path, map_location=torch_device)
    t0 = time.perf_counter()
    result = reconstruct(model_input.image, model, noise_sigma=sigma, n_iter=n_iter, device=torch_device)
    runtime_s = time.perf_counter() - t0
    row = result.params.iloc[0]
    params = {k: float(row[k]) for k in PARAMETER_NAMES}
    return ModelOutput(params=params, source=np.asarray(result.source, dtype=float),
                       model_image=np.asarray(result.model_image, dtype=float), noise_sigma=sigma,
                       checkpoint=str(path), runtime_s=runtime_s, device=str(torch_device))
