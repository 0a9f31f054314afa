"""Reconstruction metrics of the evaluation protocol (paper section 3.5, eq. 52-53; section 4.2).

Normalisation (``normalise``)
-----------------------------
The paper computes MSE and SSIM "on normalized images (scaled to [0, 1] range)" with "a per-example
normalization factor".  We make that precise as follows.  Both images are in the simulator's flux
units [ADU per detector pixel]: the truth is the shard's ``source`` and every method returns its
reconstruction in the same units (the model's own input scaling is undone by the caller, see
:mod:`astrorim.evaluate.pipeline`).  For each example

    s = max(truth)                 (the truth's peak; must be finite and > 0)
    truth_n = truth / s            (in [0, 1] for a non-negative truth, peak exactly 1)
    recon_n = recon / s            (NOT clipped: values < 0 or > 1 stay and are penalised)

so the factor depends only on the truth, is the same for every method, and a reconstruction that
overshoots the peak or rings negative is charged for it.  The published code instead divided both
images by max(observed.max, truth.max) and clipped the reconstruction to [0, 1]; those numbers are
available separately as the "published protocol" (``published_protocol_metrics``), for comparison
with the paper's Table 2 only.

SSIM
----
``ssim_paper``: Wang et al. (2004) as the paper states and as scikit-image documents for matching
Wang et al.: ``gaussian_weights=True, sigma=1.5`` (scikit-image truncates at 3.5 sigma, giving the
11 x 11 window), ``use_sample_covariance=False``, ``data_range=1``, K1 = 0.01, K2 = 0.03.
``ssim_default``: scikit-image's defaults (7 x 7 uniform window, sample covariance) with
``data_range=1``, which is what the published evaluation code ran.  Both are averaged over the
valid (uncropped) window positions by scikit-image, and both are computed in float64.

``ssim_source`` (an extra diagnostic, not in the paper): the paper-settings SSIM map averaged only
over the source region -- pixels within 5 px (the window radius) of a truth pixel >= 5% of the
peak, inside scikit-image's valid area.  Lensed sources fill a small part of the 96 x 96 grid and
the empty sky scores SSIM = 1 for any method that leaves it near zero, so the whole-image SSIM is
dominated by the background; this column shows the quality where the source actually is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.metrics import structural_similarity

PAPER_SSIM_KWARGS = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False,
                     "data_range": 1.0, "K1": 0.01, "K2": 0.03}
DEFAULT_SSIM_KWARGS = {"data_range": 1.0}

SOURCE_REGION_THRESHOLD = 0.05
SOURCE_REGION_RADIUS = 5  # the 11 x 11 window's radius

METRIC_COLUMNS = ("ssim", "ssim_default", "mse", "ssim_source", "ssim_published", "mse_published",
                  "norm_scale", "recon_min_n", "recon_max_n")


class NormalisationError(ValueError):
    """The truth of an example cannot define a normalisation (peak not finite or not > 0)."""


def _as_image(a, name: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D image, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or inf")
    return a


def normalisation_scale(truth) -> float:
    """The per-example factor s = max(truth)."""
    truth = _as_image(truth, "truth")
    s = float(truth.max())
    if not np.isfinite(s) or s <= 0:
        raise NormalisationError(f"truth peak is {s!r}; the [0, 1] normalisation needs a positive peak")
    return s


def normalise(truth, recon) -> tuple[np.ndarray, np.ndarray, float]:
    """(truth / s, recon / s, s) with s = max(truth); the reconstruction is not clipped."""
    truth = _as_image(truth, "truth")
    recon = _as_image(recon, "reconstruction")
    if truth.shape != recon.shape:
        raise ValueError(f"truth {truth.shape} and reconstruction {recon.shape} differ in shape")
    s = normalisation_scale(truth)
    return truth / s, recon / s, s


def mse(a, b) -> float:
    """Paper eq. 52: mean over pixels of (a - b)^2."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} and {b.shape}")
    return float(np.mean((a - b) ** 2))


def ssim_paper(truth_n, recon_n) -> float:
    """SSIM with the paper's stated settings (11 x 11 Gaussian window, sigma 1.5; Wang et al. 2004)."""
    return float(structural_similarity(np.asarray(truth_n, np.float64), np.asarray(recon_n, np.float64),
                                       **PAPER_SSIM_KWARGS))


