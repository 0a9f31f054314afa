"""SimgenV1: foundation baseline with strong-arc emphasis (paper §3.2.2).

SIE + external shear only, theta_E ~ U(0.9, 1.5)", circular Gaussian PSF with FWHM 0.06-0.10" at
0.04"/pix, mild noise (read 0.8-1.8 e-, sky 0.06-0.25 ADU/pix), source mag 21.0-23.2 with the lens
0.3 mag brighter to 1.2 mag fainter, every source next to a caustic, no substructure or detector
artefacts.  These are the defaults of ``VersionSettings``; v1 only names them.
"""

from .settings import VersionSettings

SETTINGS = VersionSettings(name="v1")
