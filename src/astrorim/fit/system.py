"""Build the linear system of :mod:`astrorim.fit.linear` for a batch of non-linear parameters."""

from __future__ import annotations

import torch

from astrorim.fit.lens_light import sersic_basis
from astrorim.fit.linear import LinearSystem, source_support
from astrorim.fit.parameters import INDEX
from astrorim.model.grid import normalised_grid
from astrorim.model.psf import convolve_same
from astrorim.model.warp import BilinearWarp
from astrorim.params import NFW_ALPHA_RS_FACTOR
from astrorim.physics import nfw, shear, sie


def deflection(theta: torch.Tensor, npix: int, halo_r_s: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """SIE + external shear (+ NFW at the lens centre with scale radius ``halo_r_s`` when given)
    deflection (B, npix, npix) [normalised units] for rows theta (B, P)."""
    x, y = normalised_grid(npix, dtype=theta.dtype, device=theta.device)
    x, y = x[None], y[None]
    p = {n: theta[:, i].view(-1, 1, 1) for n, i in INDEX.items()}
    ax, ay = sie.deflection(x, y, torch.exp(p["log_b"]), p["e1"], p["e2"], p["x0"], p["y0"])
    sx, sy = shear.deflection(x, y, p["gamma1"], p["gamma2"])
    ax, ay = ax + sx, ay + sy
    if halo_r_s is not None:
        alpha_rs = NFW_ALPHA_RS_FACTOR * p["kappa_s"] * halo_r_s
        hx, hy = nfw.deflection(x, y, halo_r_s, alpha_rs, p["x0"], p["y0"])
        ax, ay = ax + hx, ay + hy
    return ax, ay


def build_system(theta: torch.Tensor, npix: int, kernel: torch.Tensor, weight: torch.Tensor,
                 lam: torch.Tensor, source_radius: float | None = None,
                 halo_r_s: float | None = None) -> LinearSystem:
    """The inversion at lens/light parameters theta (B, P); differentiable in theta.

    With ``source_radius`` R the npix x npix source grid spans [-R, R] of the source plane (pixels
    R times the image's) and only its inscribed disk may be non-zero; without, it spans the field.
    """
    ax, ay = deflection(theta, npix, halo_r_s)
    x, y = normalised_grid(npix, dtype=theta.dtype, device=theta.device)
    extent = 1.0 if source_radius is None else float(source_radius)
    warp = BilinearWarp((x - ax) / extent, (y - ay) / extent, (npix, npix))
    support = None if source_radius is None else source_support(npix, 1.0, theta.dtype)
    sersic = sersic_basis(npix, theta[:, INDEX["x0"]], theta[:, INDEX["y0"]], theta[:, INDEX["light_e1"]],
                          theta[:, INDEX["light_e2"]], torch.exp(theta[:, INDEX["light_log_re"]]))
    b, k = sersic.shape[:2]
    convolved = convolve_same(sersic.reshape(b * k, npix, npix),
                              kernel if kernel.ndim == 2 else kernel.repeat_interleave(k, 0), "auto")
    # Peak-normalised columns keep the amplitudes on the scale of the data.
    convolved = convolved.view(b, k, npix, npix)
    convolved = convolved / convolved.amax(dim=(-1, -2), keepdim=True).detach()
    sky = torch.ones(b, 1, npix, npix, dtype=theta.dtype, device=theta.device)
    if support is not None:
        support = support.to(dtype=theta.dtype, device=theta.device)
    return LinearSystem(warp, kernel, torch.cat([convolved, sky], dim=1), weight, lam, support)
