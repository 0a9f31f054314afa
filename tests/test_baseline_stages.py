"""The workflow steps end to end at toy size: data -> VAE -> mocks -> MAP -> NUTS -> report -> compare."""

import copy
import subprocess

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from astrorim.baseline import data as vae_data
from astrorim.baseline import stages
from astrorim.baseline.settings import parse_settings
from astrorim.io.shards import write_shard
from astrorim.model import AstroRIM
from astrorim.model.checkpoint import save_model_checkpoint

NOISES = ("low", "med", "high")


@pytest.fixture(scope="module")
def toy(repo_root, tmp_path_factory):
    b = copy.deepcopy(yaml.safe_load((repo_root / "config/quick.yaml").read_text())["baseline"])
    b["vae"].update(width=4, max_epochs=1, patience=1)
    b["lens"].update(npix=64, fov_arcsec=8.0)
    b["map"].update(steps=3, n_starts=2, record_every=2)
    b["nuts"].update(warmup=2, samples=3, max_tree_depth=2)
    b["compare"].update(n_examples=3, map_steps=2)
    b["systems"] = {"system2": b["systems"]["system2"]}
    return parse_settings({"baseline": b}), tmp_path_factory.mktemp("baseline")


@pytest.fixture(scope="module")
def toy_run(toy):
    """Every step up to the report, as the rules chain them; returns the step outputs."""
    settings, d = toy
    out = {"counts": stages.build_vae_data(settings, {}, d / "data.h5")}
    out["vae"] = stages.train_vae_stage(settings, d / "data.h5", d / "vae.pt", d / "train.json", d / "f2.png",
                                        d / "f3.png", d / "elbo.png", progress=False)
    out["table1"] = stages.mocks_stage(settings, d / "data.h5", {"system2": d / "system2.npz"}, d / "t1.csv")
    keys = [("system2", n) for n in NOISES]
    out["maps"] = {k: d / f"m_{k[0]}_{k[1]}.npz" for k in keys}
    out["nuts"] = {k: d / f"n_{k[0]}_{k[1]}.npz" for k in keys}
    out["nuts_json"] = {k: d / f"n_{k[0]}_{k[1]}.json" for k in keys}
    out["map_info"] = {k: stages.map_stage(settings, d / "vae.pt", d / "system2.npz", k[1], out["maps"][k],
                                           d / f"m_{k[0]}_{k[1]}.json", progress=False) for k in keys}
    out["nuts_info"] = {k: stages.nuts_stage(settings, d / "vae.pt", d / "system2.npz", out["maps"][k], k[1],
                                             out["nuts"][k], out["nuts_json"][k], progress=False) for k in keys}
    stages.report_stage(settings, d / "vae.pt", {"system2": d / "system2.npz"}, out["maps"], out["nuts"],
                        out["nuts_json"], {"system2": d / "map_system2.png"}, {"system2": d / "post_system2.png"},
                        d / "map.csv", d / "post.csv")
    return out


def _benchmark_config(repo_root, tmp_path) -> tuple:
    """A valid configuration file for the baseline benchmarks and studies: the quick one at the toy's grid, system 2 only,
    its results under ``tmp_path``."""
    config = yaml.safe_load((repo_root / "config/quick.yaml").read_text())
    config["results_dir"] = str(tmp_path / "results")
    config["data_dir"] = str(tmp_path / "data")
    config["baseline"]["lens"].update(npix=64, fov_arcsec=8.0)
    config["baseline"]["systems"] = {"system2": config["baseline"]["systems"]["system2"]}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _benchmark_results(toy, repo_root, tmp_path):
    """A benchmark configuration whose results directory holds the toy VAE and mock."""
    import shutil

    _, d = toy
    config = _benchmark_config(repo_root, tmp_path)
    for sub in ("vae", "mocks", "map"):
        (tmp_path / "results/baseline" / sub).mkdir(parents=True)
    shutil.copy(d / "vae.pt", tmp_path / "results/baseline/vae/vae.pt")
    shutil.copy(d / "system2.npz", tmp_path / "results/baseline/mocks/system2.npz")
    return config


def test_all_steps_write_their_outputs(toy, toy_run):
    settings, d = toy
    assert toy_run["counts"]["test"] > 10
    assert toy_run["vae"]["latent_prior"]["cov_factor"] == 9.0 and len(toy_run["vae"]["rotation"]["rms_error"]) == 6
    assert not stages.vae_resume_path(d / "vae.pt").parent.exists()  # the training state is removed when done
    assert toy_run["vae"]["train"]["grad_clip"] == settings.train.grad_clip == 0.0
    table = toy_run["table1"]
    assert list(table["noise"]) == ["low", "med", "high"] and set(table["system"]) == {"system2"}
    assert table["snr"].tolist()[1] == 313.0  # iota calibrated to Table 1's medium S/N of system 2
    assert table["snr"].is_monotonic_increasing
    for info in toy_run["map_info"].values():
        assert info["steps"] == 3 and len(info["log_joint"]) == 2
        assert np.isfinite(info["log_joint_gain_last_tenth"])
    assert all(info["samples"] == 3 for info in toy_run["nuts_info"].values())
    maps, post = pd.read_csv(d / "map.csv"), pd.read_csv(d / "post.csv")
    assert len(maps) == 3 * 12 and set(post["noise"]) == set(NOISES) and len(post) == 3 * 12
    for name in ("f2.png", "f3.png", "map_system2.png", "post_system2.png"):
        assert (d / name).stat().st_size > 10_000


