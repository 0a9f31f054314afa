"""A truncated normal distribution for Pyro (pyro-ppl 1.9 ships none).

density(x) = N(x | loc, scale) / (Phi(b) - Phi(a)) on [low, high], with a = (low - loc)/scale and
b = (high - loc)/scale.  Its support is ``constraints.interval(low, high)``, so Pyro's HMC/NUTS and
AutoDelta work in the unconstrained space given by ``biject_to`` (a scaled sigmoid).  Sampling is by
inverse CDF (reparameterised).
"""

from __future__ import annotations

import math

import torch
from pyro.distributions import TorchDistribution, constraints
from torch.distributions.utils import broadcast_all

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


class TruncatedNormal(TorchDistribution):
    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    has_rsample = True

    def __init__(self, loc, scale, low, high, validate_args=None):
        self.loc, self.scale, self.low, self.high = broadcast_all(loc, scale, low, high)
        if validate_args is not False and bool(torch.any(self.low >= self.high)):
            raise ValueError(f"TruncatedNormal needs low < high, got low={self.low}, high={self.high}")
        self._a = (self.low - self.loc) / self.scale
        self._b = (self.high - self.loc) / self.scale
        self._phi_a = torch.special.ndtr(self._a)
        self._log_mass = torch.log(torch.special.ndtr(self._b) - self._phi_a)
        super().__init__(self.loc.shape, torch.Size(), validate_args=validate_args)

    @constraints.dependent_property(is_discrete=False, event_dim=0)
    def support(self):
        return constraints.interval(self.low, self.high)

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        return TruncatedNormal(self.loc.expand(batch_shape), self.scale.expand(batch_shape),
                               self.low.expand(batch_shape), self.high.expand(batch_shape),
                               validate_args=False)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        y = (value - self.loc) / self.scale
        return -0.5 * y * y - _LOG_SQRT_2PI - torch.log(self.scale) - self._log_mass

    def rsample(self, sample_shape=torch.Size()):
        shape = self._extended_shape(sample_shape)
        u = torch.rand(shape, dtype=self.loc.dtype, device=self.loc.device)
        p = self._phi_a + u * torch.exp(self._log_mass)
        x = self.loc + self.scale * torch.special.ndtri(p.clamp(1e-12, 1 - 1e-12))
        return torch.minimum(torch.maximum(x, self.low), self.high)

    @property
    def mean(self):
        phi_a = torch.exp(-0.5 * self._a ** 2 - _LOG_SQRT_2PI)
        phi_b = torch.exp(-0.5 * self._b ** 2 - _LOG_SQRT_2PI)
        return self.loc + self.scale * (phi_a - phi_b) / torch.exp(self._log_mass)
