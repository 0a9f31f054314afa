"""Real lenses: ingest of calibrated images, a classical lenstronomy reference fit, and physical diagnostics.

Entry points the workflow calls (see :mod:`astrorim.real.pipeline`)::

    run_reference(name, catalogue_csv, out_dir)
    run_lens(name, catalogue_csv, checkpoint, out_dir, reference_json=None)
    build_table1(per_lens_jsons, catalogue_csv, out_prefix)
"""

__all__ = ["build_table1", "run_lens", "run_reference"]


def __getattr__(name: str):
    # Imported lazily so that `python -m astrorim.real.pipeline` does not find the module already loaded.
    if name in __all__:
        from astrorim.real import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'astrorim.real' has no attribute {name!r}")