def _test_shard(path, npix=32, n=2, diagnostics=True):
    """A held-out-test-like shard: a ring (the lensed source) plus a round lens light, and their truth."""
    rows, cols = np.indices((npix, npix))
    ring = np.exp(-0.5 * (np.hypot(rows - 15.5, cols - 15.5) - 8) ** 2 / 4.0)
    lens_light = 2.0 * np.exp(-0.5 * np.hypot(rows - 15.5, cols - 15.5) ** 2 / 9.0)
    blob = np.exp(-0.5 * np.hypot(rows - 15.5, cols - 15.5) ** 2 / 4.0)
    batch = type("Batch", (), {})()
    batch.observed = np.stack([20 * (ring + lens_light)] * n)
    batch.source = np.stack([blob] * n)
    batch.psf = np.ones((n, 3, 3)) / 9
    batch.noise_sigma = np.ones(n)
    batch.truth = pd.DataFrame({"theta_E": [0.8] * n, "q": [0.9] * n, "phi": [0.1] * n, "center_x": [0.0] * n,
                                "center_y": [0.0] * n, "gamma1": [0.01] * n, "gamma2": [0.0] * n,
                                "pixel_scale": [0.1] * n})
    batch.noiseless = batch.observed
    batch.lensed_source_noiseless = np.stack([20 * ring] * n)
    write_shard(path, batch, {"version": "v1", "phase": "test", "split": "test", "seed": 1, "start_index": 0},
                store_diagnostics=diagnostics)
    return path


@pytest.fixture(scope="module")
def rim_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    return save_model_checkpoint(tmp_path_factory.mktemp("rim") / "rim.pt",
                                 AstroRIM(dict(npix=32, n_iter=2)).eval(), meta={"epoch": 1})


