"""SimgenV2: enhanced physics, moderate complexity (paper §3.2.2) — differences from v1."""

from dataclasses import replace

from .v1 import SETTINGS as V1

SETTINGS = replace(
    V1,
    name="v2",
    theta_e_extreme_prob=0.08,          # soft clipping: 8 % drawn from 0.6-0.9" or 1.5-1.8"
    clump_prob=0.75, clump_max=6,
    spiral_prob=0.35,
    nfw_prob=0.18,
    subhalo_prob=0.70, subhalo_mean_count=1.0,
    prnu_sigma=0.01,
    sky_gradient_max=0.02,              # 1-D (along x)
    cosmic_ray_prob=0.02,
    psf_ellipticity_max=0.08,
    min_source_to_lens_peak=0.35,
)
