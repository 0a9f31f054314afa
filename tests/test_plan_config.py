"""Configuration validation and the shard plan."""

import copy

import pytest

from pathlib import Path

from astrorim.config import ConfigError, load_config, validate_config
from astrorim.plan import shard_plan, split_counts

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def paper(repo_root):
    return load_config(repo_root / "config/config.yaml")


@pytest.fixture(scope="module")
def quick(repo_root):
    return load_config(repo_root / "config/quick.yaml")


def test_paper_plan_matches_the_paper(paper):
    plan = shard_plan(paper)
    per_phase = {}
    for spec in plan:
        per_phase.setdefault((spec.phase, spec.split), 0)
        per_phase[(spec.phase, spec.split)] += spec.n
    assert per_phase[("initial", "train")] == 200_000
    assert per_phase[("initial", "val")] == 50_000
    assert per_phase[("finetune", "train")] == 200_000
    assert per_phase[("finetune", "val")] == 50_000
    assert per_phase[("test", "test")] == 900
    assert all(spec.n <= paper["simulation"]["shard_size"] for spec in plan)


def test_shards_tile_each_stream_without_gaps(quick):
    streams = {}
    for spec in shard_plan(quick):
        streams.setdefault((spec.phase, spec.version, spec.split), []).append((spec.start_index, spec.n))
    for key, ranges in streams.items():
        position = 0
        for start, n in sorted(ranges):
            assert start == position, key
            position += n
        counts = quick["simulation"]["phases"][key[0]]
        expected = split_counts(key[0], counts["counts"][key[1]], counts.get("val_fraction"))[key[2]]
        assert position == expected


@pytest.mark.parametrize("mutate, key", [
    (lambda c: c["simulation"].update(shard_sise=5), "shard_sise"),
    (lambda c: c["simulation"]["phases"]["test"]["counts"].update(v7=3), "v7"),
    (lambda c: c["simulation"]["phases"]["test"]["counts"].update(v1=0), "simulation.phases.test.counts.v1"),
    (lambda c: c["simulation"]["phases"]["initial"]["counts"].update(v2=-5), "simulation.phases.initial.counts.v2"),
    (lambda c: c.pop("npix"), "npix"),
])
def test_bad_config_names_the_key(quick, mutate, key):
    config = copy.deepcopy(quick)
    mutate(config)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate_config(config, source="test.yaml")


def test_config_error_is_short_and_says_what_is_allowed(quick):
    config = copy.deepcopy(quick)
    config["run_nmae"] = config.pop("run_name")
    config["npix"] = "96"
    config["simulation"]["shard_sise"] = 5
    config["training"] = {"x": 1, "y": 2, "z": 3}
    with pytest.raises(ConfigError) as err:
        validate_config(config, source="typo.yaml")
    lines = str(err.value).splitlines()
    assert len(lines) <= 5 and lines[0] == "typo.yaml: invalid configuration"
    assert "run_nmae (did you mean run_name?): unknown key; allowed at <top level>: baseline" in lines[1]
    assert "npix: '96' is not of type 'integer'" in str(err.value) and lines[-1].startswith("  ... and ")


def test_unreadable_config(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("npix: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(bad)


@pytest.mark.parametrize("relative_path", sorted(
    str(path.relative_to(REPO)) for pattern in ("config/*.yaml", "models/*/config.yaml") for path in REPO.glob(pattern)
    if path.name != "schema.yaml"))
def test_every_committed_config_validates(relative_path):
    """The configs that README and models/*/README tell people to run still pass the schema."""
    load_config(REPO / relative_path)
