"""VAE validation tests of paper 003 §2.3: reconstructions (Fig. 2) and rotation equivariance (Fig. 3).

Rotation test: a test image is rotated by each angle (``skimage.transform.rotate``, bilinear, about
the array centre), pixels that come from outside the original frame are filled with draws from the noise
distribution N(0, sigma_d) (as the paper does), the rotated images are reconstructed, and the
reconstructions are rotated back.  The equivariance error is the rms difference between each
derotated reconstruction and the reconstruction of the unrotated image, inside the inscribed disc
(where rotation loses no pixels), in units of the image peak (1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from skimage import transform

from astrorim.baseline.vae import VAE


@torch.no_grad()
def reconstruct(vae: VAE, images: np.ndarray, seed: int, sample: bool = True) -> np.ndarray:
    """mu_d(z), z ~ e(z|x) (``sample``) or z = mu_e(x), for (N, 64, 64) images."""
    vae.eval()
    gen = torch.Generator().manual_seed(seed)
    x = torch.as_tensor(np.asarray(images, dtype=np.float32))
    return vae.reconstruct(x, sample=sample, generator=gen).numpy()


def inscribed_disc(n: int) -> np.ndarray:
    c = np.arange(n) - (n - 1) / 2
    return (c[:, None] ** 2 + c[None, :] ** 2) <= (n / 2) ** 2


@dataclass
class RotationTest:
    angles_deg: list[float]
    rotated: np.ndarray           # (A, 64, 64) inputs
    reconstructions: np.ndarray   # (A, 64, 64)
    derotated: np.ndarray         # (A, 64, 64)
    rms_error: list[float]        # per angle, vs. the 0-degree reconstruction, inside the inscribed disc


def rotation_test(vae: VAE, image: np.ndarray, angles_deg, noise_sigma: float, seed: int) -> RotationTest:
    rng = np.random.default_rng(seed)
    img = np.asarray(image, dtype=np.float64)
    rotated = []
    for a in angles_deg:
        r = transform.rotate(img, a, order=1, mode="constant", cval=np.nan)
        fill = np.isnan(r)
        r[fill] = noise_sigma * rng.standard_normal(int(fill.sum()))
        rotated.append(r)
    rotated = np.stack(rotated).astype(np.float32)
    rec = reconstruct(vae, rotated, seed)
    # skimage rotates about the array centre, counter-clockwise as shown with origin='upper'.
    derot = np.stack([transform.rotate(r, -a, order=1, mode="constant", cval=0.0) for r, a in zip(rec, angles_deg)])
    disc = inscribed_disc(img.shape[0])
    ref = derot[list(angles_deg).index(0)] if 0 in list(angles_deg) else rec[0]
    rms = [float(np.sqrt(np.mean((d[disc] - ref[disc]) ** 2))) for d in derot]
    return RotationTest(list(map(float, angles_deg)), rotated, rec, derot.astype(np.float32), rms)
