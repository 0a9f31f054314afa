"""Shared input handling and geometry for the torch lens profiles (private)."""

from __future__ import annotations

import numbers

import torch
from torch import Tensor

# Relative size of the numerical core put at singular centres: far below float64 resolution of any
# pixel position, so results away from the centre are unchanged, yet r = 0 gives finite values.
CORE_RELATIVE = 1e-12

# lenstronomy clips |e| at 0.9999 (param_util.ellipticity2phi_q); mirrored to stay identical.
MAX_ELLIPTICITY_MODULUS = 0.9999


def check_coordinates(x: Tensor, y: Tensor, profile: str) -> tuple[Tensor, Tensor]:
    """Validate x, y as floating tensors of one dtype and device; return them broadcast."""
    for name, value in (("x", x), ("y", y)):
        if not isinstance(value, Tensor):
            raise TypeError(f"{profile}: {name} must be a torch.Tensor, got {type(value).__name__}")
        if not value.is_floating_point():
            raise TypeError(f"{profile}: {name} must be a floating-point tensor, got {value.dtype}")
    if x.dtype != y.dtype or x.device != y.device:
        raise TypeError(
            f"{profile}: x and y must share dtype and device, got {x.dtype}/{x.device} and {y.dtype}/{y.device}"
        )
    return torch.broadcast_tensors(x, y)


def as_param(value, like: Tensor, name: str, profile: str) -> Tensor:
    """A parameter as a tensor of ``like``'s dtype and device (keeps autograd history)."""
    if isinstance(value, Tensor):
        if value.is_complex():
            raise TypeError(f"{profile}: parameter {name} must be real, got {value.dtype}")
        return value.to(dtype=like.dtype, device=like.device)
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        # a fill on the device: as_tensor would copy the number from pageable host memory, and on a GPU that
        # copy waits for every queued kernel (4 host synchronisations per training step, found on an H200)
        return torch.full((), float(value), dtype=like.dtype, device=like.device)
    try:
        return torch.as_tensor(value, dtype=like.dtype, device=like.device)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(f"{profile}: parameter {name} must be a number or tensor, got {value!r}") from exc


def core_radius(scale: Tensor) -> Tensor:
    """Tiny core radius CORE_RELATIVE * |scale|, floored so that its square stays a normal float."""
    floor = torch.finfo(scale.dtype).tiny ** 0.25
    return torch.clamp(CORE_RELATIVE * scale.abs(), min=floor)


def ellipticity_geometry(e1: Tensor, e2: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """lenstronomy (e1, e2) -> (e, q, cos phi, sin phi) with e = |e1 + i e2| and q = (1 - e)/(1 + e).

    phi = atan2(e2, e1) / 2 is the major-axis angle.  The round case e = 0 is routed through safe
    values so that autograd stays finite there (the direction is then arbitrary, phi = 0).
    """
    e_sq = e1 * e1 + e2 * e2
    round_ = e_sq <= 0
    e_sq_safe = torch.where(round_, torch.ones_like(e_sq), e_sq)
    e = torch.where(round_, torch.zeros_like(e_sq), torch.sqrt(e_sq_safe))
    e = torch.clamp(e, max=MAX_ELLIPTICITY_MODULUS)
    q = (1.0 - e) / (1.0 + e)
    phi = 0.5 * torch.atan2(
        torch.where(round_, torch.zeros_like(e2), e2), torch.where(round_, torch.ones_like(e1), e1)
    )
    return e, q, torch.cos(phi), torch.sin(phi)


def to_major_axis_frame(dx: Tensor, dy: Tensor, cos_phi: Tensor, sin_phi: Tensor) -> tuple[Tensor, Tensor]:
    """Rotate offsets into the frame whose x axis is the major axis (lenstronomy util.rotate(phi))."""
    return dx * cos_phi + dy * sin_phi, -dx * sin_phi + dy * cos_phi


def from_major_axis_frame(ax: Tensor, ay: Tensor, cos_phi: Tensor, sin_phi: Tensor) -> tuple[Tensor, Tensor]:
    """Rotate a vector from the major-axis frame back to the sky frame (util.rotate(-phi))."""
    return ax * cos_phi - ay * sin_phi, ax * sin_phi + ay * cos_phi