def test_vae_stage_interrupted_after_training_resumes_without_retraining(toy, toy_run, tmp_path, monkeypatch):
    settings, d = toy
    state = stages.vae_resume_path(tmp_path / "vae.pt")
    args = (settings, d / "data.h5", tmp_path / "vae.pt", tmp_path / "train.json", tmp_path / "f2.png",
            tmp_path / "f3.png", tmp_path / "elbo.png")
    with monkeypatch.context() as patch:
        patch.setattr(stages.io, "save_vae", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
        with pytest.raises(KeyboardInterrupt):
            stages.train_vae_stage(*args, progress=False)
    assert state.exists() and not (tmp_path / "vae.pt").exists()
    trained_epochs = len(torch.load(state, weights_only=False)["history"]["val_elbo"])
    with monkeypatch.context() as patch:  # the rerun must not take a single optimiser step
        patch.setattr(torch.optim.Adam, "step", lambda *a, **k: pytest.fail("the finished training was rerun"))
        info = stages.train_vae_stage(*args, progress=False)
    assert len(info["history"]["val_elbo"]) == trained_epochs and info["history"] == toy_run["vae"]["history"] | {
        "wall_s": info["history"]["wall_s"]}
    assert (tmp_path / "vae.pt").exists() and not state.parent.exists()


def test_compare_puts_astrorim_map_and_nuts_side_by_side(toy, toy_run, rim_checkpoint, tmp_path):
    settings, d = toy
    shards = [_test_shard(tmp_path / "shard.h5")]
    summary = stages.compare_stage(settings, d / "vae.pt", rim_checkpoint, shards, {"system2": d / "system2.npz"},
                                   toy_run["maps"], toy_run["nuts_json"], toy_run["nuts"], tmp_path / "c.csv",
                                   tmp_path / "s.csv", tmp_path / "c.png", progress=False)
    table = pd.read_csv(tmp_path / "c.csv")
    per_set = table.groupby(["set", "method"]).size().to_dict()
    # 3 noise levels of one mock system; the shard holds only 2 of the 3 test examples asked for
    assert per_set == {("mock", "astrorim"): 3, ("mock", "astrorim_fit"): 3, ("mock", "paper003_map"): 3,
                       ("mock", "paper003_nuts"): 3, ("test", "astrorim"): 2, ("test", "astrorim_fit"): 2,
                       ("test", "paper003_map"): 2}
    fit = table[table.method == "astrorim_fit"]
    assert fit["fit_flag"].notna().all() and table.loc[table.method != "astrorim_fit", "fit_flag"].isna().all()
    mock_map = table[(table.set == "mock") & (table.method == "paper003_map")].set_index("example")
    for noise in NOISES:
        best = toy_run["map_info"][("system2", noise)]["best"]
        assert mock_map.loc[f"system2/{noise}", "theta_E_est"] == pytest.approx(best["r_ein"], rel=1e-6)
        assert mock_map.loc[f"system2/{noise}", "theta_E_true"] == pytest.approx(1.7)
    with_source = table[~table.method.isin(["paper003_nuts", "astrorim_fit"])]
    assert with_source["source_mse"].notna().all() and with_source["source_ssim"].between(-1, 1).all()
    fitted = fit[~fit["fit_flag"].str.startswith("refused")]  # a refused fit has no numbers, by design
    assert fitted["source_mse"].notna().all() and fitted["theta_E_est"].notna().all()
    assert table[table.method == "paper003_nuts"]["source_mse"].isna().all()
    assert (table["wall_s"] > 0).all()
    assert set(summary["method"]) == {"astrorim", "astrorim_fit", "paper003_map", "paper003_nuts"}
    assert (tmp_path / "c.png").stat().st_size > 20_000


def test_compare_needs_the_lens_light_of_the_test_shards(toy, toy_run, rim_checkpoint, tmp_path):
    settings, d = toy
    shards = [_test_shard(tmp_path / "shard.h5", diagnostics=False)]
    with pytest.raises(ValueError, match="store_diagnostics"):
        stages.compare_stage(settings, d / "vae.pt", rim_checkpoint, shards, {}, {}, {}, {}, tmp_path / "c.csv",
                             tmp_path / "s.csv", tmp_path / "c.png", progress=False)


def test_map_convergence_benchmark_reports_each_schedule(toy, toy_run, tmp_path, repo_root):
    """studies/baseline_map_convergence.py on the toy VAE and mock: one row per schedule plus the truth start,
    which (knowing the answer) ends far closer to the truth than two steps from the prior centre."""
    import json
    import shutil

    settings, d = toy
    config = _benchmark_results(toy, repo_root, tmp_path)
    module = _load_script(repo_root, "studies", "baseline_map_convergence")
    out = tmp_path / "convergence.json"
    module.main(["--config", str(config), "--system", "system2", "--schedule", "2:0.02", "--schedule", "3:0.05",
                 "--phi-start", "1.0", "--truth-start", "2:0.02", "--threads", "1", "--out", str(out)])
    report = json.loads(out.read_text())
    assert [(r["start"], r["phi_start"], r["steps"], r["lr"]) for r in report["runs"]] == [
        ("prior centre", None, 2, 0.02), ("prior centre", None, 3, 0.05), ("prior centre, phi moved", 1.0, 2, 0.02),
        ("truth", None, 2, 0.02)]
    # Two small steps leave phi next to where it started: 0 (the prior centre) for the first run, 1 rad for the moved.
    phi_true = stages.load_mock(d / "system2.npz")["truth"]["phi"]
    final_phi = [phi_true + abs(phi_true) * r["rel_error_pct"]["phi"] / 100 for r in report["runs"]]
    assert abs(final_phi[0]) < 0.1 and abs(final_phi[2] - 1.0) < 0.1
    with pytest.raises(SystemExit):
        module.main(["--config", str(config), "--system", "system2", "--phi-start", "2.0", "--out", str(out)])
    # Each side alone (for parallel processes) gives the rows of the full run.
    for only, rows in (("truth", report["runs"][-1:]), ("prior-centre", report["runs"][:1])):
        part = module.main(["--config", str(config), "--system", "system2", "--schedule", "2:0.02", "--only", only,
                            "--truth-start", "2:0.02", "--threads", "1", "--out", str(tmp_path / f"{only}.json")])
        assert [(r["start"], r["log_joint"]) for r in part["runs"]] == [(r["start"], r["log_joint"]) for r in rows]
    assert np.isfinite(report["log_joint_at_truth_encoded_source"])
    truth_run, centre_run = report["runs"][-1], report["runs"][0]
    assert abs(truth_run["rel_error_pct"]["r_ein"]) < abs(centre_run["rel_error_pct"]["r_ein"])
    # The well-specified control observes the VAE's own drawing of the source: at the truth the model then
    # misses only the noise, so the truth scores higher than on the real mock.
    control = tmp_path / "control.json"
    module.main(["--config", str(config), "--system", "system2", "--schedule", "2:0.02", "--truth-start", "2:0.02",
                 "--well-specified", "--threads", "1", "--out", str(control)])
    control_report = json.loads(control.read_text())
    assert "well-specified" in control_report["source"] and report["source"] == "mock source"
    assert report["source_origin"] in set(vae_data.read_dataset(d / "data.h5").origin["test"])
    assert control_report["log_joint_at_truth_encoded_source"] > report["log_joint_at_truth_encoded_source"]
    # --misfit-fraction scales the part of the source that the VAE cannot draw: 0 is the control, 1 the mock itself
    # (re-observed to the same observation), so the truth scores as in those two runs.
    for fraction, same_as in ((0.0, control_report), (1.0, report)):
        scaled = module.main(["--config", str(config), "--system", "system2", "--schedule", "2:0.02",
                              "--truth-start", "2:0.02", "--misfit-fraction", str(fraction), "--only", "truth",
                              "--threads", "1", "--out", str(tmp_path / f"misfit{fraction}.json")])
        assert scaled["misfit_fraction"] == fraction
        assert scaled["log_joint_at_truth_encoded_source"] == pytest.approx(
            same_as["log_joint_at_truth_encoded_source"], rel=1e-7)
    half = module.main(["--config", str(config), "--system", "system2", "--truth-start", "2:0.02", "--only",
                        "truth", "--misfit-fraction", "0.5", "--threads", "1", "--out", str(tmp_path / "half.json")])
    assert "0.5 x its misfit" in half["source"]
    assert half["log_joint_at_truth_encoded_source"] not in (report["log_joint_at_truth_encoded_source"],
                                                              control_report["log_joint_at_truth_encoded_source"])
    for bad in (["--misfit-fraction", "1.5"], ["--misfit-fraction", "0.5", "--well-specified"]):
        with pytest.raises(SystemExit):
            module.main(["--config", str(config), "--system", "system2", *bad, "--out", str(tmp_path / "bad.json")])
    # The seen-source control swaps in a training-split image of the same kind (the VAE has seen it).
    seen = tmp_path / "seen.json"
    with pytest.raises(SystemExit):  # no dataset yet: the error names the file and the rule that writes it
        module.main(["--config", str(config), "--system", "system2", "--seen-source", "--out", str(seen)])
    (tmp_path / "data/baseline").mkdir(parents=True)
    shutil.copy(d / "data.h5", tmp_path / "data/baseline/vae_data.h5")
    module.main(["--config", str(config), "--system", "system2", "--schedule", "2:0.02", "--truth-start", "2:0.02",
                 "--seen-source", "--threads", "1", "--out", str(seen)])
    seen_report = json.loads(seen.read_text())
    origin = seen_report["source_origin"]
    dataset = vae_data.read_dataset(d / "data.h5")
    assert origin in set(dataset.origin["train"]) and origin not in set(dataset.origin["test"])
    assert np.isfinite(seen_report["log_joint_at_truth_encoded_source"])
    with pytest.raises(SystemExit):
        module.main(["--config", str(config), "--system", "system2", "--seen-source", "--well-specified",
                     "--out", str(seen)])
    # Pinned shear: both starts keep (gamma1, gamma2) within the pin of the truth while the rest moves.
    pinned = module.main(["--config", str(config), "--system", "system2", "--schedule", "3:0.05", "--truth-start",
                          "2:0.02", "--pin-shear", "--threads", "1", "--out", str(tmp_path / "pinned.json")])
    truth = stages.load_mock(d / "system2.npz")["truth"]
    half_width = pinned["pinned_shear_half_width"]
    assert half_width == module.PIN_HALF_WIDTH and report["pinned_shear_half_width"] is None
    for run in pinned["runs"]:
        for name in ("gamma1", "gamma2"):
            estimate = truth[name] * (1 + run["rel_error_pct"][name] / 100)
            assert abs(estimate - truth[name]) <= half_width * 1.0001
    assert pinned["runs"][0]["rel_error_pct"]["r_ein"] != 0.0


def _load_script(repo_root, folder, name):
    """A program of benchmarks/ (performance) or studies/ (the paper-003 research experiments) as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, repo_root / folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("angle_deg,ratio", [(0.0, 0.5), (30.0, 0.7), (-60.0, 0.4), (89.0, 0.8)])
def test_light_moments_recover_an_elliptical_gaussians_orientation_and_axis_ratio(repo_root, angle_deg, ratio):
    fidelity = _load_script(repo_root, "studies", "baseline_source_prior_fidelity")
    c = np.arange(64) - 31.5
    yy, xx = np.meshgrid(c, c, indexing="ij")
    t = np.radians(angle_deg)
    u, v = xx * np.cos(t) + yy * np.sin(t), -xx * np.sin(t) + yy * np.cos(t)
    image = np.exp(-0.5 * ((u / 8.0) ** 2 + (v / (8.0 * ratio)) ** 2))
    got_angle, got_ratio = fidelity.light_moments(image)
    assert fidelity.wrapped_angle_deg(got_angle - angle_deg) == pytest.approx(0.0, abs=0.05)
    assert got_ratio == pytest.approx(ratio, rel=2e-3)
    assert fidelity.wrapped_angle_deg(179.0) == pytest.approx(-1.0)


def test_source_prior_fidelity_benchmark_measures_each_vae_and_mock(toy, toy_run, tmp_path, repo_root):
    """studies/baseline_source_prior_fidelity.py on the toy VAE and mock: the best decoder fit starts at the
    encoder mean, so it ends no worse than it; the high-S/N MAP errors are read from the map folder."""
    import json
    import shutil

    settings, d = toy
    config = _benchmark_config(repo_root, tmp_path)
    (tmp_path / "results/baseline/mocks").mkdir(parents=True)
    shutil.copy(d / "system2.npz", tmp_path / "results/baseline/mocks/system2.npz")
    (tmp_path / "map").mkdir()
    shutil.copy(d / "m_system2_high.json", tmp_path / "map/system2_high.json")
    fidelity = _load_script(repo_root, "studies", "baseline_source_prior_fidelity")
    out = tmp_path / "fidelity.json"
    fidelity.main(["--config", str(config), "--vae", f"toy={d / 'vae.pt'}", "--map-dir", f"toy={tmp_path / 'map'}",
                   "--steps", "40", "--threads", "1", "--out", str(out)])
    row = json.loads(out.read_text())["vaes"]["toy"]["systems"]["system2"]
    assert 0 < row["rms_best"] <= row["rms_encoded"] + 1e-6
    assert -90 < row["orientation_error_deg"] <= 90
    expected = toy_run["map_info"][("system2", "high")]["rel_error_pct"]
    assert row["map_high_snr_rel_error_pct"]["phi"] == pytest.approx(expected["phi"])
    with pytest.raises(SystemExit):
        fidelity.main(["--config", str(config), "--vae", f"toy={d / 'vae.pt'}", "--map-dir", "other=x",
                       "--out", str(out)])


def test_speed_benchmark_times_map_with_polish_and_nuts(toy, toy_run, tmp_path, repo_root):
    """benchmarks/baseline.py on the toy VAE: a few steps of each, the polish reported, the targets judged."""
    import json

    settings, d = toy
    speed = _load_script(repo_root, "benchmarks", "baseline")
    out = tmp_path / "speed.json"
    speed.main(["--vae", str(d / "vae.pt"), "--untrained-width", "0", "--map-timing-steps", "2", "--map-steps", "3",
                "--map-polish", "3", "--nuts-warmup", "2", "--nuts-samples", "2", "--max-tree-depth", "2",
                "--out", str(out)])
    (case,) = json.loads(out.read_text())["cases"]
    assert case["map_full"]["polish_iterations"] == 3 and len(case["map_full"]["polish_gain"]) == 1
    assert case["map_seconds_per_step"] > 0 and case["nuts"]["samples"] == 2
    assert set(case["targets_met"]) == {"map_cpu_le_2min", "nuts_500_cpu_le_60min", "map_lens_within_1pct"}


def test_epl_benchmark_times_the_current_code_beside_a_revision(tmp_path, repo_root):
    """benchmarks/epl_deflection.py against HEAD's epl.py: both timed per case and in MAP steps, and (the code being
    the same in a clean checkout) values and gradients identical; an unknown revision is refused by name."""
    import json

    benchmark = _load_script(repo_root, "benchmarks", "epl_deflection")
    out = tmp_path / "epl.json"
    benchmark.main(["--q", "0.5", "--batch", "1", "2", "--repeats", "1", "--compare-rev", "HEAD", "--map-steps", "2",
                    "--map-rounds", "2", "--map-width", "8", "--out", str(out)])
    report = json.loads(out.read_text())
    same_code = not subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "src/astrorim/physics/epl.py"],
                                   cwd=repo_root).returncode
    (map_row,) = report["map_steps"]
    assert map_row["vae_width"] == 8 and len(map_row["current_cpu_s_per_step_rounds"]) == 2
    assert map_row["current_cpu_s_per_step"] > 0 and map_row["rev_HEAD_cpu_s_per_step"] > 0
    assert [(c["q"], c["batch"]) for c in report["cases"]] == [(0.5, 1), (0.5, 2)]
    for case in report["cases"]:
        assert case["series_terms"] == 18
        assert min(case["current_forward_s"], case["current_forward_backward_s"], case["rev_HEAD_forward_s"],
                   case["rev_HEAD_forward_backward_s"]) > 0
        if same_code:
            assert case["max_deflection_difference_rel"] == 0.0 and case["max_gradient_difference_rel"] == 0.0
    with pytest.raises(SystemExit):  # MAP timing needs a second code
        benchmark.main(["--q", "0.5", "--batch", "1", "--repeats", "1", "--map-steps", "2", "--out", str(out)])
    with pytest.raises(SystemExit, match="no-such-revision"):
        benchmark.main(["--q", "0.5", "--batch", "1", "--repeats", "1", "--compare-rev", "no-such-revision",
                        "--out", str(out)])


def test_map_batch_benchmark_fits_every_mock_image_alone_and_batched(toy, toy_run, tmp_path, repo_root):
    import json

    config = _benchmark_results(toy, repo_root, tmp_path)
    batch = _load_script(repo_root, "benchmarks", "baseline_map_batch")
    out = tmp_path / "batch.json"
    batch.main(["--config", str(config), "--steps", "3", "--out", str(out)])
    report = json.loads(out.read_text())
    assert report["images"] == ["system2/low", "system2/med", "system2/high"]
    assert report["batched"]["plate_elements"] == 3 * report["map"]["n_starts"]
    assert report["one_by_one"]["wall_s_per_image"] > 0 and report["batched"]["wall_s_per_image"] > 0
    # Three Adam steps cannot amplify float32 round-off: the batched fits are the lone fits.
    assert all(f["best_start_alone"] == f["best_start_batched"] for f in report["fits"])
    assert all(v < 1e-4 for v in report["max_abs_difference_same_best_start"].values())
    with pytest.raises(SystemExit):
        batch.main(["--config", str(config), "--steps", "0", "--out", str(out)])


def test_nuts_chain_benchmark_reports_the_posterior_of_a_chain_from_the_workflow_map(toy, toy_run, tmp_path,
                                                                                       repo_root):
    import json
    import shutil

    chain = _load_script(repo_root, "studies", "baseline_nuts_chain")
    out = tmp_path / "chain.json"
    config = _benchmark_results(toy, repo_root, tmp_path)
    with pytest.raises(SystemExit):  # no MAP file for system 2 at high S/N yet
        chain.main(["--config", str(config), "--system", "system2", "--out", str(out)])
    shutil.copy(toy_run["maps"][("system2", "high")], tmp_path / "results/baseline/map/system2_high.npz")
    chain.main(["--config", str(config), "--system", "system2", "--warmup", "2", "--samples", "6",
                "--max-tree-depth", "2", "--out", str(out)])
    report = json.loads(out.read_text())
    assert report["nuts"]["samples"] == 6 and report["nuts"]["max_tree_depth"] == 2
    samples = stages.load_samples(out.with_suffix(".npz"))
    truth = stages.load_mock(tmp_path / "results/baseline/mocks/system2.npz")["truth"]
    by_param = {row["param"]: row for row in report["posterior"]}
    assert set(by_param) == {"r_ein", "slope", "q", "phi", "x_lens", "y_lens", "gamma1", "gamma2"}
    for p, row in by_param.items():
        assert row["n_samples"] == 6 and row["truth"] == pytest.approx(truth[p])
        assert row["mean"] == pytest.approx(float(np.mean(samples[p])), rel=1e-6)
        assert np.mean(row["half_means"]) == pytest.approx(row["mean"], rel=1e-6)


def _prior_study_setup(toy, repo_root, tmp_path, epochs: int) -> tuple:
    """A benchmark configuration with a width-4 VAE of ``epochs`` epochs, and a folder with the toy's mock to
    hand the prior study (``--mocks-from``)."""
    _, d = toy
    config_path = _benchmark_config(repo_root, tmp_path)
    config = yaml.safe_load(config_path.read_text())
    config["baseline"]["vae"].update(width=4, max_epochs=epochs, patience=epochs)
    config_path.write_text(yaml.safe_dump(config))
    mocks = tmp_path / "given_mocks"
    mocks.mkdir()
    (mocks / "system2.npz").write_bytes((d / "system2.npz").read_bytes())
    return config_path, config, mocks


def test_prior_study_packs_the_data_then_trains_and_measures_a_prior_without_snakemake(toy, toy_run, tmp_path,
                                                                                       repo_root, monkeypatch):
    """studies/baseline_prior_study.py: ``pack`` rounds the images to float16 (read back as float32), ``run``
    trains the configuration's VAE on the packed file, fits the given mocks and writes the benchmark JSONs."""
    import json

    settings, d = toy
    study = _load_script(repo_root, "studies", "baseline_prior_study")
    packed = tmp_path / "packed.h5"
    report = study.main(["pack", str(d / "data.h5"), str(packed)])
    original, half = vae_data.read_dataset(d / "data.h5"), vae_data.read_dataset(packed)
    assert half.images["train"].dtype == np.float32 and half.counts() == original.counts()
    assert 0 < report["max_rounding"] <= 2.5e-4
    np.testing.assert_allclose(half.images["train"], original.images["train"], atol=2.5e-4, rtol=0)

    config_path, config, mocks = _prior_study_setup(toy, repo_root, tmp_path, epochs=3)
    out = tmp_path / "out"
    resume_paths, train = [], stages.train_vae
    train_threads = []
    monkeypatch.setattr(stages, "train_vae", lambda *a, **k: resume_paths.append(k["resume_path"])
                        or train_threads.append(torch.get_num_threads()) or train(*a, **k))
    # A budget far below one epoch's time cuts the training to one epoch.
    summary = study.main(["run", "--config", str(config_path), "--data", str(packed), "--mocks-from", str(mocks),
                          "--schedule", "2:0.02", "--truth-start", "2:0.02", "--truth-polish", "2",
                          "--train-budget-s", "1e-9", "--train-threads", "2", "--out-dir", str(out), "--quiet"])
    run_name = config["run_name"]
    assert sorted(p.name for p in out.iterdir()) == sorted([
        f"baseline_map_convergence_{run_name}_system2.json", f"baseline_source_prior_fidelity_{run_name}.json",
        "training.json", "elbo.png", "fig2_reconstructions.png", "fig3_rotation.png", "prior_study.json"])
    convergence = json.loads((out / f"baseline_map_convergence_{run_name}_system2.json").read_text())
    assert [r["start"] for r in convergence["runs"]] == ["prior centre", "truth"]
    assert convergence["vae_width"] == 4 and len(convergence["wall_s_parallel_parts"]) == 2
    assert convergence["runs"][1]["polish_iterations"] == 2
    assert len(json.loads((out / "training.json").read_text())["history"]["val_elbo"]) == 1
    assert json.loads((out / "prior_study.json").read_text())["test_elbo"] == pytest.approx(summary["test_elbo"])
    assert (summary["configured_epochs"], summary["budgeted_epochs"], summary["epochs"]) == (3, 1, 1)
    assert summary["pilot_epoch_s"] > 0 and summary["device"] == "cpu" and summary["gpu"] is None
    assert (summary["fit_device"], summary["fit_device_error"]) == ("cpu", None)
    assert convergence["render_device"] == "cpu"
    assert resume_paths == [None]  # no resumable state on a machine that is given back
    assert train_threads == [2] and (summary["train_threads"], summary["threads_per_process"]) == (2, 1)
    # A budget of many epochs' time leaves the configured count.
    settings = parse_settings(config)
    kept, record = study.budgeted_settings(settings, half.images, 1e6)
    assert kept.train.max_epochs == 3 and record["budgeted_epochs"] == 3
    assert study.budgeted_settings(settings, half.images, None)[0] is settings
    with pytest.raises(SystemExit):
        study.main(["run", "--config", str(config_path), "--data", str(tmp_path / "none.h5"), "--out-dir", str(out)])
    for bad in (["--train-budget-s", "0"], ["--deadline-s", "-1"], ["--train-budget-s", "9", "--deadline-s", "9"]):
        with pytest.raises(SystemExit):
            study.main(["run", "--config", str(config_path), "--data", str(packed), *bad, "--out-dir", str(out)])


