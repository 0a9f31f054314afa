"""Lens model of paper 003 §3.2 in the project's torch physics: EPL main halo + external shear.

    alpha(theta) = alpha_EPL(theta; r_ein, slope, q, phi, x_lens, y_lens) + alpha_shear(theta; gamma1, gamma2)

(eq. 10; EPL = the paper's SPLE, eq. 11, in lenstronomy's 'EPL' convention, see
:mod:`astrorim.baseline.priors`; shear about the origin, eq. 13 / lenstronomy 'SHEAR').  q and phi are
turned into lenstronomy's (e1, e2) = (1 - q)/(1 + q) (cos 2 phi, sin 2 phi).  All lengths in arcsec.

The image grid follows :mod:`astrorim.model.grid`: npix x npix pixels over a square field of side
``fov_arcsec`` centred on the origin, x along columns, y along rows, row 0 at the bottom; pixel centres
at (j + 0.5) * pixel_scale - fov / 2.  The paper's grid is 256 x 256 over 10" (10/256 = 0.039"/pix,
quoted as 0.04" in the paper).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from astrorim.model.grid import normalised_grid
from astrorim.physics import epl, shear


@dataclass(frozen=True)
class ImageGrid:
    npix: int = 256
    fov_arcsec: float = 10.0

    def __post_init__(self):
        if int(self.npix) != self.npix or self.npix < 2 or not self.fov_arcsec > 0:
            raise ValueError(f"invalid image grid npix={self.npix}, fov_arcsec={self.fov_arcsec}")

    @property
    def pixel_scale(self) -> float:
        """Pixel side [arcsec]."""
        return self.fov_arcsec / self.npix

    def coordinates(self, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y) of every pixel centre [arcsec], each (npix, npix)."""
        x, y = normalised_grid(self.npix, dtype=dtype)
        half = 0.5 * self.fov_arcsec
        return x * half, y * half


def ellipticity(q: torch.Tensor, phi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """lenstronomy (e1, e2) from axis ratio and major-axis angle [rad]."""
    e = (1.0 - q) / (1.0 + q)
    return e * torch.cos(2.0 * phi), e * torch.sin(2.0 * phi)


def _b(value: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B, 1, 1) to broadcast against (H, W) grids."""
    return value[:, None, None]


def deflection(x: torch.Tensor, y: torch.Tensor, p: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Total deflection (B, H, W) [arcsec] at grid points x, y (H, W) for (B,) lens parameters ``p``."""
    e1, e2 = ellipticity(p["q"], p["phi"])
    ax, ay = epl.deflection(x, y, theta_E=_b(p["r_ein"]), gamma=_b(p["slope"]), e1=_b(e1), e2=_b(e2),
                           center_x=_b(p["x_lens"]), center_y=_b(p["y_lens"]))
    sx, sy = shear.deflection(x, y, gamma1=_b(p["gamma1"]), gamma2=_b(p["gamma2"]))
    return ax + sx, ay + sy


def ray_trace(x: torch.Tensor, y: torch.Tensor, p: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Source-plane positions beta = theta - alpha(theta) (eq. 6), each (B, H, W) [arcsec]."""
    ax, ay = deflection(x, y, p)
    return x - ax, y - ay


def gaussian_psf_kernel(sigma_arcsec: float, pixel_scale_arcsec: float, truncate: float = 4.0,
                        dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Circular Gaussian PSF sampled at pixel centres, (K, K) with K = 2 ceil(truncate sigma) + 1, sum 1."""
    if not sigma_arcsec > 0 or not pixel_scale_arcsec > 0:
        raise ValueError(f"PSF sigma and pixel scale must be > 0, got {sigma_arcsec}, {pixel_scale_arcsec}")
    s = sigma_arcsec / pixel_scale_arcsec
    half = int(math.ceil(truncate * s))
    c = torch.arange(-half, half + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * (c / s) ** 2)
    k = g[:, None] * g[None, :]
    return (k / k.sum()).to(dtype)
