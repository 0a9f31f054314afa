"""Lens-parameter encoders: observed image -> the nine lens parameters of :mod:`astrorim.params`.

Two head sets share one backbone (``AstroRIMConfig.encoder_heads`` selects):

* :class:`LensParameterEncoder` ("periodic", paper section 3.1.2, eq. 7-15): nine bounded heads, the angles
  phi and gamma_phi as pi tanh heads.  Checkpoints of format_version 1 hold this encoder.
* :class:`ComponentEncoder` ("components", the default since checkpoint format_version 2; a deliberate
  deviation, docs/deviations.md): Cartesian components without wrap-around -- log b, (e1, e2), x0, y0,
  (gamma1, gamma2), kappa_s, log r_s -- each with a log-sigma head (heteroscedastic Gaussian); q, phi,
  gamma, gamma_phi, b and r_s are derived, so ``forward`` still returns the nine parameters.

Backbone: four stages Conv3x3 -> GroupNorm(8) -> ReLU -> MaxPool2x2 with 32, 64, 96, 128 channels,
adaptive average pooling to ``pool_size`` x ``pool_size``, FC -> 128 -> 64 with ReLU, then one linear
head per parameter.  A 96 px input leaves a 6 x 6 map after four poolings; we pool it to 3 x 3
(the paper's 8 x 8 would up-sample 6 x 6 and costs 1.05M weights in the first FC layer alone, which
does not fit the ~350k the paper quotes; 3 x 3 gives ~342k).

Heads map onto :data:`astrorim.params.ENCODER_BOUNDS`: ``low + (high - low) sigmoid(z)`` for linear
bounds (for the symmetric angle bounds this is pi tanh(z/2)), and the same in log space for
``log=True`` bounds (b, r_s).  Head biases start at :data:`DEFAULT_INITIAL_VALUES` and head weights
are scaled down so that an untrained encoder predicts mild, typical lenses.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from astrorim.params import ENCODER_BOUNDS, PARAMETER_NAMES, ParameterBound

# b = 0.5 is theta_E = 0.96" at 0.04"/pix (96 px) -- inside the 0.9-1.5" v1 range in normalised
# units 0.47-0.78 -- and theta_E = 4.8" at 0.20"/pix; q = 0.7 as the paper; no NFW-like mass
# sheet to start (kappa_s = 0.02, r_s = 2).
DEFAULT_INITIAL_VALUES: dict[str, float] = {
    "b": 0.5, "q": 0.7, "phi": 0.0, "x0": 0.0, "y0": 0.0, "gamma": 0.05, "gamma_phi": 0.0,
    "kappa_s": 0.02, "r_s": 2.0,
}
HEAD_WEIGHT_SCALE = 0.1


def _unit_interval_position(value: float, bound: ParameterBound) -> float:
    if not bound.low < value < bound.high:
        raise ValueError(f"initial value {value} is not strictly inside the bounds "
                         f"[{bound.low}, {bound.high}]")
    if bound.log:
        return (math.log(value) - math.log(bound.low)) / (math.log(bound.high) - math.log(bound.low))
    return (value - bound.low) / (bound.high - bound.low)


def _backbone(channels, pool_size: int, hidden, groups: int) -> tuple[nn.Module, nn.Module, nn.Module]:
    """Four Conv3x3-GroupNorm-ReLU-MaxPool stages, adaptive average pooling, two FC layers (shared by both
    head sets; module names kept so that format_version 1 checkpoints load unchanged)."""
    layers: list[nn.Module] = []
    cin = 1
    for cout in channels:
        layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(groups, cout),
                   nn.ReLU(inplace=True), nn.MaxPool2d(2)]
        cin = cout
    fc = nn.Sequential(nn.Flatten(), nn.Linear(cin * pool_size * pool_size, hidden[0]),
                       nn.ReLU(inplace=True), nn.Linear(hidden[0], hidden[1]), nn.ReLU(inplace=True))
    return nn.Sequential(*layers), nn.AdaptiveAvgPool2d(pool_size), fc


def bounded(z: torch.Tensor, bound: ParameterBound) -> torch.Tensor:
    """Map an unconstrained head output onto ``bound``."""
    s = torch.sigmoid(z)
    if bound.log:
        lo, hi = math.log(bound.low), math.log(bound.high)
        return torch.exp(lo + (hi - lo) * s)
    return bound.low + (bound.high - bound.low) * s


class LensParameterEncoder(nn.Module):
    """CNN predicting the nine lens parameters from a normalised observation (the paper's periodic heads).

    Parameters
    ----------
    channels:
        Output channels of the four conv stages.
    pool_size:
        Side of the adaptive average pooling before the FC layers.
    hidden:
        Widths of the two FC layers.
    initial_values:
        Parameter values the untrained heads are centred on (defaults above).
    """

    heads_kind = "periodic"

    def __init__(self, channels: tuple[int, ...] = (32, 64, 96, 128), pool_size: int = 3,
                 hidden: tuple[int, int] = (128, 64), groups: int = 8,
                 initial_values: dict[str, float] | None = None):
        super().__init__()
        self.backbone, self.pool, self.fc = _backbone(channels, pool_size, hidden, groups)
        self.heads = nn.ModuleDict({name: nn.Linear(hidden[1], 1) for name in PARAMETER_NAMES})
        init = dict(DEFAULT_INITIAL_VALUES)
        init.update(initial_values or {})
        with torch.no_grad():
            for name, head in self.heads.items():
                t = _unit_interval_position(init[name], ENCODER_BOUNDS[name])
                head.bias.fill_(math.log(t / (1.0 - t)))
                head.weight.mul_(HEAD_WEIGHT_SCALE)

    def forward(self, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """y: (B, H, W) normalised observation -> dict of nine (B,) float32 tensors."""
        if y.ndim != 3:
            raise ValueError(f"encoder input must be (B, H, W), got {tuple(y.shape)}")
        features = self.fc(self.pool(self.backbone(y.unsqueeze(1))))
        out = {}
        for name, head in self.heads.items():
            z = head(features).squeeze(-1).float()  # bounds applied in float32 under autocast
            out[name] = bounded(z, ENCODER_BOUNDS[name])
        return out


# Components predicted by ComponentEncoder, in normalised units (astrorim.params): log_b = ln b; e1, e2 the
# lenstronomy SIE ellipticity; x0, y0 in half fields of view; gamma1, gamma2 the lenstronomy shear; kappa_s
# (0 without a halo); log_r_s = ln r_s (undefined without a halo).
COMPONENT_NAMES: tuple[str, ...] = ("log_b", "e1", "e2", "x0", "y0", "gamma1", "gamma2", "kappa_s", "log_r_s")
# Untrained predictions (means) and 1-sigma widths: roughly the simulated populations' centre and spread, so
# that the Gaussian NLL starts well scaled for every component.
COMPONENT_INITIAL_MEAN = {"log_b": math.log(0.5), "e1": 0.0, "e2": 0.0, "x0": 0.0, "y0": 0.0, "gamma1": 0.0,
                          "gamma2": 0.0, "kappa_s": 0.02, "log_r_s": math.log(2.0)}
COMPONENT_INITIAL_SIGMA = {"log_b": 0.7, "e1": 0.15, "e2": 0.15, "x0": 0.05, "y0": 0.05, "gamma1": 0.05,
                           "gamma2": 0.05, "kappa_s": 0.1, "log_r_s": 1.0}
LOG_SIGMA_RANGE = (-9.0, 3.0)   # clamp of the log-sigma heads (sigma 1e-4 .. 20): keeps the NLL finite
MAX_ELLIPTICITY = (1.0 - ENCODER_BOUNDS["q"].low) / (1.0 + ENCODER_BOUNDS["q"].low)   # q >= 0.2
MAX_SHEAR = 0.5
_EPS = 1e-12


def nine_from_components(c: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The nine parameters of :data:`PARAMETER_NAMES` from component tensors (differentiable).

    b and r_s are clamped to the encoder bounds, |e| to q >= 0.2, the shear to <= 0.5 and kappa_s to [0, 1].
    """
    b_bound, rs_bound = ENCODER_BOUNDS["b"], ENCODER_BOUNDS["r_s"]
    e = torch.sqrt(c["e1"] ** 2 + c["e2"] ** 2 + _EPS).clamp(max=MAX_ELLIPTICITY)
    g = torch.sqrt(c["gamma1"] ** 2 + c["gamma2"] ** 2 + _EPS).clamp(max=MAX_SHEAR)
    return {
        "b": torch.exp(c["log_b"]).clamp(b_bound.low, b_bound.high),
        "q": (1.0 - e) / (1.0 + e),
        "phi": 0.5 * torch.atan2(c["e2"], c["e1"]),
        "x0": c["x0"],
        "y0": c["y0"],
        "gamma": g,
        "gamma_phi": 0.5 * torch.atan2(c["gamma2"], c["gamma1"]),
        "kappa_s": c["kappa_s"].clamp(0.0, 1.0),
        "r_s": torch.exp(c["log_r_s"]).clamp(rs_bound.low, rs_bound.high),
    }


def components_from_nine(params: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Component truths and validity masks from a (B, 9) tensor in :data:`PARAMETER_NAMES` order.

    log_r_s is valid only where the halo exists (kappa_s > 0 and finite r_s); every other component where
    its inputs are finite.  Invalid entries are set to 0 (mask them out).
    """
    p = {name: params[:, i].float() for i, name in enumerate(PARAMETER_NAMES)}
    e = (1.0 - p["q"]) / (1.0 + p["q"])
    comp = {
        "log_b": torch.log(p["b"].clamp_min(1e-6)),
        "e1": e * torch.cos(2.0 * p["phi"]),
        "e2": e * torch.sin(2.0 * p["phi"]),
        "x0": p["x0"],
        "y0": p["y0"],
        "gamma1": p["gamma"] * torch.cos(2.0 * p["gamma_phi"]),
        "gamma2": p["gamma"] * torch.sin(2.0 * p["gamma_phi"]),
        "kappa_s": p["kappa_s"],
        "log_r_s": torch.log(p["r_s"].clamp_min(1e-6)),
    }
    halo = torch.isfinite(p["kappa_s"]) & (p["kappa_s"] > 0) & torch.isfinite(p["r_s"]) & (p["r_s"] > 0)
    masks = {}
    for name, v in comp.items():
        valid = torch.isfinite(v) & (halo if name == "log_r_s" else torch.ones_like(halo))
        masks[name] = valid
        comp[name] = torch.where(valid, v, torch.zeros_like(v))
    return comp, masks


class ComponentEncoder(nn.Module):
    """CNN predicting the Cartesian lens components with a 1-sigma each; the nine parameters are derived.

    Same backbone as :class:`LensParameterEncoder`; one linear head outputs a mean and a log sigma per
    component of :data:`COMPONENT_NAMES`.  ``forward`` returns the nine parameters (the model's contract);
    :meth:`predict` also returns the components and their sigmas.
    """

    heads_kind = "components"

    def __init__(self, channels: tuple[int, ...] = (32, 64, 96, 128), pool_size: int = 3,
                 hidden: tuple[int, int] = (128, 64), groups: int = 8):
        super().__init__()
        self.backbone, self.pool, self.fc = _backbone(channels, pool_size, hidden, groups)
        n = len(COMPONENT_NAMES)
        self.mean_head = nn.Linear(hidden[1], n)
        self.log_sigma_head = nn.Linear(hidden[1], n)
        with torch.no_grad():
            self.mean_head.weight.mul_(HEAD_WEIGHT_SCALE)
            self.log_sigma_head.weight.mul_(HEAD_WEIGHT_SCALE)
            self.mean_head.bias.copy_(torch.tensor([COMPONENT_INITIAL_MEAN[k] for k in COMPONENT_NAMES]))
            self.log_sigma_head.bias.copy_(torch.tensor([math.log(COMPONENT_INITIAL_SIGMA[k])
                                                         for k in COMPONENT_NAMES]))

    def predict(self, y: torch.Tensor) -> tuple[dict, dict, dict]:
        """y: (B, H, W) normalised observation -> (nine parameters, components, component sigmas), (B,) each."""
        if y.ndim != 3:
            raise ValueError(f"encoder input must be (B, H, W), got {tuple(y.shape)}")
        features = self.fc(self.pool(self.backbone(y.unsqueeze(1))))
        mean = self.mean_head(features).float()   # float32 under autocast
        log_sigma = self.log_sigma_head(features).float().clamp(*LOG_SIGMA_RANGE)
        comp = {name: mean[:, i] for i, name in enumerate(COMPONENT_NAMES)}
        sigma = {name: torch.exp(log_sigma[:, i]) for i, name in enumerate(COMPONENT_NAMES)}
        return nine_from_components(comp), comp, sigma

    def forward(self, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """y: (B, H, W) normalised observation -> dict of the nine (B,) float32 parameters."""
        return self.predict(y)[0]


ENCODER_HEADS = {"periodic": LensParameterEncoder, "components": ComponentEncoder}