def test_prior_study_keeps_a_diverged_training_on_record(toy, toy_run, tmp_path, repo_root, monkeypatch):
    """A training that stops on non-finite losses leaves prior_study.json with the error (the run's only trace on a
    machine that is given back), and the command fails."""
    import json

    study = _load_script(repo_root, "studies", "baseline_prior_study")
    config_path, _, mocks = _prior_study_setup(toy, repo_root, tmp_path, epochs=1)

    def diverge(*args, **kwargs):
        raise FloatingPointError("VAE loss or gradient was not finite in 20 minibatches in a row (epoch 21)")

    monkeypatch.setattr(stages, "train_vae", diverge)
    out = tmp_path / "out"
    with pytest.raises(SystemExit, match="training failed: .*epoch 21"):
        study.main(["run", "--config", str(config_path), "--data", str(toy[1] / "data.h5"), "--mocks-from",
                    str(mocks), "--train-budget-s", "1e-9", "--out-dir", str(out), "--quiet"])
    record = json.loads((out / "prior_study.json").read_text())
    assert "epoch 21" in record["training_error"] and record["budgeted_epochs"] == 1
    assert sorted(p.name for p in out.iterdir()) == ["prior_study.json"]


def test_prior_study_plans_the_training_to_end_by_the_deadline(toy, toy_run, tmp_path, repo_root):
    """``--deadline-s``: the training gets the deadline less the time spent and the padded pilot estimates of the
    fits and of the stage's work after the training; a deadline the fits alone overrun is refused; fits still
    running at the deadline are stopped and named."""
    import argparse
    import subprocess
    import sys
    import time

    settings, d = toy
    study = _load_script(repo_root, "studies", "baseline_prior_study")
    images = vae_data.read_dataset(d / "data.h5").images
    args = argparse.Namespace(deadline_s=600.0, threads=1, train_threads=1, schedule="900:0.05", truth_start="10:0.02",
                              truth_polish=20, fit_device="cpu")
    # the longest process: 900 Adam steps, not 10 + 1.25 x 20, nor the fidelity benchmark's 500
    assert study.fit_steps(args) == 900
    assert study.fit_steps(argparse.Namespace(**{**vars(args), "truth_polish": 1000})) == 1260
    assert study.fit_steps(argparse.Namespace(**{**vars(args), "schedule": "40:0.05"})) == study.FIDELITY_STEPS
    step_s = study.pilot_fit_step_seconds(settings, d / "system2.npz", 1, steps=4)
    assert 0 < step_s < 5
    started = time.perf_counter()
    plan = study.plan_training(settings, args, images, d / "system2.npz", started)
    assert plan["fits_estimate_s"] > 0 and plan["after_training_estimate_s"] > 0
    assert plan["train_budget_s"] == pytest.approx(plan["time_left_s"] - plan["fits_estimate_s"])
    spent = args.deadline_s - plan["time_left_s"] - plan["after_training_estimate_s"]
    assert 0 < spent <= time.perf_counter() - started and not plan["fits_expected_to_overrun"]
    # Fits that need more than half the time left (here far more than all of it) get the other half, and say so.
    tight = argparse.Namespace(**{**vars(args), "schedule": "100000000:0.05"})
    cut = study.plan_training(settings, tight, images, d / "system2.npz", time.perf_counter())
    assert cut["fits_expected_to_overrun"] and cut["train_budget_s"] == pytest.approx(0.5 * cut["time_left_s"])
    with pytest.raises(SystemExit, match="no time to train"):
        study.plan_training(settings, argparse.Namespace(**{**vars(args), "deadline_s": 1e-3}), images,
                            d / "system2.npz", time.perf_counter())
    if not torch.cuda.is_available():  # a fit device that fails sends the fits to the CPU, with the error kept
        chosen = study.fit_device_or_cpu(settings, d / "system2.npz", argparse.Namespace(fit_device="cuda", threads=1),
                                         steps=2)
        assert chosen["fit_device"] == "cpu" and "CUDA" in chosen["fit_device_error"] and chosen["fit_step_s"] > 0
        auto = study.fit_device_or_cpu(settings, d / "system2.npz", argparse.Namespace(fit_device="auto", threads=1),
                                       steps=2)
        assert (auto["fit_device"], auto["fit_device_error"]) == ("cpu", None) and auto["fit_step_s"] > 0
    quick = subprocess.Popen([sys.executable, "-c", "pass"])
    slow = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    t0 = time.perf_counter()
    assert study.wait_until({"quick": quick, "slow": slow}, time.perf_counter() + 2.0) == ["slow"]
    assert time.perf_counter() - t0 < 30 and quick.returncode == 0 and slow.returncode != 0


