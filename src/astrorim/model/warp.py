"""Bilinear lens-equation warp of a source image and its exact transpose.

The warp samples the source surface brightness at the source-plane positions
beta = theta - alpha(theta) of every image pixel.  It is a linear map W (image = W source) whose
rows hold at most four bilinear weights; the transpose W^T scatters image-plane values back onto
the same four source pixels with the same weights.  Both directions are built from one set of
(index, weight) pairs, so W^T is the exact adjoint (dot-product test in tests/test_model_warp.py),
not an approximate inverse warp.

Sampling matches ``torch.nn.functional.grid_sample(mode='bilinear', padding_mode='zeros',
align_corners=False)``: corners outside the source grid contribute zero.  Coordinates are never
clamped to the edge of the grid (that is what made the "square frame + cross" artefacts of the
published code); far-away coordinates are only limited to a band just outside the grid so that
the integer indices cannot overflow, which changes no weight.

We use gather/scatter instead of ``grid_sample`` plus autograd because the RIM is trained through
the adjoint: the adjoint must itself be differentiable with respect to the deflection field (the
encoder's parameters), and ``grid_sample``'s backward has no double-backward for the grid.
"""

from __future__ import annotations

import torch

from astrorim.model.grid import normalised_to_fractional_index


class BilinearWarp:
    """The linear warp W defined by source-plane sampling positions.

    Parameters
    ----------
    beta_x, beta_y:
        (B, H, W) normalised source-plane coordinates (same convention as
        :mod:`astrorim.model.grid`) at which each image pixel samples the source.
    source_shape:
        (Hs, Ws) of the source grid, which spans [-1, 1] on both axes.
    """

    def __init__(self, beta_x: torch.Tensor, beta_y: torch.Tensor, source_shape: tuple[int, int]):
        if beta_x.shape != beta_y.shape or beta_x.ndim != 3:
            raise ValueError(f"beta_x and beta_y must both be (B, H, W); got {tuple(beta_x.shape)} "
                             f"and {tuple(beta_y.shape)}")
        hs, ws = (int(s) for s in source_shape)
        self.batch, self.height, self.width = (int(s) for s in beta_x.shape)
        self.source_shape = (hs, ws)

        u = normalised_to_fractional_index(beta_x, ws)
        v = normalised_to_fractional_index(beta_y, hs)
        finite = torch.isfinite(u) & torch.isfinite(v)
        # Limit to a band just outside the grid: every corner there is already invalid.
        u = torch.where(finite, u, torch.full_like(u, -2.0)).clamp(-2.0, ws + 1.0)
        v = torch.where(finite, v, torch.full_like(v, -2.0)).clamp(-2.0, hs + 1.0)
        u0 = torch.floor(u)
        v0 = torch.floor(v)
        fu = u - u0
        fv = v - v0
        c0 = u0.long()
        r0 = v0.long()

        cols = torch.stack([c0, c0 + 1, c0, c0 + 1], dim=1)  # (B, 4, H, W)
        rows = torch.stack([r0, r0, r0 + 1, r0 + 1], dim=1)
        weights = torch.stack([(1 - fv) * (1 - fu), (1 - fv) * fu, fv * (1 - fu), fv * fu], dim=1)
        valid = (cols >= 0) & (cols < ws) & (rows >= 0) & (rows < hs) & finite.unsqueeze(1)
        weights = weights * valid.to(weights.dtype)
        index = rows.clamp(0, hs - 1) * ws + cols.clamp(0, ws - 1)
        n = self.height * self.width
        self.index = index.reshape(self.batch, 4 * n)
        self.weights = weights.reshape(self.batch, 4, n)

    @property
    def dtype(self) -> torch.dtype:
        return self.weights.dtype

    def apply(self, source: torch.Tensor) -> torch.Tensor:
        """W source: (B, Hs, Ws) -> (B, H, W)."""
        if source.shape != (self.batch, *self.source_shape):
            raise ValueError(f"source must have shape {(self.batch, *self.source_shape)}, "
                             f"got {tuple(source.shape)}")
        flat = source.reshape(self.batch, -1).to(self.dtype)
        taps = torch.gather(flat, 1, self.index).view(self.batch, 4, -1)
        return (taps * self.weights).sum(dim=1).view(self.batch, self.height, self.width)

    def transpose(self, image: torch.Tensor) -> torch.Tensor:
        """W^T image: (B, H, W) -> (B, Hs, Ws), scattering with the forward weights."""
        if image.shape != (self.batch, self.height, self.width):
            raise ValueError(f"image must have shape {(self.batch, self.height, self.width)}, "
                             f"got {tuple(image.shape)}")
        vals = (image.reshape(self.batch, 1, -1).to(self.dtype) * self.weights)
        out = torch.zeros(self.batch, self.source_shape[0] * self.source_shape[1],
                          dtype=self.dtype, device=self.weights.device)
        out = out.scatter_add(1, self.index, vals.reshape(self.batch, -1))
        return out.view(self.batch, *self.source_shape)


def warp(source: torch.Tensor, beta_x: torch.Tensor, beta_y: torch.Tensor) -> torch.Tensor:
    """Source (B, Hs, Ws) sampled bilinearly at (beta_x, beta_y) (B, H, W); zero outside."""
    return BilinearWarp(beta_x, beta_y, tuple(source.shape[-2:])).apply(source)


def warp_transpose(image: torch.Tensor, beta_x: torch.Tensor, beta_y: torch.Tensor,
                   source_shape: tuple[int, int]) -> torch.Tensor:
    """Exact transpose of :func:`warp` applied to an image (B, H, W)."""
    return BilinearWarp(beta_x, beta_y, source_shape).transpose(image)
