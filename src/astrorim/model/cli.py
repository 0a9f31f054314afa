"""Moved: ``reconstruct`` and ``model-info`` are in :mod:`astrorim.cli`, the one command-line module.

``python -m astrorim.model.cli ...`` (the old spelling) is refused with the new one; importing this module fails
with the same hint.
"""

import sys

HINT = ("astrorim.model.cli was merged into astrorim.cli: run `astrorim reconstruct ...` or "
        "`astrorim model-info ...` (python -m astrorim.cli ...), or import from astrorim.cli")

if __name__ == "__main__":
    print(f"astrorim: error: {HINT}", file=sys.stderr)
    sys.exit(2)
raise ImportError(HINT)
