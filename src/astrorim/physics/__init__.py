"""Lensing physics: torch lens profiles in lenstronomy conventions and astropy-based conversions.

Each profile module (``sie``, ``shear``, ``nfw``, ``sis``, ``epl``) exposes batched, differentiable
torch functions ``deflection(x, y, **params) -> (alpha_x, alpha_y)`` and
``convergence(x, y, **params) -> kappa``.  The wrappers below are the numpy front door (numpy in,
numpy out, float64 inside), e.g. ``deflection('sie', x, y, theta_E=1.2, e1=0.1, e2=0.0)``.
"""

from __future__ import annotations

import inspect
from types import ModuleType

import numpy as np
import torch

from astrorim.physics import epl, nfw, shear, sie, sis
from astrorim.physics.conversions import (
    critical_surface_density,
    default_cosmology,
    einstein_mass,
    sis_velocity_dispersion,
    theta_e_from_velocity_dispersion,
)

__all__ = [
    "PROFILES",
    "deflection",
    "convergence",
    "critical_surface_density",
    "default_cosmology",
    "einstein_mass",
    "sis_velocity_dispersion",
    "theta_e_from_velocity_dispersion",
    "epl",
    "nfw",
    "shear",
    "sie",
    "sis",
]

PROFILES: dict[str, ModuleType] = {"sie": sie, "shear": shear, "nfw": nfw, "sis": sis, "epl": epl}


def _module(profile: str) -> ModuleType:
    key = profile.lower() if isinstance(profile, str) else profile
    if key not in PROFILES:
        raise ValueError(f"unknown lens profile {profile!r}; expected one of {sorted(PROFILES)}")
    return PROFILES[key]


def _call_numpy(profile: str, function_name: str, x, y, kwargs: dict):
    module = _module(profile)
    function = getattr(module, function_name)
    signature = inspect.signature(function)
    names = [n for n in signature.parameters if n not in ("x", "y")]
    unknown = sorted(set(kwargs) - set(names))
    if unknown:
        raise ValueError(f"{profile}: unknown parameter(s) {unknown}; accepted: {names}")
    missing = [
        n for n in names if signature.parameters[n].default is inspect.Parameter.empty and n not in kwargs
    ]
    if missing:
        raise ValueError(f"{profile}: missing required parameter(s) {missing}")

    def to_tensor(name, value):
        try:
            return torch.as_tensor(np.asarray(value, dtype=np.float64))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{profile}: {name} must be numeric, got {value!r}") from exc

    with torch.no_grad():
        tx, ty = to_tensor("x", x), to_tensor("y", y)
        params = {k: to_tensor(k, v) for k, v in kwargs.items()}
        out = function(tx, ty, **params)
    if isinstance(out, tuple):
        return tuple(o.numpy() for o in out)
    return out.numpy()


def deflection(profile: str, x, y, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """Deflection (alpha_x, alpha_y) of ``profile`` in {'sie', 'shear', 'nfw', 'sis', 'epl'}.

    x, y and parameter values are numpy-compatible (broadcast together); keyword names are
    lenstronomy's for that profile.  Raises ValueError for an unknown profile or parameter, or a
    missing one.  Computed in float64 torch; returns float64 numpy arrays.
    """
    return _call_numpy(profile, "deflection", x, y, kwargs)


def convergence(profile: str, x, y, **kwargs) -> np.ndarray:
    """Convergence kappa of ``profile``; same inputs and errors as :func:`deflection`."""
    return _call_numpy(profile, "convergence", x, y, kwargs)
