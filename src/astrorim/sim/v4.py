"""SimgenV4: expanded parameter space, reduced noise ceiling (paper §3.2.2) — differences from v3.

Back to one space-like instrument at 0.04"/pix (the protocol's FWHM 0.06-0.15", beta 2.5-4.8,
PSF ellipticity <= 0.12); theta_E now follows from sigma_v ~ U(80, 380) km/s.
"""

from dataclasses import replace

from .settings import InstrumentRegime
from .v3 import SETTINGS as V3

SETTINGS = replace(
    V3,
    name="v4",
    instruments=(InstrumentRegime("space", 1.0, 0.04, (0.06, 0.15)),),
    moffat_beta=(2.5, 4.8),
    psf_ellipticity_max=0.12,
    einstein_radius_mode="sigma_v", sigma_v_kms=(80.0, 380.0),
    lens_ellipticity=(0.0, 0.7),
    source_mag=(20.0, 25.0), lens_mag_offset=(-2.0, 3.0),
    shear_max=0.16,
    nfw_prob=0.22,
    subhalo_prob=0.70, subhalo_mean_count=1.0,
    read_noise_e=(0.8, 3.0), sky_adu=(0.06, 1.0),
    prnu_sigma=0.004,
    cosmic_ray_adu=(15.0, 200.0),
    second_lens_prob=0.08,
    min_source_to_lens_peak=0.0,   # fainter sources and brighter lenses are the point of v4
)
