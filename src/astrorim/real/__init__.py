"""Real lenses: ingest of calibrated images, a classical lenstronomy reference fit, and physical diagnostics.

Entry points the workflow calls (see :mod:`astrorim.real.pipeline`)::

    run_reference(name, catalogue_csv, out_dir)
    run_lens(name, catalogue_csv, checkpoint, out_dir, reference_json=None)
    build_table1(per_lens_jsons, catalogue_csv, out_prefix)
"""

from astrorim.real.pipeline import build_table1, run_lens, run_reference

__all__ = ["build_table1", "run_lens", "run_reference"]
