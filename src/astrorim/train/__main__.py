"""``python -m astrorim.train``: see :mod:`astrorim.train.run`."""

import sys

from astrorim.train.run import main

sys.exit(main())
