"""The simulation pipeline shared by all versions (paper §3.2.3) and the public ``simulate``.

Per example, using only that example's random generator:
  instrument + PSF -> photometry draws -> source galaxy -> lens (+ v5 rejection) -> source position
  -> source rendered on the 4x supersampled grid -> ray shooting beta = theta - alpha(theta) with
  bilinear sampling of the supersampled source -> lens light and field galaxies -> PSF convolution
  (supersampled kernel, FFT) -> 4x4 block mean -> detector effects and noise.

Units: all images are ADU per detector pixel; the supersampled images hold flux per detector-pixel
area sampled at supersampled-pixel centres so that block means give detector-pixel fluxes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..params import PARAMETER_NAMES, lenstronomy_kwargs_to_normalised, q_phi_from_ellipticity
from ..progress import Progress
from .convolve import fft_convolve_same
from .cosmology import DistanceTable, distance_table
from .grids import Grid, arcsec_to_index, bilinear_sample, block_mean, make_grid
from .keys import example_rng, phase_code, split_code, version_number
from .lenses import LensSystem, caustic_points, count_images, deflection, sample_lens, subhalo_truth_columns
from .noise import DetectorParams, apply_detector, sample_detector
from .photometry import adu_to_mag, mag_to_adu, sample_source_mag
from .psf import PsfParams, mismatched_psf, psf_kernels, sample_psf
from .sersic import Sersic, add_sersic
from .settings import VersionSettings
from .sources import SourceGalaxy, render_source, sample_bulge_disk_source


@dataclass(frozen=True)
class SimulationBatch:
    """A batch of simulated examples; every image array is float32 (n, npix, npix) [ADU]."""

    source: np.ndarray
    observed: np.ndarray
    noiseless: np.ndarray
    lensed_source_noiseless: np.ndarray
    noise_sigma: np.ndarray     # (n,) background noise std [ADU]
    psf: np.ndarray             # (n, K, K) applied PSF at detector resolution, sum 1
    psf_measured: np.ndarray    # (n, K, K) the PSF "measured" for the model (differs under mismatch)
    truth: pd.DataFrame

    def __len__(self) -> int:
        return int(self.source.shape[0])


@dataclass
class SimulationContext:
    """Per-call caches (no module-level state): distance table and grids by pixel scale."""

    settings: VersionSettings
    npix: int
    distances: DistanceTable
    grids: dict

    def grid(self, pixel_scale_arcsec: float) -> Grid:
        g = self.grids.get(pixel_scale_arcsec)
        if g is None:
            g = make_grid(self.npix, pixel_scale_arcsec)
            self.grids[pixel_scale_arcsec] = g
        return g


@dataclass
class _Example:
    source: np.ndarray
    observed: np.ndarray
    noiseless: np.ndarray
    lensed: np.ndarray
    noise_sigma: float
    psf: np.ndarray
    psf_measured: np.ndarray
    truth: dict


def make_context(settings: VersionSettings, npix: int) -> SimulationContext:
    """Caches shared by the examples of one ``simulate`` call."""
    return SimulationContext(settings, npix, distance_table(settings.cosmology), {})


def _choose_regime(rng, s: VersionSettings):
    w = np.array([r.weight for r in s.instruments], dtype=float)
    return s.instruments[int(rng.choice(len(w), p=w / w.sum()))]


def _place_source(rng, s: VersionSettings, grid: Grid, lens: LensSystem, src: SourceGalaxy, model,
                  alpha_ss):
    """Source centre [arcsec], near-caustic flag and the (possibly computed) supersampled deflection."""
    half = grid.half_fov_arcsec
    if rng.uniform() < s.near_caustic_prob:
        if alpha_ss is None:
            alpha_ss = deflection(lens, model, grid.x_ss, grid.y_ss)
        step = 2  # every other supersampled pixel is fine enough to trace the critical curve
        bx, by = caustic_points(grid.x_ss[::step, ::step], grid.y_ss[::step, ::step],
                                alpha_ss[0][::step, ::step], alpha_ss[1][::step, ::step], lens,
                                step * grid.ss_pixel_scale_arcsec)
        inside = np.hypot(bx, by) < 0.6 * half
        bx, by = bx[inside], by[inside]
        if bx.size:
            k = int(rng.integers(bx.size))
            r = rng.uniform(*s.near_caustic_offset_disk_re) * src.size_arcsec
            t = rng.uniform(0.0, 2.0 * np.pi)
            return (float(bx[k] + r * np.cos(t)), float(by[k] + r * np.sin(t))), True, alpha_ss
    radius = min(s.broad_radius_theta_e * lens.theta_e_arcsec, s.broad_radius_max_half_fov * half)
    r = radius * np.sqrt(rng.uniform())
    t = rng.uniform(0.0, 2.0 * np.pi)
    return (lens.center_x + r * np.cos(t), lens.center_y + r * np.sin(t)), False, alpha_ss


def _draw_lens_and_position(rng, ctx: SimulationContext, grid: Grid, src: SourceGalaxy, shift):
    """Lens, source centre, near-caustic flag, supersampled deflection, attempts and image count.

    With ``reject_multiple_images`` (v5) a draw whose source centre has more than one image is
    redrawn (lens and position), at most ``max_image_attempts`` times; the last draw is kept.
    """
    s = ctx.settings
    attempts = s.max_image_attempts if s.reject_multiple_images else 1
    n_images = -1
    for attempt in range(1, attempts + 1):
        lens = sample_lens(rng, s, ctx.distances, grid.half_fov_arcsec, shift)
        model = lens.lens_model()
        centre, near, alpha_ss = _place_source(rng, s, grid, lens, src, model, None)
        if not s.reject_multiple_images:
            break
        n_images = count_images(lens, model, centre[0], centre[1], grid.half_fov_arcsec,
                                grid.pixel_scale_arcsec)
        if n_images <= 1:
            break
    if alpha_ss is None:
        alpha_ss = deflection(lens, model, grid.x_ss, grid.y_ss)
    return lens, centre, near, alpha_ss, attempt, n_images


def _render_foreground(rng, s: VersionSettings, grid: Grid, lens: LensSystem, mag_lens: float, exposure: float):
    """Unlensed light on the supersampled grid: lens galaxy, second lens (v4), field galaxies.

    Returns (lens-light component, image [ADU per detector-pixel area], second-lens mag, n field).
    """
    area = grid.pixel_scale_arcsec**2
    half = grid.half_fov_arcsec

    def adu(mag):
        return float(mag_to_adu(mag, exposure, s.zero_point, s.gain_e_per_adu))

    lens_light = Sersic(adu(mag_lens), rng.uniform(*s.lens_re_arcsec), rng.uniform(*s.lens_n),
                        float(np.clip(lens.q + rng.normal(0.0, 0.05), 0.3, 1.0)),
                        lens.phi_rad + np.deg2rad(rng.normal(0.0, 5.0)), lens.center_x, lens.center_y)
    image = np.zeros(grid.x_ss32.shape, dtype=np.float32)
    add_sersic(image, lens_light, grid.x_ss32, grid.y_ss32, area)
    mag_second = float("nan")
    if lens.second is not None:
        mag_second = mag_lens + rng.uniform(*s.second_lens_mag_offset)
        q2, phi2 = q_phi_from_ellipticity(lens.second["e1"], lens.second["e2"])
        second_light = Sersic(adu(mag_second), rng.uniform(0.3, 0.8), rng.uniform(3.0, 5.0), float(q2),
                              float(phi2), lens.second["center_x"], lens.second["center_y"])
        add_sersic(image, second_light, grid.x_ss32, grid.y_ss32, area)
    n_field = 0
    if rng.uniform() < s.field_galaxy_prob:
        n_field = int(rng.integers(s.field_galaxy_count[0], s.field_galaxy_count[1] + 1))
        for _ in range(n_field):
            re = float(np.exp(rng.uniform(*np.log(s.field_galaxy_re_arcsec))))
            comp = Sersic(adu(rng.uniform(*s.field_galaxy_mag)), re, rng.uniform(0.7, 2.5),
                          rng.uniform(0.4, 1.0), rng.uniform(0.0, np.pi),
                          rng.uniform(-half, half), rng.uniform(-half, half))
            add_sersic(image, comp, grid.x_ss32, grid.y_ss32, area)
    return lens_light, image, mag_second, n_field


def simulate_example(ctx: SimulationContext, rng: np.random.Generator) -> _Example:
    """One (source, observation) pair and its truth row, drawn from ``rng`` alone."""
    s = ctx.settings
    npix = ctx.npix

    # Instrument and PSF.
    regime = _choose_regime(rng, s)
    grid = ctx.grid(regime.pixel_scale_arcsec)
    ps = grid.pixel_scale_arcsec
    psf_p = sample_psf(rng, s, regime.psf_fwhm_arcsec)
    mismatch = rng.uniform() < s.psf_mismatch_prob
    psf_meas_p = mismatched_psf(rng, s, psf_p) if mismatch else psf_p
    shift = (0.0, 0.0)
    if rng.uniform() < s.subpixel_shift_prob:
        shift = (rng.uniform(-0.5, 0.5) * ps, rng.uniform(-0.5, 0.5) * ps)

    # Photometry draws.
    exposure = rng.uniform(*s.exposure_s)
    mag_src = sample_source_mag(rng, s)
    mag_lens = mag_src + rng.uniform(*s.lens_mag_offset)

    # Source galaxy (its own frame) and lens, with v5's rejection of multiply-imaged draws.
    sampler = s.source_sampler or sample_bulge_disk_source
    src = sampler(rng, s, grid.ss_pixel_scale_arcsec)
    lens, centre, near, alpha_ss, attempt, n_images = _draw_lens_and_position(rng, ctx, grid, src, shift)

    # Source on the supersampled grid, its detector-resolution truth, and ray shooting.
    area = ps * ps
    body_flux = float(mag_to_adu(mag_src, exposure, s.zero_point, s.gain_e_per_adu))
    source_ss = render_source(src, grid.x_ss32, grid.y_ss32, centre, body_flux, area)
    n_ss = source_ss.shape[0]
    ss_scale = grid.ss_pixel_scale_arcsec
    beta_col = arcsec_to_index(grid.x_ss - alpha_ss[0], n_ss, ss_scale).astype(np.float32)
    beta_row = arcsec_to_index(grid.y_ss - alpha_ss[1], n_ss, ss_scale).astype(np.float32)
    lensed_ss = bilinear_sample(source_ss, beta_col, beta_row)

    # Unlensed light: not part of the truth.
    lens_light, foreground_ss, mag_second, n_field = _render_foreground(rng, s, grid, lens, mag_lens, exposure)

    # PSF convolution on the supersampled grid, then 4x4 block means.
    kern = psf_kernels(psf_p, ps, s.psf_size_pix, grid.supersampling)
    kern_meas = psf_kernels(psf_meas_p, ps, s.psf_size_pix, grid.supersampling) if mismatch else kern
    # float32 FFTs: half the cost; their round-off (~1e-7 of the peak) can dip below zero, which a
    # convolution of non-negative images with a non-negative kernel cannot.
    conv = fft_convolve_same(np.stack([lensed_ss, foreground_ss]), kern.supersampled.astype(np.float32))
    np.maximum(conv, 0.0, out=conv)
    lensed_det = block_mean(conv[0], grid.supersampling).astype(np.float64)
    foreground_det = block_mean(conv[1], grid.supersampling).astype(np.float64)
    source_det = block_mean(source_ss, grid.supersampling).astype(np.float64)

    # v2: brighten the source until the lensed peak is >= the requested fraction of the lens peak
    # (everything is linear before the noise, so one rescaling is exact).
    boost_mag = 0.0
    if s.min_source_to_lens_peak > 0:
        ratio = float(lensed_det.max()) / max(float(foreground_det.max()), 1e-30)
        if 0 < ratio < s.min_source_to_lens_peak:
            scale = s.min_source_to_lens_peak / ratio
            lensed_det = lensed_det * scale
            source_det = source_det * scale
            boost_mag = -2.5 * np.log10(scale)
            mag_src += boost_mag
    noiseless = lensed_det + foreground_det

    det = sample_detector(rng, s, npix)
    observed = apply_detector(noiseless, det, rng)

    truth = _truth_row(s, grid, lens, src, centre, near, psf_p, psf_meas_p, mismatch, shift, exposure, mag_src,
                       mag_lens, mag_second, boost_mag, lens_light, n_field, det, attempt, n_images, source_det)
    return _Example(source_det, observed, noiseless, lensed_det, det.background_sigma_adu, kern.detector,
                    kern_meas.detector, truth)


def _truth_row(s, grid: Grid, lens: LensSystem, src: SourceGalaxy, centre, near, psf_p: PsfParams,
               psf_meas_p: PsfParams, mismatch, shift, exposure, mag_src, mag_lens, mag_second, boost_mag,
               lens_light: Sersic, n_field, det: DetectorParams, attempts, n_images, source_det) -> dict:
    nan = float("nan")
    nfw = lens.nfw
    second = lens.second
    total_src_adu = float(source_det.sum())
    row = {
        "pixel_scale": grid.pixel_scale_arcsec, "npix": grid.npix,
        "z_lens": lens.z_lens, "z_source": lens.z_source, "sigma_v": lens.sigma_v_kms,
        "theta_E": lens.theta_e_arcsec, "theta_E_extreme": lens.theta_e_extreme,
        "theta_E_capped": lens.theta_e_capped,
        "e1": lens.e1, "e2": lens.e2, "q": lens.q, "phi": lens.phi_rad,
        "center_x": lens.center_x, "center_y": lens.center_y,
        "gamma1": lens.gamma1, "gamma2": lens.gamma2,
        "has_nfw": nfw is not None,
        "nfw_M200": nfw.m200_msun if nfw else nan, "nfw_concentration": nfw.concentration if nfw else nan,
        "nfw_Rs": nfw.rs_arcsec if nfw else nan, "nfw_alpha_Rs": nfw.alpha_rs_arcsec if nfw else nan,
        "nfw_center_x": nfw.center_x if nfw else nan, "nfw_center_y": nfw.center_y if nfw else nan,
        "n_subhalos": len(lens.subhalos),
        "subhalo_theta_E_sum": float(sum(t for t, _, _ in lens.subhalos)),
        **subhalo_truth_columns(lens.subhalos, s.subhalo_max_count),
        "has_second_lens": second is not None,
        "second_theta_E": second["theta_E"] if second else nan,
        "second_e1": second["e1"] if second else nan, "second_e2": second["e2"] if second else nan,
        "second_center_x": second["center_x"] if second else nan,
        "second_center_y": second["center_y"] if second else nan,
        "mag_second_lens": mag_second,
        "source_x": centre[0], "source_y": centre[1], "near_caustic": bool(near),
        "source_morphology": src.morphology, "source_size": src.size_arcsec,
        "bulge_Re": src.bulge_re_arcsec, "bulge_n": src.bulge_n, "disk_Re": src.disk_re_arcsec,
        "bulge_fraction": src.bulge_fraction, "source_q": src.q,
        "n_companions": len(src.companions), "n_clumps": len(src.clumps), "has_spiral": src.spiral is not None,
        "n_image_attempts": attempts, "n_images": n_images,
        "lens_light_Re": lens_light.r_e_arcsec, "lens_light_n": lens_light.n,
        "n_field_galaxies": n_field,
        "psf_family": psf_p.family, "psf_fwhm": psf_p.fwhm_arcsec, "psf_beta": psf_p.beta,
        "psf_ellipticity": psf_p.ellipticity, "psf_phi": psf_p.phi_rad, "psf_coma": psf_p.coma_weight,
        "psf_mismatch": bool(mismatch), "psf_measured_fwhm": psf_meas_p.fwhm_arcsec,
        "psf_measured_ellipticity": psf_meas_p.ellipticity,
        "subpixel_shift_x": shift[0], "subpixel_shift_y": shift[1],
        "exposure_time": exposure, "gain": det.gain_e_per_adu, "read_noise": det.read_noise_e,
        "sky": det.sky_adu, "zero_point": s.zero_point,
        "mag_source": mag_src, "mag_source_in_field": float(adu_to_mag(total_src_adu, exposure, s.zero_point,
                                                                          det.gain_e_per_adu))
        if total_src_adu > 0 else nan,
        "source_brightness_boost_mag": boost_mag, "mag_lens": mag_lens,
        "prnu": det.prnu_sigma,
        "sky_gradient": float(np.hypot(*det.sky_gradient)) * 2.0,
        "sky_residual": det.sky_residual_adu,
        "sky_residual_plane": float(np.hypot(*det.sky_residual_plane)),
        "cosmic_rays": len(det.cosmic_rays),
        "correlated_noise": det.correlation != "none", "correlated_noise_kernel": det.correlation,
        "correlated_noise_sigma": det.correlation_sigma_pix,
        "cti": det.cti_fraction > 0, "cti_fraction": det.cti_fraction, "cti_trail": det.cti_trail_pix,
        "vignetting": det.vignetting,
        "noise_sigma": det.background_sigma_adu,
    }
    norm = lenstronomy_kwargs_to_normalised(lens.kwargs_sie, lens.kwargs_shear, lens.kwargs_nfw,
                                            grid.npix, grid.pixel_scale_arcsec)
    for name in PARAMETER_NAMES:
        row[f"norm_{name}"] = float(norm[name])
    return row


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return int(value)


def run_settings(settings: VersionSettings, version: str, n: int, seed: int, *, phase: str, split: str,
                 start_index: int, npix: int, progress: bool) -> SimulationBatch:
    """Simulate ``n`` examples with explicit settings (``simulate`` looks them up by version)."""
    version_number(version)
    phase_code(phase)
    split_code(split)
    n = _check_int("n", n, 1)
    seed = _check_int("seed", seed, 0)
    start_index = _check_int("start_index", start_index, 0)
    npix = _check_int("npix", npix, 8)
    if npix % 2:
        raise ValueError(f"npix must be even (the field centre is a pixel corner), got {npix}")
    ctx = make_context(settings, npix)
    examples = []
    rows = []
    # progress: a bar on a terminal, else a line every 30 s with done/total and ETA (the job's log)
    bar = Progress(n, f"simulate {version} {phase}/{split}", unit="pair") if progress else None
    for index in range(start_index, start_index + n):
        ex = simulate_example(ctx, example_rng(seed, version, phase, split, index))
        examples.append(ex)
        rows.append({"version": version, "seed": seed, "phase": phase, "split": split, "index": index,
                     **ex.truth})
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.close()

    def stack(attr):
        return np.stack([getattr(e, attr) for e in examples]).astype(np.float32)

    return SimulationBatch(
        source=stack("source"), observed=stack("observed"), noiseless=stack("noiseless"),
        lensed_source_noiseless=stack("lensed"),
        noise_sigma=np.array([e.noise_sigma for e in examples], dtype=np.float32),
        psf=stack("psf"), psf_measured=stack("psf_measured"), truth=pd.DataFrame(rows))
