"""SimgenV5: weak-lensing emphasis with rejection sampling (paper §3.2.2) — differences from v4.

sigma_v ~ U(80, 180) km/s; sources are placed broadly (never at a caustic) and a draw whose source
centre has more than one image according to lenstronomy's LensEquationSolver is redrawn (lens and
position), up to 10 attempts (the last draw is kept; ``n_image_attempts`` records the count).
"""

from dataclasses import replace

from .v4 import SETTINGS as V4

SETTINGS = replace(
    V4,
    name="v5",
    sigma_v_kms=(80.0, 180.0),
    reject_multiple_images=True, max_image_attempts=10,
    near_caustic_prob=0.0,
    broad_radius_theta_e=2.5, broad_radius_max_half_fov=0.55,
    nfw_prob=0.08,
    subhalo_prob=0.25, subhalo_mean_count=0.7,
    second_lens_prob=0.0,
    field_galaxy_prob=0.9, field_galaxy_count=(3, 9),
    vignetting_prob=0.12, vignetting_max=0.05,
    spiral_style="log", spiral_amplitude=(0.25, 0.6),
)
