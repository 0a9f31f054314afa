"""The baseline's Snakemake rules (dry run) and its configuration section."""

import copy
import subprocess
import sys

import pytest
import yaml

from astrorim.baseline.settings import parse_settings


@pytest.fixture()
def quick_config(repo_root):
    return yaml.safe_load((repo_root / "config/quick.yaml").read_text())


def test_settings_parse_and_reject_unknown_keys(quick_config):
    s = parse_settings(quick_config)
    assert list(s.systems) == ["system1", "system2"]
    assert s.noise_levels == (0.333, 0.1, 0.0333)
    assert s.grid.npix == 256 and s.grid.pixel_scale == pytest.approx(10 / 256)
    assert s.noise_index("high") == 2
    assert s.train.lr_final_factor == 1.0  # unset: the paper's constant rate
    annealed = copy.deepcopy(quick_config)
    annealed["baseline"]["vae"]["lr_final_factor"] = 0.05
    assert parse_settings(annealed).train.lr_final_factor == 0.05
    bad = copy.deepcopy(quick_config)
    bad["baseline"]["map"]["stpes"] = 3
    with pytest.raises(KeyError, match="stpes"):
        parse_settings(bad)
    bad = copy.deepcopy(quick_config)
    del bad["baseline"]["systems"]["system1"]["truth"]["q"]
    with pytest.raises(KeyError, match="missing"):
        parse_settings(bad)


@pytest.mark.workflow
def test_baseline_rules_dry_run(repo_root, quick_config, tmp_path):
    config = dict(quick_config, run_name="ci_baseline", data_dir=str(tmp_path / "data"),
                  results_dir=str(tmp_path / "results"))
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    rules = repo_root / "workflow" / "rules"
    (tmp_path / "Snakefile").write_text(
        f'configfile: "{tmp_path / "config.yaml"}"\n'
        f'include: "{rules / "common.smk"}"\n'
        f'include: "{rules / "simulate.smk"}"\n'
        f'include: "{rules / "train.smk"}"\n'
        f'include: "{rules / "baseline.smk"}"\n')
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(tmp_path / "Snakefile"), "-d", str(repo_root),
           "-n", "baseline_all", "--quiet", "rules"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout + result.stderr
    for rule in ("baseline_vae_data", "baseline_train_vae", "baseline_mocks", "baseline_map", "baseline_nuts",
                 "baseline_report", "baseline_compare"):
        assert rule in out, rule
    assert "simulate" in out  # the VAE data depends on the v1 simulation shards
    assert "finetune" in out  # the comparison runs the quick study's own finetuned AstroRIM
