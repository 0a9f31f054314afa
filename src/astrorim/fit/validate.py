"""Input checks for the fit: every bad input raises ValueError naming the argument (and example)."""

from __future__ import annotations

import numpy as np
import torch

from astrorim.io.fits_io import PSF_SUM_TOLERANCE

# An image whose brightest pixels stay below this many noise sigmas has nothing to fit.
MIN_PEAK_SNR = 3.0


def as_float_tensor(value, name: str, dtype=torch.float64) -> torch.Tensor:
    """``value`` as a finite floating tensor; ValueError naming ``name`` otherwise."""
    try:
        t = torch.as_tensor(np.array(value, dtype=np.float64) if not isinstance(value, torch.Tensor)
                            else value.detach(), dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric: {exc}") from exc
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        raise ValueError(f"{name} has {int(bad.sum())} NaN/inf values")
    return t


def check_observed(observed) -> torch.Tensor:
    """(B, H, W) finite float64 tensor from (H, W) or (B, H, W)."""
    y = as_float_tensor(observed, "observed")
    if y.ndim == 2:
        y = y[None]
    if y.ndim != 3 or y.shape[-1] != y.shape[-2]:
        raise ValueError(f"observed must be square (H, W) or (B, H, W), got shape {tuple(y.shape)}")
    return y


def check_noise(y: torch.Tensor, noise_sigma=None, noise_map=None) -> torch.Tensor:
    """Per-pixel noise sigma (B, H, W) from ``noise_map`` (sigma per pixel) or ``noise_sigma``
    (scalar or (B,)); zero, negative or non-finite values raise ValueError naming the argument."""
    if noise_map is None and noise_sigma is None:
        raise ValueError("the fit needs noise_sigma or noise_map (per-pixel sigma)")
    if noise_map is not None:
        sig = as_float_tensor(noise_map, "noise_map")
        if sig.ndim == 2:
            sig = sig.expand_as(y)
        if sig.shape != y.shape:
            raise ValueError(f"noise_map has shape {tuple(sig.shape)}, observed {tuple(y.shape)}")
        if bool((sig <= 0).any()):
            raise ValueError(f"noise_map must be > 0 everywhere; {int((sig <= 0).sum())} pixels are <= 0")
        return sig.clone()
    sig = as_float_tensor(noise_sigma, "noise_sigma").reshape(-1)
    if sig.numel() == 1:
        sig = sig.expand(y.shape[0])
    if sig.numel() != y.shape[0]:
        raise ValueError(f"noise_sigma has {sig.numel()} values for {y.shape[0]} images")
    if bool((sig <= 0).any()):
        raise ValueError(f"noise_sigma must be > 0, got {sig.tolist()}")
    return sig.view(-1, 1, 1).expand_as(y).clone()


def check_psf(psf, batch: int) -> torch.Tensor:
    """(K, K) or (B, K, K) kernel, K odd, each summing to 1 (within PSF_SUM_TOLERANCE)."""
    k = as_float_tensor(psf, "psf")
    if k.ndim not in (2, 3) or k.shape[-1] != k.shape[-2]:
        raise ValueError(f"psf must be a square (K, K) or (B, K, K) kernel, got shape {tuple(k.shape)}")
    if k.shape[-1] % 2 != 1:
        raise ValueError(f"psf must have an odd size (centred kernel), got {k.shape[-1]} x {k.shape[-1]}")
    if k.ndim == 3 and k.shape[0] != batch:
        raise ValueError(f"psf has batch {k.shape[0]}, observed has {batch}")
    sums = k.sum(dim=(-1, -2)).reshape(-1)
    if bool(((sums - 1.0).abs() > PSF_SUM_TOLERANCE).any()):
        raise ValueError(f"psf must sum to 1 (got sums {[round(float(s), 6) for s in sums]}); "
                         "normalise it first")
    return k


def check_mask(mask, y: torch.Tensor) -> torch.Tensor:
    """Boolean (B, H, W): True where a pixel enters the likelihood (None: all)."""
    if mask is None:
        return torch.ones_like(y, dtype=torch.bool)
    m = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask)
    if m.dtype != torch.bool:
        raise ValueError(f"mask must be boolean (True = pixel used), got dtype {m.dtype}")
    if m.ndim == 2:
        m = m.expand_as(y)
    if m.shape != y.shape:
        raise ValueError(f"mask has shape {tuple(m.shape)}, observed {tuple(y.shape)}")
    if bool((m.reshape(m.shape[0], -1).sum(1) == 0).any()):
        raise ValueError("mask removes every pixel of at least one image")
    return m.clone()


def check_signal(y: torch.Tensor, sigma: torch.Tensor, mask: torch.Tensor) -> None:
    """ValueError naming 'observed' (and the example) when an image has no pixel above
    MIN_PEAK_SNR sigma in the 99.5th percentile of its unmasked pixels."""
    for i in range(y.shape[0]):
        snr = (y[i] / sigma[i])[mask[i]]
        peak = torch.quantile(snr, 0.995) if snr.numel() > 1 else snr.max()
        if not bool(peak > MIN_PEAK_SNR):
            raise ValueError(f"observed[{i}] has no signal: its 99.5th-percentile S/N is {float(peak):.2f} "
                             f"(< {MIN_PEAK_SNR}); nothing to fit")
