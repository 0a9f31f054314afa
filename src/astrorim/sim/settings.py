"""The settings that distinguish the six simulator versions.

One frozen dataclass holds every number a version may change; ``v1.py`` states the foundation and
each later module derives its settings from an earlier one with ``dataclasses.replace``, so each
file lists only what differs.  Two behaviours that are more than numbers are hooks:
``source_sampler`` (how a source galaxy is drawn) and ``reject_multiple_images`` (v5's rejection
sampling with lenstronomy's LensEquationSolver).

Conventions: ranges are (low, high) closed intervals sampled uniformly unless a field says
otherwise; angles in arcsec, PSF widths FWHM in arcsec, pixel scales in arcsec/pixel, read noise in
electrons, sky in ADU per detector pixel over the whole exposure, cosmic-ray amplitudes in ADU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

Range = tuple[float, float]


@dataclass(frozen=True)
class InstrumentRegime:
    """One observing set-up: pixel scale and PSF FWHM range (and its draw probability)."""

    name: str
    weight: float
    pixel_scale_arcsec: float
    psf_fwhm_arcsec: Range


@dataclass(frozen=True)
class VersionSettings:
    name: str

    # --- cosmology and redshifts ------------------------------------------------------------
    cosmology: str = "Planck15"                     # "Planck15" or "FlatLambdaCDM_H70_Om0.3"
    z_lens: Range = (0.2, 0.8)                      # uniform
    z_source_minus_lens: Range = (0.4, 2.5)         # z_s = z_l + U(...), capped at z_source_max
    z_source_max: float = 3.5

    # --- main lens (SIE + external shear) ---------------------------------------------------
    # "theta_e": theta_E ~ U(theta_e_arcsec), sigma_v derived; "sigma_v": sigma_v ~ U(sigma_v_kms),
    # theta_E from the SIS relation.
    einstein_radius_mode: str = "theta_e"
    theta_e_arcsec: Range = (0.9, 1.5)
    theta_e_extreme_prob: float = 0.0               # v2's "soft clipping": draw outside the range
    theta_e_extreme_arcsec: Range = (0.6, 1.8)      # ... from [lo, range_lo) U (range_hi, hi]
    sigma_v_kms: Range = (80.0, 380.0)
    theta_e_max_half_fov: float = 0.9               # Einstein ring kept inside the field
    lens_ellipticity: Range = (0.0, 0.5)            # e = 1 - q of the SIE
    lens_center_half_fov: float = 0.05              # |x0|, |y0| <= this * half field of view
    shear_max: float = 0.10
    nfw_prob: float = 0.0
    nfw_log10_m200_msun: Range = (12.5, 13.5)       # group-halo M200 (200 rho_crit(z_l)) [Msun]
    nfw_concentration: Range = (4.0, 8.0)
    nfw_rs_arcsec: Range = (10.0, 30.0)             # (M200, c) redrawn until Rs falls in here
    subhalo_prob: float = 0.0
    subhalo_mean_count: float = 0.0                 # Poisson mean when subhalos are present
    subhalo_theta_e_arcsec: Range = (0.003, 0.02)
    subhalo_annulus_theta_e: Range = (0.5, 1.5)     # placed uniformly in this annulus [theta_E]
    # The Poisson count is capped (min(N, cap)) so that every subhalo fits the fixed-width truth
    # columns subhalo_{k}_* (k < cap).  At 12 the cap never binds in practice: P(N > 12) is 3.5e-9
    # per draw at the largest mean (1.4, v3), ~2e-4 expected capped examples in the paper's 500k, so
    # introducing it changed no random draw of any existing shard.
    subhalo_max_count: int = 12
    second_lens_prob: float = 0.0
    second_lens_theta_e_ratio: Range = (0.3, 0.7)
    second_lens_separation_theta_e: Range = (1.0, 2.0)
    second_lens_mag_offset: Range = (0.3, 1.5)      # fainter than the main lens by this [mag]

    # --- source position ---------------------------------------------------------------------
    near_caustic_prob: float = 1.0
    near_caustic_offset_disk_re: Range = (0.0, 0.5)  # offset from a caustic point [disk R_e]
    broad_radius_theta_e: float = 1.5               # broad placement: uniform in a disk of radius
    broad_radius_max_half_fov: float = 0.5          # min(this * theta_E, this * half fov)
    reject_multiple_images: bool = False
    max_image_attempts: int = 10

    # --- source galaxy -----------------------------------------------------------------------
    # (rng, settings, supersampled pixel [arcsec]) -> sources.SourceGalaxy; None: bulge + disk
    source_sampler: Callable | None = None
    bulge_re_arcsec: Range = (0.03, 0.14)
    bulge_n: Range = (1.5, 4.5)
    disk_re_factor: Range = (1.4, 3.6)
    bulge_fraction_beta: tuple[float, float] = (1.6, 3.0)
    source_ellipticity: Range = (0.0, 0.6)
    source_misalignment_deg: float = 15.0           # disk PA = bulge PA + N(0, this)
    companions_max: int = 3                         # N ~ uniform{0..max}, lensed with the source
    companion_flux_fraction: Range = (0.03, 0.2)
    companion_re_arcsec: Range = (0.02, 0.10)
    companion_distance_arcsec: Range = (0.15, 0.6)
    clump_prob: float = 0.0
    clump_max: int = 6
    clump_amplitude_frac: Range = (0.02, 0.8)       # x the smooth profile's peak
    clump_sigma_superpix: Range = (0.4, 4.0)        # in supersampled-pixel units
    spiral_prob: float = 0.0
    spiral_style: str = "paper"                     # "paper": eq. 34; "log": log-spiral disk arms
    spiral_amplitude: Range = (0.06, 0.06)

    # --- photometry --------------------------------------------------------------------------
    zero_point: float = 25.94                       # AB mag giving 1 e-/s (HST/ACS F814W)
    gain_e_per_adu: float = 2.0
    exposure_s: Range = (900.0, 1800.0)
    source_mag: Range = (21.0, 23.2)
    source_mag_normal: tuple[float, float] | None = None  # (mean, sigma), clipped to source_mag
    lens_mag_offset: Range = (-0.3, 1.2)            # mag_lens = mag_source + offset
    lens_re_arcsec: Range = (0.5, 1.4)
    lens_n: Range = (3.0, 5.0)
    min_source_to_lens_peak: float = 0.0            # v2: lensed-source peak >= this x lens peak
    field_galaxy_prob: float = 0.0
    field_galaxy_count: tuple[int, int] = (3, 9)
    field_galaxy_mag: Range = (23.0, 26.5)
    field_galaxy_re_arcsec: Range = (0.05, 0.4)

    # --- instrument and PSF ------------------------------------------------------------------
    instruments: tuple[InstrumentRegime, ...] = (InstrumentRegime("space", 1.0, 0.04, (0.06, 0.10)),)
    psf_families: tuple[tuple[str, float], ...] = (("gaussian", 1.0),)
    moffat_beta: Range = (2.8, 4.5)
    psf_ellipticity_max: float = 0.0
    psf_coma_prob: float = 0.0
    psf_coma_weight: Range = (0.05, 0.25)           # flux fraction moved into the displaced lobe
    psf_mismatch_prob: float = 0.0
    psf_mismatch_fwhm_frac: Range = (0.05, 0.15)    # |measured / true FWHM - 1|
    psf_size_pix: int = 25                          # detector-resolution kernel side (odd)
    subpixel_shift_prob: float = 0.0

    # --- noise and detector ------------------------------------------------------------------
    read_noise_e: Range = (0.8, 1.8)
    sky_adu: Range = (0.06, 0.25)
    prnu_sigma: float = 0.0
    sky_gradient_max: float = 0.0                   # fractional sky change across the field
    sky_gradient_2d: bool = False
    sky_residual_prob: float = 0.0
    sky_residual_sigma: float = 0.5                 # residual offset and plane, each <= this x noise
    cosmic_ray_prob: float = 0.0
    cosmic_ray_hits: tuple[int, int] = (1, 5)
    cosmic_ray_adu: Range = (40.0, 350.0)
    cosmic_ray_track_pix: tuple[int, int] = (1, 1)
    correlated_noise_prob: float = 0.0
    correlated_noise_kernel: str = "gaussian"       # "gaussian" (sigma below) or "fixed"
    correlated_noise_sigma_pix: Range = (0.8, 4.0)
    cti_prob: float = 0.0
    cti_fraction: Range = (0.002, 0.02)             # charge fraction moved into the trail
    cti_trail_pix: Range = (1.0, 4.0)               # e-folding length of the trail
    vignetting_prob: float = 0.0
    vignetting_max: float = 0.0

    def __post_init__(self) -> None:
        if self.psf_size_pix % 2 != 1:
            raise ValueError(f"{self.name}: psf_size_pix must be odd, got {self.psf_size_pix}")
        if self.einstein_radius_mode not in ("theta_e", "sigma_v"):
            raise ValueError(f"{self.name}: einstein_radius_mode {self.einstein_radius_mode!r}")
        if self.spiral_style not in ("paper", "log"):
            raise ValueError(f"{self.name}: spiral_style {self.spiral_style!r}")
        if self.correlated_noise_kernel not in ("gaussian", "fixed"):
            raise ValueError(f"{self.name}: correlated_noise_kernel {self.correlated_noise_kernel!r}")
        if isinstance(self.subhalo_max_count, bool) or not isinstance(self.subhalo_max_count, int) \
                or self.subhalo_max_count < 0:
            raise ValueError(f"{self.name}: subhalo_max_count must be an integer >= 0, got {self.subhalo_max_count!r}")
        if not self.instruments:
            raise ValueError(f"{self.name}: at least one instrument regime is needed")
