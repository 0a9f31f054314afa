"""Real-morphology galaxy cutouts from ``skimage.data.hubble_deep_field()``.

The picture is an 8-bit RGB JPEG of the Hubble Deep Field: its pixel values are display values
(stretched, gamma-encoded, compressed, clipped at 255), NOT linear fluxes.  We use it only for its
morphologies and say so wherever it is shown ("non-linear photometry").  No attempt is made to undo the
stretch, since its transfer curve is unknown.

Detection: grey-scale (skimage ``rgb2gray``), Gaussian smoothing (``smooth_sigma_pix``), threshold at
median + ``threshold_sigma`` x (1.4826 MAD) of the whole frame, connected components with at least
``min_area_pix`` pixels that do not touch the frame edge.  Each object gets a square cutout centred on
its intensity-weighted centroid, of side ``cutout_factor`` x its bounding-box size (at least
``min_cutout_pix``), so that the galaxy fills about the central 1/cutout_factor of the stamp.  The cutout
minus the median of its border pixels is resampled to 64 x 64 (anti-aliased) and divided by its maximum
(paper 003 §2.2 preprocessing).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skimage import color, data, filters, measure, transform

OUTPUT_SIZE = 64


@dataclass(frozen=True)
class HDFCutoutConfig:
    smooth_sigma_pix: float = 1.5
    threshold_sigma: float = 5.0
    min_area_pix: int = 30
    cutout_factor: float = 2.0
    min_cutout_pix: int = 16


@dataclass
class HDFCutouts:
    """64 x 64 cutouts normalised to peak 1, the frame-pixel centre (row, col) and side of each, and the
    frame noise in each cutout's normalised units."""

    images: np.ndarray
    centres: np.ndarray
    sides: np.ndarray
    noise: np.ndarray


def hdf_grey() -> np.ndarray:
    """The Hubble Deep Field JPEG as a float grey image in [0, 1] (display values, non-linear)."""
    return color.rgb2gray(data.hubble_deep_field()).astype(np.float64)


def robust_noise(values: np.ndarray) -> tuple[float, float]:
    """(median, 1.4826 * MAD) of ``values``."""
    med = float(np.median(values))
    return med, 1.4826 * float(np.median(np.abs(values - med)))


def extract_cutouts(image: np.ndarray | None = None, config: HDFCutoutConfig = HDFCutoutConfig()) -> HDFCutouts:
    """Detect galaxies in ``image`` (default: the HDF grey image) and return normalised 64 x 64 cutouts,
    ordered by detection label (deterministic)."""
    frame = hdf_grey() if image is None else np.asarray(image, dtype=np.float64)
    if frame.ndim != 2:
        raise ValueError(f"expected a 2-D grey image, got shape {frame.shape}")
    med, sigma = robust_noise(frame)
    if not sigma > 0:
        raise ValueError("image noise estimate is zero; cannot threshold")
    smooth = filters.gaussian(frame, config.smooth_sigma_pix)
    labels = measure.label(smooth > med + config.threshold_sigma * sigma)
    h, w = frame.shape
    images, centres, sides, noise = [], [], [], []
    for region in measure.regionprops(labels, intensity_image=np.clip(frame - med, 0, None)):
        if region.area < config.min_area_pix:
            continue
        r0, c0, r1, c1 = region.bbox
        if r0 == 0 or c0 == 0 or r1 == h or c1 == w:
            continue
        side = int(max(config.min_cutout_pix, np.ceil(config.cutout_factor * max(r1 - r0, c1 - c0))))
        cr, cc = (int(round(v)) for v in region.centroid_weighted)
        top, left = cr - side // 2, cc - side // 2
        if top < 0 or left < 0 or top + side > h or left + side > w:
            continue
        cut = frame[top:top + side, left:left + side]
        border = np.concatenate([cut[0], cut[-1], cut[1:-1, 0], cut[1:-1, -1]])
        cut = cut - np.median(border)
        stamp = transform.resize(cut, (OUTPUT_SIZE, OUTPUT_SIZE), order=1, anti_aliasing=True,
                                 preserve_range=True)
        peak = float(stamp.max())
        if not peak > 0:
            continue
        # The JPEG rows run top-down; flip so that row 0 is the bottom row (astrorim convention).
        images.append((stamp[::-1] / peak).astype(np.float32))
        centres.append((cr, cc))
        sides.append(side)
        noise.append(sigma / peak)
    if not images:
        raise ValueError("no galaxy passed the HDF detection cuts")
    return HDFCutouts(np.stack(images), np.asarray(centres), np.asarray(sides), np.asarray(noise))