def test_prior_study_stops_the_fits_at_the_deadline_and_keeps_what_finished(toy, toy_run, tmp_path, repo_root):
    """A prior-centre fit far too long for ``--deadline-s``: the training keeps its share, the fit is stopped at
    the deadline and named, and the truth start and the fidelity benchmark, which ended, are on record."""
    import json

    settings, d = toy
    study = _load_script(repo_root, "studies", "baseline_prior_study")
    config_path, config, mocks = _prior_study_setup(toy, repo_root, tmp_path, epochs=2)
    out = tmp_path / "out"
    parts = tmp_path / "results/baseline/prior_study_parts"
    parts.mkdir(parents=True)
    (parts / "system2_prior-centre.json").write_text("{}")  # an earlier run's part must not be joined
    with pytest.raises(SystemExit, match="stopped at the deadline"):
        study.main(["run", "--config", str(config_path), "--data", str(d / "data.h5"), "--mocks-from", str(mocks),
                    "--schedule", "1000000:0.02", "--truth-start", "2:0.02", "--truth-polish", "0",
                    "--deadline-s", "40", "--out-dir", str(out), "--quiet"])
    summary = json.loads((out / "prior_study.json").read_text())
    assert summary["fits_expected_to_overrun"] and summary["epochs"] == 2
    assert summary["failed"] == [] and summary["wall_s"] < 40 + 15
    # The long fit cannot have ended; the short ones do on an idle machine, but a loaded one may stop them too
    # (after writing their result, which is then kept: the files are written atomically, so one that exists is whole).
    stopped = set(summary["unfinished_at_deadline"])
    assert str(parts / "system2_prior-centre.json") in stopped
    truth_part = parts / "system2_truth.json"
    assert truth_part.is_file() or str(truth_part) in stopped
    convergence = out / f"baseline_map_convergence_{config['run_name']}_system2.json"
    if truth_part.is_file():
        assert [r["start"] for r in json.loads(convergence.read_text())["runs"]] == ["truth"]
    else:
        assert not convergence.exists()
    fidelity = out / f"baseline_source_prior_fidelity_{config['run_name']}.json"
    assert fidelity.is_file() or str(fidelity) in stopped
    assert (out / "training.json").is_file()
