"""The weakly informative latent prior of paper 003 §2.1.

A multivariate normal fitted to the encoded means {mu_e(x_i)} of the training images (sample mean and
maximum-likelihood covariance), with the covariance multiplied by ``cov_factor`` = 9 (i.e. 3x the
standard deviation along every principal axis).  A relative jitter of ``1e-6 * trace / d`` is added to
the diagonal before the factor so that the Cholesky factor exists even for a degenerate fit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from astrorim.baseline.vae import VAE

PAPER_COV_FACTOR = 9.0


@dataclass
class LatentPrior:
    """N(mean, cov) over the VAE latent space; ``scale_tril`` is the Cholesky factor of ``cov``."""

    mean: torch.Tensor
    cov: torch.Tensor
    cov_factor: float

    def __post_init__(self):
        self.mean = torch.as_tensor(self.mean, dtype=torch.float32)
        self.cov = torch.as_tensor(self.cov, dtype=torch.float32)
        d = self.mean.shape[-1]
        if self.mean.ndim != 1 or self.cov.shape != (d, d):
            raise ValueError(f"latent prior needs mean (d,) and cov (d, d); got {tuple(self.mean.shape)}, "
                             f"{tuple(self.cov.shape)}")
        self.scale_tril = torch.linalg.cholesky(self.cov.double()).float()

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    def latent_from_white(self, white: torch.Tensor) -> torch.Tensor:
        """z = mean + L eps for whitened eps (..., d): a N(0, I) eps gives z ~ N(mean, cov)."""
        return self.mean + white @ self.scale_tril.T

    def white_from_latent(self, z: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`latent_from_white`."""
        rhs = (z - self.mean).reshape(-1, self.dim).T
        eps = torch.linalg.solve_triangular(self.scale_tril, rhs, upper=False).T
        return eps.reshape(z.shape)

    def state_dict(self) -> dict:
        return {"mean": self.mean.clone(), "cov": self.cov.clone(), "cov_factor": float(self.cov_factor)}

    @classmethod
    def from_state_dict(cls, state: dict) -> "LatentPrior":
        return cls(state["mean"], state["cov"], float(state["cov_factor"]))


def fit_latent_prior(encoded_means: np.ndarray | torch.Tensor, cov_factor: float = PAPER_COV_FACTOR) -> LatentPrior:
    """Fit N(mean, cov_factor * cov) to (N, d) encoded means (maximum-likelihood covariance, 1/N)."""
    mu = torch.as_tensor(encoded_means, dtype=torch.float64)
    if mu.ndim != 2 or mu.shape[0] < 2:
        raise ValueError(f"need (N >= 2, d) encoded means, got {tuple(mu.shape)}")
    if not cov_factor > 0:
        raise ValueError(f"cov_factor must be > 0, got {cov_factor}")
    mean = mu.mean(0)
    centred = mu - mean
    cov = centred.T @ centred / mu.shape[0]
    d = cov.shape[0]
    cov = cov + torch.eye(d, dtype=cov.dtype) * (1e-6 * float(torch.trace(cov)) / d + 1e-12)
    return LatentPrior(mean.float(), (cov * cov_factor).float(), float(cov_factor))


@torch.no_grad()
def encode_means(vae: VAE, images: np.ndarray | torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """mu_e(x) of (N, 64, 64) images, encoder in eval mode."""
    was_training = vae.training
    vae.eval()
    x = torch.as_tensor(np.asarray(images, dtype=np.float32))
    out = torch.cat([vae.encode(x[i:i + batch_size])[0] for i in range(0, len(x), batch_size)])
    vae.train(was_training)
    return out
