"""Source model of paper 003 §3.3 (eq. 17): a 64 x 64 stamp placed, scaled and brightened.

    I_src(beta) = iota * d(z)( (beta_1 - x_src) / s, (beta_2 - y_src) / s )

evaluated by bilinear interpolation of the stamp.  The paper does not give the unit of s; we define
the stamp's full width as ``s * stamp_width_per_scale`` arcsec, with ``stamp_width_per_scale`` = 2/3
by default, so that the prior mean s = 5 (eq. 15) makes the 64 x 64 stamp 3.33" wide, one third of the
10" field -- the paper's mock sources "fill roughly the central third of the source image plane" (§5.1).

Stamps follow the project's image convention (row 0 at the bottom, x along columns); sampling is
``torch.nn.functional.grid_sample(mode='bilinear', padding_mode='zeros', align_corners=False)``, so the
stamp's outer pixel edges sit at +-(s * stamp_width_per_scale / 2) from (x_src, y_src) and the source is
zero outside.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

DEFAULT_STAMP_WIDTH_PER_SCALE = 2.0 / 3.0


def stamp_half_width(scale: torch.Tensor, stamp_width_per_scale: float) -> torch.Tensor:
    """Half the stamp's side [arcsec] for source scale(s) s."""
    return 0.5 * scale * stamp_width_per_scale


def evaluate_source(stamp: torch.Tensor, beta_x: torch.Tensor, beta_y: torch.Tensor, p: dict[str, torch.Tensor],
                    stamp_width_per_scale: float = DEFAULT_STAMP_WIDTH_PER_SCALE) -> torch.Tensor:
    """I_src at source-plane positions (B, H, W) for stamps (B, h, w) and (B,) x_src, y_src, scale, iota."""
    if stamp.ndim != 3 or beta_x.ndim != 3 or beta_x.shape != beta_y.shape or stamp.shape[0] != beta_x.shape[0]:
        raise ValueError(f"need stamps (B, h, w) and positions (B, H, W); got {tuple(stamp.shape)}, "
                         f"{tuple(beta_x.shape)}, {tuple(beta_y.shape)}")
    half = stamp_half_width(p["scale"], stamp_width_per_scale)[:, None, None]
    u = (beta_x - p["x_src"][:, None, None]) / half
    v = (beta_y - p["y_src"][:, None, None]) / half
    grid = torch.stack([u, v], dim=-1).to(stamp.dtype)
    out = F.grid_sample(stamp.unsqueeze(1), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.squeeze(1) * p["iota"][:, None, None].to(stamp.dtype)


def source_plane_grid(half_width_arcsec: float, npix: int, dtype: torch.dtype = torch.float32
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel centres (x, y) of an npix x npix display grid over [-half_width, half_width]^2 [arcsec]."""
    c = ((torch.arange(npix, dtype=dtype) + 0.5) / npix * 2.0 - 1.0) * half_width_arcsec
    y, x = torch.meshgrid(c, c, indexing="ij")
    return x, y
