"""Shared start of every rule script: import the in-repo package, send output to the rule's log.

Scripts import ``astrorim`` from ``src/`` of this checkout, so a rule's conda environment needs only the
third-party dependencies (envs/*.yaml) and always runs the code of the workflow it belongs to.
"""

import contextlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))


@contextlib.contextmanager
def redirect_to_log(snakemake):
    """Send prints and tracebacks to ``snakemake.log[0]`` (when the rule has a log)."""
    if not snakemake.log:
        yield
        return
    Path(snakemake.log[0]).parent.mkdir(parents=True, exist_ok=True)
    with open(snakemake.log[0], "w", encoding="utf-8") as log:
        old_out, old_err = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = log
        try:
            yield
        except BaseException:
            import traceback

            traceback.print_exc(file=log)
            raise
        finally:
            sys.stdout, sys.stderr = old_out, old_err
