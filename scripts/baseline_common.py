"""Shared start of the baseline rule scripts: import path, log redirection, threads, typed settings."""

import contextlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _rule import redirect_to_log  # noqa: E402  (also puts src/ on sys.path)


@contextlib.contextmanager
def baseline_rule(snakemake):
    """Redirect output to the rule's log, set torch's threads to the rule's, yield the parsed settings."""
    with redirect_to_log(snakemake):
        import torch

        from astrorim.baseline.settings import parse_settings

        torch.set_num_threads(max(int(snakemake.threads), 1))
        yield parse_settings(snakemake.config)
