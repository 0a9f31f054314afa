"""Elliptical power law, lenstronomy 'EPL' convention (torch, batched, differentiable).

    kappa(x', y') = (3 - gamma)/2 * (theta_E / sqrt(q x'^2 + y'^2 / q))^(gamma - 1)

in the major-axis frame (phi = atan2(e2, e1)/2, q = (1 - e)/(1 + e)).  With t = gamma - 1,
b = theta_E sqrt(q), R = sqrt(q^2 x'^2 + y'^2) and R e^{i varphi} = q x' + i y', Tessore & Metcalf
(2015) eqs. 13 and 29 give

    alpha' = 2 b / (1 + q) (b / R)^(t - 1) omega(varphi),   omega = sum_n Omega_n,
    Omega_0 = e^{i varphi},  Omega_n = -f (2n - 2 + t) / (2n + 2 - t) e^{2 i varphi} Omega_{n-1},

with f = (1 - q)/(1 + q) (= e).  This is lenstronomy's hypergeometric 2F1(1, t/2; 2 - t/2; -f e^{2i varphi})
summed term by term.  |Omega_n / Omega_{n-1}| <= f whenever t <= 2, so the series is cut once the
geometric tail bound f^N / (1 - f) is below the dtype's tolerance (N chosen per call from the
largest f in the batch: 30 terms at q = 0.5, 54 at q = 0.3 in float64).  A core 1e-12 b keeps R = 0 finite.

With u = e^{i varphi} and w = u^2 the series is a polynomial, omega = u sum_n c_n w^n with c_0 = 1 and
c_n = -f (2n - 2 + t) / (2n + 2 - t) c_{n-1}.  It is summed by Horner's rule in complex arithmetic, and its gradient
is written out (:class:`_AngularSeries`): d omega / du = sum (2n + 1) c_n w^n is a second polynomial, and the
gradients of f and t contract the coefficients' derivatives with the image-summed moments of w^n.  Unrolled
through autograd, the recurrence kept ~10 tensors per term for a backward pass that cost 4-5 times the forward
one.  Being written out once, the gradient cannot itself be differentiated: second derivatives raise.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from astrorim.physics._common import (
    as_param,
    check_coordinates,
    core_radius,
    ellipticity_geometry,
    from_major_axis_frame,
    to_major_axis_frame,
)

__all__ = ["deflection", "convergence", "n_series_terms"]

_PROFILE = "epl"

# Tail tolerance relative to |Omega_0| = 1, per dtype.
_SERIES_TOLERANCE = {torch.float64: 1e-14, torch.float32: 1e-8, torch.float16: 1e-4, torch.bfloat16: 1e-3}
# f^N / (1 - f) <= 1e-14 needs N = 346 at q = 0.05 (float64); flatter lenses, far outside any lens model
# here, are refused rather than silently truncated.
_MAX_SERIES_TERMS = 400


def n_series_terms(f_max: float, dtype: torch.dtype) -> int:
    """Number of Tessore-Metcalf terms for ellipticity modulus f = (1 - q)/(1 + q) at ``dtype``."""
    if not 0.0 <= f_max < 1.0 or not math.isfinite(f_max):
        raise ValueError(f"{_PROFILE}: ellipticity modulus must be in [0, 1), got {f_max}")
    if f_max == 0.0:
        return 1
    tol = _SERIES_TOLERANCE.get(dtype, 1e-14)
    n = math.ceil(math.log(tol * (1.0 - f_max)) / math.log(f_max))
    n = max(n, 1)
    if n > _MAX_SERIES_TERMS:
        q = (1.0 - f_max) / (1.0 + f_max)
        raise ValueError(
            f"{_PROFILE}: axis ratio q = {q:.3g} needs {n} series terms (> {_MAX_SERIES_TERMS}); "
            "use q >= 0.05"
        )
    return n


def _params(x, y, theta_E, gamma, e1, e2, center_x, center_y):
    x, y = check_coordinates(x, y, _PROFILE)
    theta_E = as_param(theta_E, x, "theta_E", _PROFILE)
    t = as_param(gamma, x, "gamma", _PROFILE) - 1.0
    e1 = as_param(e1, x, "e1", _PROFILE)
    e2 = as_param(e2, x, "e2", _PROFILE)
    e, q, cos_phi, sin_phi = ellipticity_geometry(e1, e2)
    dx = x - as_param(center_x, x, "center_x", _PROFILE)
    dy = y - as_param(center_y, x, "center_y", _PROFILE)
    xp, yp = to_major_axis_frame(dx, dy, cos_phi, sin_phi)
    b = theta_E * torch.sqrt(q)
    s = core_radius(b)
    R = torch.sqrt(q * q * xp * xp + yp * yp + s * s)
    return xp, yp, t, e, q, cos_phi, sin_phi, b, R


def _series_coefficients(f: Tensor, t: Tensor, n_terms: int, like: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """c_n, dc_n/df and dc_n/dt for n < n_terms, each (n_terms, *broadcast(f, t).shape), in ``like``'s dtype/device.

    c_n = c_{n-1} a_n with a_n = -f (2n - 2 + t) / (2n + 2 - t); dc_n/df is carried as
    -(2n - 2 + t)/(2n + 2 - t) (c_{n-1} + f dc_{n-1}/df), finite at f = 0.  A handful of numbers per lens, summed
    in float64 numpy: a loop of tiny torch operations would cost more than the series itself.
    """
    f_values, t_values = np.broadcast_arrays(f.detach().cpu().double().numpy(), t.detach().cpu().double().numpy())
    c, dc_df, dc_dt = (np.zeros((n_terms, *f_values.shape)) for _ in range(3))
    c[0] = 1.0
    for n in range(1, n_terms):
        denominator = 2.0 * n + 2.0 - t_values
        ratio = (2.0 * n - 2.0 + t_values) / denominator
        dratio_dt = 4.0 * n / (denominator * denominator)
        c[n] = -f_values * ratio * c[n - 1]
        dc_df[n] = -ratio * (c[n - 1] + f_values * dc_df[n - 1])
        dc_dt[n] = -f_values * (dratio_dt * c[n - 1] + ratio * dc_dt[n - 1])
    return tuple(torch.from_numpy(a).to(dtype=like.dtype, device=like.device) for a in (c, dc_df, dc_dt))


def _horner(coefficients: Tensor, w: Tensor) -> Tensor:
    """sum_n coefficients[n] w^n (a new tensor of w's broadcast shape)."""
    # Complex coefficients: adding a real tensor to a complex one in place casts it anew at every step.
    coefficients = coefficients.to(w.dtype)
    if len(coefficients) == 1:
        return coefficients[0] + torch.zeros_like(w)
    total = coefficients[-1] * w + coefficients[-2]
    for n in range(len(coefficients) - 3, -1, -1):
        total.mul_(w).add_(coefficients[n])
    return total


def _working_dtype(dtype: torch.dtype) -> torch.dtype:
    # complex32 lacks most kernels; half-precision inputs are summed in float32.
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


def _as_dtype(value: Tensor, dtype: torch.dtype) -> Tensor:
    return value if value.dtype == dtype else value.to(dtype)


class _AngularSeries(torch.autograd.Function):
    """(Re, Im) of omega = u sum_n c_n u^{2n}, u = cos_v + i sin_v, with its gradient written out.

    omega is a polynomial in u (holomorphic), so the gradient of (cos_v, sin_v) is g conj(d omega / du) with
    g = g_re + i g_im; the real inputs f and t get Re sum g conj(d omega / dp), summed over broadcast axes.
    """

    @staticmethod
    def forward(ctx, cos_v: Tensor, sin_v: Tensor, f: Tensor, t: Tensor, n_terms: int):
        dtype = _working_dtype(cos_v.dtype)
        u = torch.complex(_as_dtype(cos_v, dtype), _as_dtype(sin_v, dtype))
        ctx.coefficients = _series_coefficients(f, t, n_terms, u.real)
        omega = u * _horner(ctx.coefficients[0], u * u)
        ctx.save_for_backward(cos_v, sin_v)
        ctx.shapes = (f.shape, t.shape)
        return _as_dtype(omega.real, cos_v.dtype), _as_dtype(omega.imag, cos_v.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_re: Tensor, grad_im: Tensor):
        cos_v, sin_v = ctx.saved_tensors
        dtype = _working_dtype(cos_v.dtype)
        u = torch.complex(_as_dtype(cos_v, dtype), _as_dtype(sin_v, dtype))
        w = u * u
        g = torch.complex(_as_dtype(grad_re, dtype), _as_dtype(grad_im, dtype))
        c, dc_df, dc_dt = ctx.coefficients
        f_shape, t_shape = ctx.shapes
        grad_cos = grad_sin = grad_f = grad_t = None
        need_cos, need_sin, need_f, need_t = ctx.needs_input_grad[:4]
        if need_cos or need_sin:
            odd = torch.arange(1, 2 * len(c), 2, dtype=dtype, device=u.device).reshape(-1, *([1] * (c.dim() - 1)))
            grad_u = g * _horner(odd * c, w).conj()
            grad_cos = _as_dtype(grad_u.real.sum_to_size(cos_v.shape), cos_v.dtype) if need_cos else None
            grad_sin = _as_dtype(grad_u.imag.sum_to_size(sin_v.shape), sin_v.dtype) if need_sin else None
        if (need_f or need_t) and len(c) > 1:
            # Moments Re sum g conj(u w^n), summed to the coefficients' shape, one power of w at a time.
            moment_term = g * u.conj()
            w_conj = w.conj().resolve_conj()  # a lazy conjugate would be materialised at every step
            moments = torch.stack([moment_term.mul_(w_conj).real.sum_to_size(c.shape[1:]) for _ in range(1, len(c))])
            grad_f = (dc_df[1:] * moments).sum(0).sum_to_size(f_shape) if need_f else None
            grad_t = (dc_dt[1:] * moments).sum(0).sum_to_size(t_shape) if need_t else None
        elif need_f or need_t:
            grad_f = torch.zeros(f_shape, dtype=dtype, device=u.device) if need_f else None
            grad_t = torch.zeros(t_shape, dtype=dtype, device=u.device) if need_t else None
        return grad_cos, grad_sin, grad_f, grad_t, None


def deflection(x: Tensor, y: Tensor, theta_E, gamma, e1, e2, center_x=0.0, center_y=0.0) -> tuple[Tensor, Tensor]:
    """EPL deflection (alpha_x, alpha_y) in the unit of x, y.

    gamma is the 3D logarithmic slope (2 = isothermal; tested on [1.5, 2.5]); the other parameters as
    in :mod:`astrorim.physics.sie`.  All parameters broadcast against x.  Differentiable once (see the module).
    """
    xp, yp, t, e, q, cos_phi, sin_phi, b, R = _params(x, y, theta_E, gamma, e1, e2, center_x, center_y)
    f = e  # (1 - q) / (1 + q) with q = (1 - e) / (1 + e)
    n_terms = n_series_terms(float(f.detach().max()) if f.numel() else 0.0, x.dtype)

    cos_v = q * xp / R
    sin_v = yp / R
    sum_re, sum_im = _AngularSeries.apply(cos_v, sin_v, f, t, n_terms)

    amplitude = 2.0 * b / (1.0 + q) * (b / R) ** (t - 1.0)
    return from_major_axis_frame(amplitude * sum_re, amplitude * sum_im, cos_phi, sin_phi)


def convergence(x: Tensor, y: Tensor, theta_E, gamma, e1, e2, center_x=0.0, center_y=0.0) -> Tensor:
    """EPL convergence (2 - t)/2 (b / R)^t with t = gamma - 1 (dimensionless)."""
    _, _, t, _, _, _, _, b, R = _params(x, y, theta_E, gamma, e1, e2, center_x, center_y)
    return 0.5 * (2.0 - t) * (b / R) ** t
