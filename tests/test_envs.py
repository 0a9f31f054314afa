"""Conda environment files (envs/*.yaml) agree with pyproject.toml's version ranges.

Every exact pin in an env file (conda ``name=1.2.3`` / ``name==1.2.3`` / ``name 1.2.3``, pip ``name==1.2.3``)
of a package that pyproject.toml also lists (dependencies or any extra) must satisfy each pyproject specifier
for that package.  Packages listed in only one of the two places are skipped, as are env entries without an
exact pin (unpinned names, ranges) and pip lines that are not requirements (``-r``, ``-e``, URLs).  A conda
``name=1.2`` means ``1.2.*``; its stated version ``1.2`` is the one checked.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

REPO = Path(__file__).resolve().parents[1]
ENV_FILES = sorted((REPO / "envs").glob("*.yaml"))
# conda-forge names that differ from the PyPI distribution names pyproject.toml uses.
CONDA_TO_PYPI = {"pytorch": "torch"}

_CONDA = re.compile(r"^(?:[\w.-]+::)?(?P<name>[A-Za-z0-9_.\-]+)\s*(?P<spec>.*)$")


def pyproject_specifiers(path: Path = REPO / "pyproject.toml") -> dict[str, list[tuple[str, SpecifierSet]]]:
    """Canonical name -> [(requirement as written, specifier set)] over dependencies and all extras."""
    project = tomllib.loads(path.read_text())["project"]
    own = canonicalize_name(project["name"])
    lines = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        lines += extra
    out: dict[str, list[tuple[str, SpecifierSet]]] = {}
    for line in lines:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        if name != own:
            out.setdefault(name, []).append((line.split("#")[0].strip(), req.specifier))
    return out


def _conda_pin(entry: str) -> tuple[str, str | None] | None:
    m = _CONDA.match(entry.strip())
    if not m:
        return None
    name = canonicalize_name(CONDA_TO_PYPI.get(m["name"].lower(), m["name"]))
    spec = m["spec"].strip()
    if not spec:
        return name, None
    if spec.startswith("=="):
        version = spec[2:].split("=")[0]
    elif spec.startswith("="):
        version = spec[1:].split("=")[0]
    elif re.match(r"^[0-9]", spec):
        version = spec.split()[0].split("=")[0]
    else:
        return name, None  # a range: not an exact pin
    version = version.strip().removesuffix(".*").removesuffix("*")
    if any(c in version for c in ",|<>!*"):
        return name, None
    return name, version


def _pip_pin(entry: str) -> tuple[str, str | None] | None:
    entry = entry.split(" #")[0].strip()
    if not entry or entry.startswith("-") or "://" in entry:
        return None
    try:
        req = Requirement(entry)
    except InvalidRequirement:
        return None
    specs = list(req.specifier)
    if len(specs) == 1 and specs[0].operator in ("==", "===") and "*" not in specs[0].version:
        return canonicalize_name(req.name), specs[0].version
    return canonicalize_name(req.name), None


def env_pins(path: Path) -> list[tuple[str, str, str]]:
    """(kind, canonical name, pinned version) of the exact pins in a conda environment file."""
    doc = yaml.safe_load(path.read_text()) or {}
    pins = []
    for dep in doc.get("dependencies", []) or []:
        if isinstance(dep, str):
            parsed, kind = _conda_pin(dep), "conda"
            entries = [(kind, parsed)]
        elif isinstance(dep, dict):
            entries = [("pip", _pip_pin(str(e))) for e in dep.get("pip", []) or []]
        else:
            continue
        pins += [(kind, p[0], p[1]) for kind, p in entries if p is not None and p[1] is not None]
    return pins


def disagreements(path: Path, ranges: dict[str, list[tuple[str, SpecifierSet]]]) -> tuple[list[str], int]:
    """Messages naming the file and package for every pin outside a pyproject range, and the number checked."""
    problems, checked = [], 0
    for kind, name, version in env_pins(path):
        if name not in ranges:
            continue
        checked += 1
        try:
            v = Version(version)
        except InvalidVersion:
            problems.append(f"{path.name}: {kind} pin {name}={version} is not a PEP 440 version")
            continue
        for written, spec in ranges[name]:
            if not spec.contains(v, prereleases=True):
                problems.append(f"{path.name}: {kind} pin {name}=={version} is outside pyproject.toml's "
                                f"'{written}'")
    return problems, checked


def test_env_files_exist():
    assert ENV_FILES, "no envs/*.yaml found"


@pytest.mark.parametrize("path", ENV_FILES, ids=[p.name for p in ENV_FILES])
def test_env_pins_fall_within_pyproject_ranges(path):
    problems, checked = disagreements(path, pyproject_specifiers())
    assert checked > 0, f"{path.name}: no pin shared with pyproject.toml was found (parser broken?)"
    assert not problems, "\n".join(problems)


def test_parser_reports_disagreements_and_skips_what_it_cannot_check(tmp_path):
    env = tmp_path / "demo.yaml"
    env.write_text(
        "dependencies:\n"
        "  - python=3.11\n"
        "  - numpy=3.0.1\n"            # outside <3
        "  - conda-forge::scipy==1.9\n"  # outside >=1.10
        "  - h5py 3.16.0 py311_0\n"
        "  - pandas>=1.0\n"            # a range: skipped
        "  - pytorch=2.16.0\n"         # conda name of torch, outside <2.15
        "  - onlyhere=1.0\n"           # not in pyproject: skipped
        "  - pip\n"
        "  - pip:\n"
        "      - lenstronomy==1.10.0\n"  # outside >=1.11
        "      - emcee==3.1.6\n"
        "      - -r requirements.txt\n"
        "      - git+https://example.org/x.git\n")
    ranges = pyproject_specifiers()
    problems, checked = disagreements(env, ranges)
    assert checked == 6
    assert len(problems) == 4
    for name in ("numpy", "scipy", "torch", "lenstronomy"):
        assert any(p.startswith("demo.yaml: ") and f" {name}==" in p for p in problems), name
