"""The conditional forward operator F_Theta: lens warp (SIE + shear + NFW), PSF, background.

    F(x; Theta) = K * W(Theta) x + b_bg

with W the bilinear warp at beta = theta - alpha(theta; Theta) (``warp.BilinearWarp``), K the
global learned PSF (``psf.LearnedPSF``) or a given per-example kernel, and b_bg a global scalar
background.  The source and the image share one npix x npix grid spanning [-1, 1] (the half field
of view is the length unit; see :mod:`astrorim.params`).

Deflections use the lenstronomy conventions of :mod:`astrorim.physics`: 'SIE' (theta_E = b,
e1/e2 from q/phi), 'SHEAR' about the origin (ra_0 = dec_0 = 0, lenstronomy's default) and 'NFW' at
the SIE centre with alpha_Rs = 4 kappa_s r_s (1 + ln 1/2).  kappa_s = 0 (or a non-finite r_s, as
the simulator's truth tables give for "no halo") means no halo.

The adjoint is W^T K^T r: the exact transpose of the linear part (dot-product tests in
tests/test_model_forward.py).  All operator arithmetic runs in float32 (float64 when the inputs
are float64) with autocast disabled, so the model can run under bf16/fp16 autocast.

Noise is opt-in and never part of F: :func:`add_noise` draws a realisation of a noiseless model
image y (shot noise Poisson(gain y)/gain on the non-negative part, plus Gaussian read noise) from
an explicit ``torch.Generator``, and :func:`noise_variance` is its per-pixel variance
max(y, 0)/gain + read_sigma^2.  Training and the dot-product tests use the noiseless operator.
The simulator's detector model (:mod:`astrorim.sim.noise`) is not reused: it is numpy, draws
from a ``numpy.random.Generator``, works in electrons and adds sky, PRNU, CTI and cosmic rays.
"""

from __future__ import annotations

import torch
from torch import nn

from astrorim.model.grid import normalised_grid
from astrorim.model.psf import LearnedPSF, convolve_same, correlate_same
from astrorim.model.warp import BilinearWarp
from astrorim.params import NFW_ALPHA_RS_FACTOR, PARAMETER_NAMES
from astrorim.physics import nfw, shear, sie


def check_params(params: dict, batch: int | None = None) -> int:
    """Validate a dict of the nine (B,) parameter tensors; return B."""
    if not isinstance(params, dict):
        raise TypeError(f"params must be a dict of tensors, got {type(params).__name__}")
    missing = [n for n in PARAMETER_NAMES if n not in params]
    if missing:
        raise KeyError(f"params is missing {missing}; expected the nine names {list(PARAMETER_NAMES)}")
    for name in PARAMETER_NAMES:
        v = params[name]
        if not isinstance(v, torch.Tensor) or v.ndim != 1:
            raise ValueError(f"params[{name!r}] must be a (B,) tensor, got "
                             f"{tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__}")
        if batch is None:
            batch = v.shape[0]
        elif v.shape[0] != batch:
            raise ValueError(f"params[{name!r}] has batch {v.shape[0]}, expected {batch}")
    return int(batch)


