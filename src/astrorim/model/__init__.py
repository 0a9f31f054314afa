"""The AstroRIM model: conditional forward operator with exact adjoint, encoder, RIM.

Names are imported lazily so that ``astrorim`` subcommands that do not need torch (``astrorim simulate``) start
without importing it.
"""

from importlib import import_module

_EXPORTS = {
    "AstroRIM": "astrorim.model.astrorim",
    "AstroRIMConfig": "astrorim.model.astrorim",
    "count_parameters": "astrorim.model.astrorim",
    "LensParameterEncoder": "astrorim.model.encoder",
    "BoundForwardOperator": "astrorim.model.forward",
    "ConditionalForwardOperator": "astrorim.model.forward",
    "LearnedPSF": "astrorim.model.psf",
    "RIM": "astrorim.model.rim",
    "estimate_noise_sigma": "astrorim.model.rim",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'astrorim.model' has no attribute {name!r}")
