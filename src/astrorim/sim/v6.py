"""SimgenV6: maximum observational realism (paper §3.2.2) — differences from v5.

v6 keeps v5's realism (field galaxies, vignetting, log-spiral disks) but is not a weak-lensing set:
it returns to v4's sigma_v ~ U(80, 380) km/s without rejection sampling.
"""

from dataclasses import replace

from .settings import InstrumentRegime
from .sources import sample_morphology_class_source
from .v5 import SETTINGS as V5

SETTINGS = replace(
    V5,
    name="v6",
    cosmology="FlatLambdaCDM_H70_Om0.3",
    sigma_v_kms=(80.0, 380.0),
    reject_multiple_images=False,
    near_caustic_prob=0.28, broad_radius_theta_e=1.5, broad_radius_max_half_fov=0.5,
    source_sampler=sample_morphology_class_source,     # 50/30/20 spiral/elliptical/irregular
    instruments=(InstrumentRegime("space", 1.0, 0.04, (0.06, 0.15)),),
    psf_families=(("gaussian", 0.35), ("moffat", 0.35), ("airy", 0.30)),
    psf_coma_prob=0.40,
    correlated_noise_kernel="fixed",
    cti_prob=0.70,
    cosmic_ray_prob=0.03, cosmic_ray_track_pix=(2, 10),
    sky_gradient_2d=True,
    vignetting_prob=0.15, vignetting_max=0.08,
    source_mag=(20.0, 25.0), source_mag_normal=(22.5, 0.8),
    nfw_prob=0.05,
    subhalo_prob=0.15, subhalo_mean_count=0.5,
)
