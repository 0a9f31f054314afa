"""AstroRIM: LensParameterEncoder + conditional forward operator + RIM, and its configuration.

The model works in normalised flux units (``astrorim.model.normalisation``): ``forward`` takes
observations already divided by their per-example scale and returns sources in the same units.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from torch import nn

from astrorim.model.encoder import ENCODER_HEADS, LensParameterEncoder
from astrorim.model.forward import ConditionalForwardOperator
from astrorim.model.rim import RIM, estimate_noise_sigma


@dataclass(frozen=True)
class AstroRIMConfig:
    """Architecture of an AstroRIM model (stored in checkpoints; see docs/model.md)."""

    npix: int = 96
    n_iter: int = 10
    encoder_channels: tuple[int, ...] = (32, 64, 96, 128)
    encoder_pool: int = 3
    encoder_hidden: tuple[int, int] = (128, 64)
    rim_channels: tuple[int, int] = (32, 64)
    rim_hidden: int = 64
    rim_fine_hidden: int = 16
    psf_fwhm_pix: float = 2.5
    psf_beta: float = 4.0
    psf_kernel_size: int = 21
    psf_method: str = "auto"
    background: float = 0.0
    include_nfw: bool = True
    noise_border_pix: int | None = None
    encoder_initial_values: dict = field(default_factory=dict)
    # "components" (Cartesian heads with sigmas, checkpoint format_version 2) or "periodic" (the paper's
    # bounded heads; every format_version 1 checkpoint).  docs/deviations.md, "Encoder heads".
    encoder_heads: str = "components"

    def __post_init__(self):
        if self.encoder_heads not in ENCODER_HEADS:
            raise ValueError(f"encoder_heads must be one of {sorted(ENCODER_HEADS)}, got {self.encoder_heads!r}")
        if self.encoder_heads == "components" and self.encoder_initial_values:
            raise ValueError("encoder_initial_values only applies to encoder_heads: periodic")
        if self.npix < 16 or self.npix % 16:
            raise ValueError(f"npix must be a multiple of 16 (four 2x poolings), got {self.npix}")
        if self.n_iter < 1:
            raise ValueError(f"n_iter must be >= 1, got {self.n_iter}")
        for name in ("encoder_channels", "encoder_hidden", "rim_channels"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        if len(self.encoder_channels) != 4 or any(c % 8 for c in self.encoder_channels):
            raise ValueError(f"encoder_channels must be four multiples of 8 (GroupNorm(8)), "
                             f"got {self.encoder_channels}")
        if len(self.encoder_hidden) != 2 or len(self.rim_channels) != 2:
            raise ValueError(f"encoder_hidden and rim_channels need two widths each, got "
                             f"{self.encoder_hidden} and {self.rim_channels}")
        if self.psf_kernel_size % 2 != 1:
            raise ValueError(f"psf_kernel_size must be odd, got {self.psf_kernel_size}")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "AstroRIMConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown AstroRIM config keys {unknown}; known: {sorted(known)}")
        return cls(**d)


class AstroRIM(nn.Module):
    """Encoder -> per-example forward operator -> RIM."""

    def __init__(self, config: AstroRIMConfig | dict | None = None):
        super().__init__()
        if config is None:
            config = AstroRIMConfig()
        elif isinstance(config, dict):
            config = AstroRIMConfig.from_dict(config)
        self.config = config
        if config.encoder_heads == "periodic":
            self.encoder = LensParameterEncoder(config.encoder_channels, config.encoder_pool,
                                                config.encoder_hidden,
                                                initial_values=config.encoder_initial_values)
        else:
            self.encoder = ENCODER_HEADS[config.encoder_heads](config.encoder_channels, config.encoder_pool,
                                                               config.encoder_hidden)
        self.forward_operator = ConditionalForwardOperator(
            npix=config.npix, psf_fwhm_pix=config.psf_fwhm_pix, psf_beta=config.psf_beta,
            psf_kernel_size=config.psf_kernel_size, psf_method=config.psf_method,
            background=config.background, include_nfw=config.include_nfw)
        self.rim = RIM(config.n_iter, config.rim_channels, config.rim_hidden, config.rim_fine_hidden)

    def forward(self, y: torch.Tensor, noise_sigma: torch.Tensor | None = None,
                n_iter: int | None = None, psf_kernel: torch.Tensor | None = None) -> dict:
        """Reconstruct sources from normalised observations y (B, npix, npix).

        noise_sigma: (B,) noise standard deviation in the units of y, or None to estimate it from
        the image border.  psf_kernel: optional (K, K) or (B, K, K) kernel replacing the learned PSF.
        Returns dict(params={name: (B,)}, iterates=[x_1..x_T], source=x_T, noise_sigma=(B,)); with
        ``encoder_heads: components`` also components={name: (B,)} and components_sigma={name: (B,)}
        (:data:`astrorim.model.encoder.COMPONENT_NAMES`, normalised units, 1-sigma).
        """
        n = self.config.npix
        if y.ndim != 3 or y.shape[-2:] != (n, n):
            raise ValueError(f"observations must be (B, {n}, {n}), got {tuple(y.shape)}")
        if noise_sigma is None:
            noise_sigma = estimate_noise_sigma(y, self.config.noise_border_pix)
        else:
            noise_sigma = torch.as_tensor(noise_sigma, dtype=torch.float32, device=y.device).reshape(-1)
            if noise_sigma.shape[0] != y.shape[0]:
                raise ValueError(f"noise_sigma has {noise_sigma.shape[0]} values for {y.shape[0]} images")
        extra = {}
        if hasattr(self.encoder, "predict"):
            params, extra["components"], extra["components_sigma"] = self.encoder.predict(y)
        else:
            params = self.encoder(y)
        op = self.forward_operator.bind(params, psf_kernel)
        iterates = self.rim(y, op, noise_sigma, n_iter)
        return {"params": params, "iterates": iterates, "source": iterates[-1],
                "noise_sigma": noise_sigma, **extra}


def count_parameters(model: AstroRIM) -> dict[str, int]:
    """Trainable parameter counts by component, plus 'total'."""
    def n(module_or_param) -> int:
        if isinstance(module_or_param, nn.Parameter):
            return module_or_param.numel()
        return sum(p.numel() for p in module_or_param.parameters())

    counts = {"encoder": n(model.encoder), "psf": n(model.forward_operator.psf),
              "background": n(model.forward_operator.background), "rim": n(model.rim)}
    counts["total"] = sum(p.numel() for p in model.parameters())
    if counts["total"] != sum(v for k, v in counts.items() if k != "total"):
        raise AssertionError("parameter count by component does not add up to the total")
    return counts
