"""dvc.yaml's stage commands: Snakemake's --configfile takes every following word as a config file, so a target
written after it is read as a missing config file. Check each rendered command's word order statically."""

import shlex
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def _rendered_commands():
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    runs = {k: v for entry in dvc["vars"] for k, v in entry["runs"].items()}
    for stage, spec in dvc["stages"].items():
        for run, item in runs.items():
            cmd = spec["do"]["cmd"]
            for key, value in item.items():
                cmd = cmd.replace("${item.%s}" % key, value)
            yield f"{stage}@{run}", cmd


@pytest.mark.parametrize("name, cmd", list(_rendered_commands()))
def test_configfile_is_followed_by_one_file_then_an_option(name, cmd):
    words = shlex.split(cmd)
    assert "${" not in cmd, f"{name}: unresolved variable in {cmd!r}"
    i = words.index("--configfile")
    assert (REPO / words[i + 1]).is_file(), f"{name}: --configfile {words[i + 1]} does not exist"
    rest = words[i + 2:]
    assert not rest or rest[0].startswith("-"), (
        f"{name}: {rest[0]!r} after --configfile {words[i + 1]} would be read as another config file; "
        "put targets before --configfile")
