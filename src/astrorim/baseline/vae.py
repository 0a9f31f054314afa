"""The source VAE of paper 003 (§2, Appendix D, Tables D1-D2) and its ELBO.

Encoder (Table D1), for 1 x 64 x 64 images, with ``width`` = 64 in the paper:

    Conv2d(1, w, 4, 2, 1)               LeakyReLU(0.2)                 -> w  x 32 x 32
    Conv2d(w, 2w, 4, 2, 1)  BatchNorm   LeakyReLU(0.2)                 -> 2w x 16 x 16
    Conv2d(2w, 4w, 4, 2, 1) BatchNorm   LeakyReLU(0.2)                 -> 4w x 8 x 8
    Conv2d(4w, 8w, 4, 2, 1) BatchNorm   LeakyReLU(0.2)                 -> 8w x 4 x 4
    Conv2d(8w, 64w, 4, 1, 0)            LeakyReLU(0.2)                 -> 64w (= 4096 at w = 64)
    Linear(64w, latent) -> mu_e ;  Linear(64w, latent) -> Exp -> sigma_e

Decoder (Table D2): z reshaped to (latent, 1, 1), then

    ConvTranspose2d(latent, 8w, 4, 1, 0) BN ReLU -> 8w x 4 x 4
    ConvTranspose2d(8w, 4w, 4, 2, 1)     BN ReLU -> 4w x 8 x 8
    ConvTranspose2d(4w, 2w, 4, 2, 1)     BN ReLU -> 2w x 16 x 16
    ConvTranspose2d(2w, w, 4, 2, 1)      BN ReLU -> w x 32 x 32
    ConvTranspose2d(w, 1, 4, 2, 1)       Tanh    -> 1 x 64 x 64 = mu_d(z) in [-1, 1]

All convolutions are unbiased (Table D1 caption).  ``width`` < 64 gives the same topology with fewer
channels (used only by the quick configuration).  Weights: the paper says "initialized to 0.02"; we
read that as the DCGAN convention, N(0, 0.02) for convolution and linear weights and N(1, 0.02) for
BatchNorm scales, with zero biases (the final linear biases are zero as the paper states).

ELBO (eq. 4) per image, in nats, with decoder d(x|z) = N(x | mu_d(z), sigma_d) (eq. 1) and the
standard normal p(z):

    ELBO(x) = E_{e(z|x)} [log N(x | mu_d(z), sigma_d)] - KL[N(mu_e, sigma_e) || N(0, I)],

the expectation estimated with ``particles`` reparameterised samples (Appendix C) and the KL term in
closed form.  Training therefore uses plain torch (see :mod:`astrorim.baseline.train_vae`), not Pyro
SVI: the objective is the same as Pyro's ``TraceMeanField_ELBO`` for this model.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

IMAGE_SIZE = 64


@dataclass(frozen=True)
class VAEConfig:
    """Architecture hyper-parameters (Tables D1-D2: width 64, latent 64; sigma_d = 1/50, §2.1)."""

    latent_dim: int = 64
    width: int = 64
    decoder_sigma: float = 0.02

    def __post_init__(self):
        if self.latent_dim < 1 or self.width < 1:
            raise ValueError(f"latent_dim and width must be positive, got {self.latent_dim}, {self.width}")
        if not self.decoder_sigma > 0:
            raise ValueError(f"decoder_sigma must be > 0, got {self.decoder_sigma}")

    def to_dict(self) -> dict:
        return asdict(self)


class Encoder(nn.Module):
    """Table D1: (B, 1, 64, 64) images -> (mu_e, sigma_e), each (B, latent_dim)."""

    def __init__(self, latent_dim: int = 64, width: int = 64):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(1, w, 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2),
            nn.Conv2d(w, 2 * w, 4, 2, 1, bias=False),
            nn.BatchNorm2d(2 * w),
            nn.LeakyReLU(0.2),
            nn.Conv2d(2 * w, 4 * w, 4, 2, 1, bias=False),
            nn.BatchNorm2d(4 * w),
            nn.LeakyReLU(0.2),
            nn.Conv2d(4 * w, 8 * w, 4, 2, 1, bias=False),
            nn.BatchNorm2d(8 * w),
            nn.LeakyReLU(0.2),
            nn.Conv2d(8 * w, 64 * w, 4, 1, 0, bias=False),
            nn.LeakyReLU(0.2),
        )
        self.mean = nn.Linear(64 * w, latent_dim)
        self.log_sigma = nn.Linear(64 * w, latent_dim)  # its Exp (Table D1) is taken by VAE.encode

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 1, 64, 64) images -> (mu_e, log sigma_e); the log, because sigma_e underflows float32 (to 0 below
        log sigma_e = -104) once the encoder is sure of a latent, and the ELBO's KL term needs its log."""
        if x.ndim != 4 or x.shape[1:] != (1, IMAGE_SIZE, IMAGE_SIZE):
            raise ValueError(f"encoder input must be (B, 1, {IMAGE_SIZE}, {IMAGE_SIZE}), got {tuple(x.shape)}")
        h = self.features(x).flatten(1)
        return self.mean(h), self.log_sigma(h)