def ellipticity_from_q_phi(q: torch.Tensor, phi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Torch version of :func:`astrorim.params.ellipticity_from_q_phi` (lenstronomy e1, e2)."""
    e = (1.0 - q) / (1.0 + q)
    return e * torch.cos(2.0 * phi), e * torch.sin(2.0 * phi)


def shear_components(gamma: torch.Tensor, gamma_phi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Torch version of :func:`astrorim.params.shear_components` (lenstronomy gamma1, gamma2)."""
    return gamma * torch.cos(2.0 * gamma_phi), gamma * torch.sin(2.0 * gamma_phi)


def nfw_alpha_rs(kappa_s: torch.Tensor, r_s: torch.Tensor) -> torch.Tensor:
    """Torch version of :func:`astrorim.params.nfw_alpha_rs` (deflection at r_s, unit of r_s)."""
    return NFW_ALPHA_RS_FACTOR * kappa_s * r_s


def _dtype_of(params: dict) -> torch.dtype:
    return torch.float64 if any(params[n].dtype == torch.float64 for n in PARAMETER_NAMES) \
        else torch.float32


def _check_noise_args(y: torch.Tensor, gain_e_per_unit, read_sigma) -> None:
    """ValueError naming the argument for a non-float y, gain <= 0 or NaN, read_sigma < 0 or
    non-finite.  gain = inf is allowed: infinitely many electrons per unit is no shot noise."""
    if not isinstance(y, torch.Tensor) or not y.is_floating_point():
        raise ValueError(f"y must be a floating-point tensor, got "
                         f"{y.dtype if isinstance(y, torch.Tensor) else type(y).__name__}")
    gain = torch.as_tensor(gain_e_per_unit, dtype=torch.float64)
    if bool((torch.isnan(gain) | (gain <= 0)).any()):
        raise ValueError(f"gain_e_per_unit must be > 0 (inf for no shot noise), got {gain_e_per_unit!r}")
    read = torch.as_tensor(read_sigma, dtype=torch.float64)
    if bool((~torch.isfinite(read) | (read < 0)).any()):
        raise ValueError(f"read_sigma must be finite and >= 0, got {read_sigma!r}")


def noise_variance(y: torch.Tensor, gain_e_per_unit, read_sigma) -> torch.Tensor:
    """Per-pixel variance [units^2] of :func:`add_noise`: max(y, 0) / gain + read_sigma^2.

    ``y`` is a noiseless model image in the operator's units (any shape, e.g. (B, npix, npix));
    ``gain_e_per_unit`` [e- per unit] (> 0, inf = no shot noise) and ``read_sigma`` [units]
    (>= 0) are floats or tensors broadcasting against ``y`` (e.g. (B, 1, 1) per example).
    """
    _check_noise_args(y, gain_e_per_unit, read_sigma)
    gain = torch.as_tensor(gain_e_per_unit, dtype=y.dtype, device=y.device)
    read = torch.as_tensor(read_sigma, dtype=y.dtype, device=y.device)
    return y.clamp(min=0) / gain + read**2


def add_noise(y: torch.Tensor, gain_e_per_unit, read_sigma, generator: torch.Generator) -> torch.Tensor:
    """One noisy realisation [units] of the noiseless model image ``y`` [units].

    Where y >= 0 the shot noise makes the value Poisson(gain y) / gain; negative pixels (a
    sky-subtracted background) carry no shot noise.  Gaussian read noise N(0, read_sigma^2) is
    added everywhere.  Arguments as in :func:`noise_variance`; ``generator`` must be on ``y``'s
    device, and the draw is a deterministic function of its state.  gain = inf with
    read_sigma = 0 returns ``y`` unchanged.  The noise is detached: gradients reach ``y`` as
    through the identity (exact for the read noise, straight-through for the shot noise).
    """
    _check_noise_args(y, gain_e_per_unit, read_sigma)
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if generator.device.type != y.device.type:
        raise ValueError(f"generator is on {generator.device}, but y is on {y.device}")
    with torch.no_grad(), torch.autocast(device_type=y.device.type, enabled=False):
        gain = torch.as_tensor(gain_e_per_unit, dtype=y.dtype, device=y.device)
        read = torch.as_tensor(read_sigma, dtype=y.dtype, device=y.device)
        shot = torch.isfinite(gain)
        # A stand-in gain of 1 where gain = inf keeps inf * 0 = NaN out of the Poisson rate.
        safe_gain = torch.where(shot, gain, torch.ones_like(gain))
        rate_e = torch.where(shot, y.detach().clamp(min=0) * safe_gain, torch.zeros_like(y))
        shot_noise = (torch.poisson(rate_e, generator=generator) - rate_e) / safe_gain
        read_noise = read * torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)
    return y + (shot_noise + read_noise)


class BoundForwardOperator:
    """F_Theta for one batch of parameters: the warp and PSF kernel are built once, reused by
    every RIM iteration.  ``linear`` = K * W x, ``forward`` = linear + background,
    ``adjoint`` = W^T K^T r (transpose of ``linear``); ``noisy_forward`` is the opt-in noisy
    observation of ``forward``."""

    def __init__(self, warp: BilinearWarp, kernel: torch.Tensor, background: torch.Tensor,
                 method: str):
        self.warp = warp
        self.kernel = kernel
        self.background = background
        self.method = method

    @property
    def dtype(self) -> torch.dtype:
        return self.warp.dtype

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            return convolve_same(self.warp.apply(x.to(self.dtype)), self.kernel, self.method)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + self.background

    __call__ = forward

    def adjoint(self, r: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=r.device.type, enabled=False):
            return self.warp.transpose(correlate_same(r.to(self.dtype), self.kernel, self.method))

    def noisy_forward(self, x: torch.Tensor, gain_e_per_unit, read_sigma,
                      generator: torch.Generator) -> torch.Tensor:
        """One noisy observation of F(x): :func:`add_noise` applied to ``forward(x)``."""
        return add_noise(self.forward(x), gain_e_per_unit, read_sigma, generator)


