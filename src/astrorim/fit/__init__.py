"""Exact maximum-posterior lens fitting through the forward operator (docs/fit.md).

Modules, one job each: :mod:`validate` (input checks), :mod:`parameters` (order, bounds,
conversions), :mod:`lens_light` (Sérsic basis), :mod:`linear` (regularised inversion, CG),
:mod:`logdet` (stochastic Lanczos log det), :mod:`system` (building the inversion at theta),
:mod:`optimise` (Adam, evidence), :mod:`laplace` (uncertainties), :mod:`run` (fit_lenses).
"""

from astrorim.fit.optimise import FitConfig
from astrorim.fit.run import FitResult, fit_lenses

__all__ = ["FitConfig", "FitResult", "fit_lenses"]