class Decoder(nn.Module):
    """Table D2: (B, latent_dim) -> mu_d(z) of shape (B, 64, 64), values in [-1, 1]."""

    def __init__(self, latent_dim: int = 64, width: int = 64):
        super().__init__()
        w = width
        self.latent_dim = latent_dim
        self.net = nn.Sequential(
            nn.ConvTranspose2d(latent_dim, 8 * w, 4, 1, 0, bias=False),
            nn.BatchNorm2d(8 * w),
            nn.ReLU(),
            nn.ConvTranspose2d(8 * w, 4 * w, 4, 2, 1, bias=False),
            nn.BatchNorm2d(4 * w),
            nn.ReLU(),
            nn.ConvTranspose2d(4 * w, 2 * w, 4, 2, 1, bias=False),
            nn.BatchNorm2d(2 * w),
            nn.ReLU(),
            nn.ConvTranspose2d(2 * w, w, 4, 2, 1, bias=False),
            nn.BatchNorm2d(w),
            nn.ReLU(),
            nn.ConvTranspose2d(w, 1, 4, 2, 1, bias=False),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"decoder input must be (B, {self.latent_dim}), got {tuple(z.shape)}")
        return self.net(z[:, :, None, None]).squeeze(1)


def init_weights(module: nn.Module) -> None:
    """DCGAN-style initialisation (Appendix D 'weights initialized to 0.02'; see module docstring)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class VAE(nn.Module):
    """Encoder + decoder + fixed decoder noise sigma_d (eq. 1)."""

    def __init__(self, config: VAEConfig = VAEConfig()):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config.latent_dim, config.width)
        self.decoder = Decoder(config.latent_dim, config.width)
        init_weights(self)

    @property
    def decoder_sigma(self) -> float:
        return float(self.config.decoder_sigma)

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 64, 64) images -> (mu_e, sigma_e)."""
        mu, log_sigma = self.encode_log_sigma(images)
        return mu, torch.exp(log_sigma)

    def encode_log_sigma(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 64, 64) images -> (mu_e, log sigma_e)."""
        return self.encoder(images.unsqueeze(1))

    def reconstruct(self, images: torch.Tensor, sample: bool = True,
                    generator: torch.Generator | None = None) -> torch.Tensor:
        """mu_d(z) with z ~ e(z|x) (``sample``, as in the paper's Fig. 2) or z = mu_e(x)."""
        mu, sigma = self.encode(images)
        if sample:
            eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype).to(mu.device)
            mu = mu + sigma * eps
        return self.decoder(mu)


def gaussian_kl_to_standard(mu: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """KL[N(mu, diag sigma^2) || N(0, I)] per row [nats], from log sigma: log(exp(log sigma)) is -inf, and the
    KL infinite, once sigma underflows (the width-64 VAE's encoder got there in its 16th epoch)."""
    return 0.5 * (mu.pow(2) + torch.exp(2.0 * log_sigma) - 1.0 - 2.0 * log_sigma).sum(-1)


def elbo(vae: VAE, images: torch.Tensor, particles: int = 1,
         generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-image ELBO (eq. 4) [nats], shape (B,), for (B, 64, 64) images."""
    if particles < 1:
        raise ValueError(f"particles must be >= 1, got {particles}")
    mu, log_sigma = vae.encode_log_sigma(images)
    sigma = torch.exp(log_sigma)
    b, d = mu.shape
    # drawn by the (CPU) generator, then moved: the same noise on every device
    eps = torch.randn((particles, b, d), generator=generator, dtype=mu.dtype).to(mu.device)
    z = (mu + sigma * eps).reshape(particles * b, d)
    recon = vae.decoder(z).reshape(particles, b, *images.shape[-2:])
    s = vae.decoder_sigma
    n_pix = images.shape[-1] * images.shape[-2]
    log_lik = (-0.5 * ((images - recon) / s).pow(2).sum((-1, -2))
               - n_pix * (math.log(s) + 0.5 * math.log(2.0 * math.pi)))
    return log_lik.mean(0) - gaussian_kl_to_standard(mu, log_sigma)
