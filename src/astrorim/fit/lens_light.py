"""Lens light basis: two elliptical Sérsic profiles (n = 1 and n = 4) sharing one shape, plus sky.

The shape (centre, ellipticity e1/e2 in lenstronomy's convention, half-light radius R_e in the
normalised unit) is non-linear and fitted by gradient descent; the three amplitudes are linear and
solved beside the source (:mod:`astrorim.fit.linear`).  Two fixed indices whose amplitudes are
free span the simulated n = 3-5 profiles far better than a single n = 4 (a linear stand-in for a
fitted index).  Profiles use lenstronomy's circularised radius R = sqrt(q x'^2 + y'^2 / q) and are
sampled at pixel centres and, in the 7 x 7 pixels around the centre, averaged over 4 x 4 sub-pixels,
since an n = 4 cusp is not resolved by pixel-centre sampling (and supersampling the whole image
made the fit four times slower).
"""

from __future__ import annotations

import torch

from astrorim.model.grid import normalised_grid
from astrorim.physics._common import ellipticity_geometry, to_major_axis_frame

# Exact b_n (Gamma(2n, b_n) = Gamma(2n) / 2) for the two basis indices.
SERSIC_INDICES = (1.0, 4.0)
SERSIC_B = {1.0: 1.6783469900166608, 4.0: 7.669249442500805}
# The profile is sampled at pixel centres, except in a CORE x CORE pixel patch around the centre,
# which is averaged over SUBSAMPLE x SUBSAMPLE sub-pixels (where the n = 4 cusp is unresolved).
SUBSAMPLE = 4
CORE = 7
N_LIGHT = len(SERSIC_INDICES) + 1  # + sky


def _profiles(x, y, x0, y0, q, cos_phi, sin_phi, r_e) -> list[torch.Tensor]:
    """Sérsic profiles (n = 1, 4) at points x, y (B, ...); parameters (B, 1, ..., 1)."""
    xp, yp = to_major_axis_frame(x - x0, y - y0, cos_phi, sin_phi)
    radius = torch.sqrt((q * xp * xp + yp * yp / q) / (r_e * r_e) + 1e-12)
    out = []
    for n in SERSIC_INDICES:
        root = radius if n == 1.0 else torch.sqrt(torch.sqrt(radius))
        out.append(torch.exp(-SERSIC_B[n] * (root - 1.0)))
    return out


def sersic_basis(npix: int, x0, y0, e1, e2, r_e) -> torch.Tensor:
    """(B, 2, H, W) unconvolved Sérsic images (n = 1, 4), each scaled to unit sum.

    x0, y0, e1, e2, r_e: (B,) tensors in normalised units; differentiable in all of them.
    """
    dtype, device = x0.dtype, x0.device
    batch = x0.shape[0]
    _, q, cos_phi, sin_phi = ellipticity_geometry(e1, e2)
    v3 = lambda t: t.view(-1, 1, 1)  # noqa: E731
    x, y = normalised_grid(npix, dtype=dtype, device=device)
    centre = _profiles(x[None], y[None], v3(x0), v3(y0), v3(q), v3(cos_phi), v3(sin_phi), v3(r_e))
    # The core patch: CORE x CORE pixels centred on the pixel nearest to (x0, y0).
    step = 2.0 / npix
    half = CORE // 2
    col0 = torch.floor((x0.detach() + 1.0) / step).long().clamp(half, npix - 1 - half)
    row0 = torch.floor((y0.detach() + 1.0) / step).long().clamp(half, npix - 1 - half)
    offs = torch.arange(-half, half + 1, device=device)
    cols = col0[:, None, None] + offs[None, None, :]                   # (B, 1, CORE)
    rows = row0[:, None, None] + offs[None, :, None]                   # (B, CORE, 1)
    sub = (torch.arange(SUBSAMPLE, dtype=dtype, device=device) + 0.5) / SUBSAMPLE - 0.5
    px = ((cols.to(dtype) + 0.5) * step - 1.0)[..., None, None] + sub.view(1, 1, 1, 1, -1) * step
    py = ((rows.to(dtype) + 0.5) * step - 1.0)[..., None, None] + sub.view(1, 1, 1, -1, 1) * step
    v5 = lambda t: t.view(-1, 1, 1, 1, 1)  # noqa: E731
    core = _profiles(px, py, v5(x0), v5(y0), v5(q), v5(cos_phi), v5(sin_phi), v5(r_e))
    flat_index = (rows * npix + cols).reshape(batch, -1)
    images = []
    for full, patch in zip(centre, core):
        patch_mean = patch.mean(dim=(-1, -2)).reshape(batch, -1)
        img = full.reshape(batch, -1).scatter(1, flat_index, patch_mean).view(batch, npix, npix)
        images.append(img / img.sum(dim=(-1, -2), keepdim=True))
    return torch.stack(images, dim=1)
