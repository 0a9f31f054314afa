"""SimgenV3: multi-instrument diversity (paper §3.2.2) — differences from v2.

Read noise up to 8 e- and sky up to 3 ADU/pix are the ceilings that the paper's v4 text says v4
lowered ("capped at 3.0 e- (down from 8.0)", "1.0 ADU/pixel (down from 3.0)").
"""

from dataclasses import replace

from .settings import InstrumentRegime
from .v2 import SETTINGS as V2

SETTINGS = replace(
    V2,
    name="v3",
    instruments=(
        InstrumentRegime("space", 0.45, 0.04, (0.06, 0.12)),
        InstrumentRegime("ground", 0.45, 0.20, (0.5, 1.2)),
        InstrumentRegime("intermediate", 0.10, 0.08, (0.12, 0.35)),
    ),
    psf_families=(("gaussian", 0.5), ("moffat", 0.5)),
    moffat_beta=(2.8, 4.5),
    psf_ellipticity_max=0.35,
    subpixel_shift_prob=0.85,
    psf_mismatch_prob=0.60,
    correlated_noise_prob=0.60, correlated_noise_sigma_pix=(0.8, 4.0),
    sky_residual_prob=0.60,
    near_caustic_prob=0.28,
    read_noise_e=(0.8, 8.0),
    sky_adu=(0.06, 3.0),
    subhalo_prob=0.75, subhalo_mean_count=1.4,
)