def ssim_paper_with_source(truth_n, recon_n) -> tuple[float, float]:
    """(whole-image paper SSIM, paper SSIM averaged over the source region) from one SSIM map."""
    t = np.asarray(truth_n, np.float64)
    r = np.asarray(recon_n, np.float64)
    mean, smap = structural_similarity(t, r, full=True, **PAPER_SSIM_KWARGS)
    pad = SOURCE_REGION_RADIUS
    yy, xx = np.mgrid[-pad:pad + 1, -pad:pad + 1]
    region = ndimage.binary_dilation(t >= SOURCE_REGION_THRESHOLD, structure=(xx ** 2 + yy ** 2) <= pad ** 2)
    valid = np.zeros_like(region)
    valid[pad:-pad, pad:-pad] = True
    region &= valid
    return float(mean), float(smap[region].mean()) if region.any() else float("nan")


def ssim_default(truth_n, recon_n) -> float:
    """SSIM with scikit-image defaults (7 x 7 uniform window) and data_range=1, as the published code."""
    return float(structural_similarity(np.asarray(truth_n, np.float64), np.asarray(recon_n, np.float64),
                                       **DEFAULT_SSIM_KWARGS))


def published_protocol_metrics(truth, recon, observed) -> tuple[float, float]:
    """(SSIM, MSE) as the published evaluation code computed them: both images divided by
    max(observed.max, truth.max), the reconstruction clipped to [0, 1], scikit-image default SSIM."""
    truth = _as_image(truth, "truth")
    recon = _as_image(recon, "reconstruction")
    observed = _as_image(observed, "observed")
    s = max(float(observed.max()), float(truth.max()))
    if s <= 0:
        raise NormalisationError(f"max(observed.max, truth.max) = {s!r} is not positive")
    t = truth / s
    r = np.clip(recon / s, 0.0, 1.0)
    return ssim_default(t, r), mse(t, r)


@dataclass(frozen=True)
class ExampleMetrics:
    ssim: float
    ssim_default: float
    mse: float
    ssim_source: float
    ssim_published: float
    mse_published: float
    norm_scale: float
    recon_min_n: float
    recon_max_n: float

    def as_dict(self) -> dict[str, float]:
        return {c: getattr(self, c) for c in METRIC_COLUMNS}


def example_metrics(truth, recon, observed=None) -> ExampleMetrics:
    """All per-example metrics of one reconstruction (``observed`` only for the published protocol;
    without it those two fields are NaN)."""
    t, r, s = normalise(truth, recon)
    if observed is not None:
        ssim_pub, mse_pub = published_protocol_metrics(truth, recon, observed)
    else:
        ssim_pub = mse_pub = float("nan")
    ssim, ssim_src = ssim_paper_with_source(t, r)
    return ExampleMetrics(ssim=ssim, ssim_default=ssim_default(t, r), mse=mse(t, r), ssim_source=ssim_src,
                          ssim_published=ssim_pub, mse_published=mse_pub, norm_scale=s,
                          recon_min_n=float(r.min()), recon_max_n=float(r.max()))


def batch_metrics(truth, recon, observed=None, *, labels=None) -> list[dict[str, float]]:
    """Per-example metrics of (n, H, W) stacks; errors name the example (``labels[i]`` or its index)."""
    truth = np.asarray(truth)
    recon = np.asarray(recon)
    if truth.shape != recon.shape or truth.ndim != 3:
        raise ValueError(f"truth {truth.shape} and reconstructions {recon.shape} must be equal (n, H, W) stacks")
    if observed is not None and np.asarray(observed).shape != truth.shape:
        raise ValueError(f"observed {np.asarray(observed).shape} differs from truth {truth.shape}")
    out = []
    for i in range(truth.shape[0]):
        try:
            m = example_metrics(truth[i], recon[i], None if observed is None else observed[i])
        except ValueError as exc:
            label = labels[i] if labels is not None else f"example {i}"
            raise type(exc)(f"{label}: {exc}") from exc
        out.append(m.as_dict())
    return out