class ConditionalForwardOperator(nn.Module):
    """Lens warp + PSF + background, conditioned on per-example lens parameters.

    Parameters
    ----------
    npix:
        Image and source grid size (square).
    psf_fwhm_pix, psf_beta, psf_kernel_size, psf_method:
        Initial global Moffat FWHM [pix] and beta, kernel size and convolution method.
    background:
        Initial global background (in the normalised flux units the model sees).
    include_nfw:
        Whether the NFW term is evaluated at all (with it, kappa_s = 0 still means no halo).
    """

    def __init__(self, npix: int = 96, psf_fwhm_pix: float = 2.5, psf_beta: float = 4.0,
                 psf_kernel_size: int = 21, psf_method: str = "auto", background: float = 0.0,
                 include_nfw: bool = True):
        super().__init__()
        self.npix = int(npix)
        self.include_nfw = bool(include_nfw)
        self.psf = LearnedPSF(psf_fwhm_pix, psf_beta, psf_kernel_size, psf_method)
        # A signed scalar: sky-subtracted images have a zero (or slightly negative) background.
        self.background = nn.Parameter(torch.tensor(float(background)))

    def deflection(self, params: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Total deflection (alpha_x, alpha_y), each (B, npix, npix), in normalised units."""
        check_params(params)
        dtype = _dtype_of(params)
        device = params["b"].device
        with torch.autocast(device_type=device.type, enabled=False):
            p = {n: params[n].to(dtype).view(-1, 1, 1) for n in PARAMETER_NAMES}
            x, y = normalised_grid(self.npix, dtype=dtype, device=device)
            x, y = x.unsqueeze(0), y.unsqueeze(0)
            e1, e2 = ellipticity_from_q_phi(p["q"], p["phi"])
            ax, ay = sie.deflection(x, y, p["b"], e1, e2, p["x0"], p["y0"])
            g1, g2 = shear_components(p["gamma"], p["gamma_phi"])
            sx, sy = shear.deflection(x, y, g1, g2)
            ax, ay = ax + sx, ay + sy
            if self.include_nfw:
                kappa_s, r_s = p["kappa_s"], p["r_s"]
                halo = (kappa_s != 0) & torch.isfinite(r_s) & (r_s > 0) & torch.isfinite(kappa_s)
                # Safe stand-ins where there is no halo keep NaN out of values and gradients.
                r_s = torch.where(halo, r_s, torch.ones_like(r_s))
                kappa_s = torch.where(halo, kappa_s, torch.zeros_like(kappa_s))
                nx, ny = nfw.deflection(x, y, r_s, nfw_alpha_rs(kappa_s, r_s), p["x0"], p["y0"])
                ax, ay = ax + nx, ay + ny
        return ax, ay

    def bind(self, params: dict, psf_kernel: torch.Tensor | None = None) -> BoundForwardOperator:
        """The operator for these parameters; ``psf_kernel`` ((K, K) or (B, K, K), odd K)
        replaces the learned PSF (e.g. the simulator's true per-example kernel)."""
        batch = check_params(params)
        ax, ay = self.deflection(params)
        x, y = normalised_grid(self.npix, dtype=ax.dtype, device=ax.device)
        op_warp = BilinearWarp(x - ax, y - ay, (self.npix, self.npix))
        if psf_kernel is None:
            kernel = self.psf.kernel(ax.dtype)
        else:
            if psf_kernel.ndim == 3 and psf_kernel.shape[0] != batch:
                raise ValueError(f"psf_kernel has batch {psf_kernel.shape[0]}, params have {batch}")
            kernel = psf_kernel.to(dtype=ax.dtype, device=ax.device)
        return BoundForwardOperator(op_warp, kernel, self.background.to(ax.dtype), self.psf.method)

    def forward(self, x: torch.Tensor, params: dict, psf_kernel: torch.Tensor | None = None) -> torch.Tensor:
        """F(x) = K * W x + background for sources x (B, npix, npix)."""
        return self.bind(params, psf_kernel).forward(x)

    def linear_forward(self, x: torch.Tensor, params: dict,
                       psf_kernel: torch.Tensor | None = None) -> torch.Tensor:
        """K * W x (no background): the linear part whose transpose is :meth:`adjoint`."""
        return self.bind(params, psf_kernel).linear(x)

    def adjoint(self, r: torch.Tensor, params: dict, psf_kernel: torch.Tensor | None = None) -> torch.Tensor:
        """W^T K^T r for image-plane arrays r (B, npix, npix)."""
        return self.bind(params, psf_kernel).adjoint(r)
