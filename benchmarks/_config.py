"""A benchmark's ``--config``: the workflow configuration, validated, or the command line's error naming it."""

import argparse
import os

from astrorim.config import ConfigError, load_config


def load_config_or_exit(parser: argparse.ArgumentParser, path: str | os.PathLike) -> dict:
    """The validated configuration at ``path``; an invalid one ends the program through ``parser.error``."""
    try:
        return load_config(path)
    except ConfigError as err:
        parser.error(str(err))
