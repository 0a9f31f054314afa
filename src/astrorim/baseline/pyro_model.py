"""The probabilistic model of paper 003 (§4, §5.2) in Pyro.

    Theta_lens ~ eqs. 18-23,  (x_src, y_src, s, iota) ~ eqs. 14-16,  z ~ N(mu_z, 9 Sigma_z) (§2.1)
    I_obs ~ N(PSF * I_src(theta - alpha(theta)), sigma_noise)   independently per pixel (eq. 9)

with the supports of :mod:`astrorim.baseline.priors`.  The latent z is sampled in whitened form,
``z_white ~ N(0, I)`` and z = mu_z + L z_white (L L^T = 9 Sigma_z), which is the same distribution;
it gives HMC and Adam an isotropic latent space instead of the fitted covariance's elongated one.
``z`` itself is recorded as a deterministic site.

Every site sits inside ``pyro.plate('starts', n_starts)``: n_starts independent copies of the model
share one batched forward pass, which is how multi-start MAP is batched (``n_starts = 1`` for NUTS).
The plate also batches over lens systems: with ``obs`` of shape (n_starts, H, W) and one noise sigma per
plate element, element b is a fit of its own image ``obs[b]`` (:func:`astrorim.baseline.map_fit.run_map_batch`).
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch

from astrorim.baseline.forward import LensingForward
from astrorim.baseline.latent_prior import LatentPrior
from astrorim.baseline.priors import LATENT_SITE, PRIORS, PriorSpec

OBS_SITE = "obs"
PLATE = "starts"


class LensingModel:
    """Callable Pyro model ``model(obs=None, n_starts=1)``.

    ``obs`` is None, one (H, W) image shared by every plate element, or (n_starts, H, W): one image per
    element.  ``noise_sigma`` is the per-pixel noise sd in the image's unit: one value, or one per plate
    element (a sequence of n_starts values, each with its element's image).
    """

    def __init__(self, forward: LensingForward, latent_prior: LatentPrior,
                 noise_sigma: float | Sequence[float] | torch.Tensor, priors: dict[str, PriorSpec] = PRIORS):
        sigma = torch.as_tensor(noise_sigma, dtype=torch.float32)
        if sigma.ndim > 1 or sigma.numel() == 0 or not bool(torch.all(sigma > 0)):
            raise ValueError(f"noise_sigma must be one value or a 1-d sequence of values > 0, got {noise_sigma}")
        self.forward = forward
        self.latent_prior = latent_prior
        # one value stays a Python float, unrounded to float32, as the likelihood has always used it
        self.noise_sigma = float(noise_sigma) if sigma.ndim == 0 else sigma
        self.priors = dict(priors)
        self._prior_dists = {name: spec.distribution() for name, spec in self.priors.items()}

    @property
    def latent_dim(self) -> int:
        return self.latent_prior.dim

    def __call__(self, obs: torch.Tensor | None = None, n_starts: int = 1):
        with pyro.plate(PLATE, n_starts, dim=-1):
            p = {name: pyro.sample(name, d) for name, d in self._prior_dists.items()}
            white = pyro.sample(LATENT_SITE, dist.Normal(torch.zeros(self.latent_dim), 1.0).to_event(1))
            z = pyro.deterministic("z", self.latent_prior.latent_from_white(white), event_dim=1)
            pred = self.forward(p, z)
            if obs is not None:
                if obs.ndim == 3 and obs.shape[0] != n_starts:
                    raise ValueError(f"obs holds {obs.shape[0]} images for {n_starts} plate elements")
                obs = obs.to(pred.dtype).expand(pred.shape)
            pyro.sample(OBS_SITE, dist.Normal(pred, self._sigma(n_starts)).to_event(2), obs=obs)
        return pred

    def _sigma(self, n_starts: int) -> float | torch.Tensor:
        if isinstance(self.noise_sigma, float):
            return self.noise_sigma
        if self.noise_sigma.shape[0] != n_starts:
            raise ValueError(f"the model has {self.noise_sigma.shape[0]} noise sigmas for {n_starts} plate elements")
        return self.noise_sigma[:, None, None]


def log_joint(model: LensingModel, obs: torch.Tensor, values: dict[str, torch.Tensor]) -> torch.Tensor:
    """log p(obs, values) per start, (B,), with every latent site fixed to ``values`` (constrained)."""
    n = next(iter(values.values())).shape[0]
    conditioned = pyro.poutine.condition(model, data={k: v for k, v in values.items() if k != "z"})
    with torch.no_grad():
        trace = pyro.poutine.trace(conditioned).get_trace(obs, n)
    trace.compute_log_prob()
    total = torch.zeros(n)
    for site in trace.nodes.values():
        if site["type"] == "sample":  # deterministic sites are masked: their log_prob is 0
            total = total + site["log_prob"].detach()
    return total
