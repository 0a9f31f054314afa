"""The evaluation stage end to end on a few simulated shards with a randomly initialised model (tests only)."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from astrorim.evaluate import pipeline as P
from astrorim.evaluate.leakage import LeakageError
from astrorim.io.shards import write_shard

VERSIONS = ("v1", "v2", "v3", "v4", "v5", "v6")
N_TEST, N_VAL = 2, 2


def make_shards(root, phase, split, seed, n, diagnostics=True):
    from astrorim.sim import simulate

    paths = []
    for v in VERSIONS:
        batch = simulate(v, n, seed, phase=phase, split=split)
        path = root / f"sims/{phase}/{v}/{split}/shard-00000.h5"
        meta = {"version": v, "phase": phase, "split": split, "seed": seed, "start_index": 0}
        paths.append(write_shard(path, batch, meta, store_diagnostics=diagnostics))
    return paths


def random_checkpoint(path, streams):
    from astrorim.model.astrorim import AstroRIM, AstroRIMConfig
    from astrorim.model.checkpoint import save_model_checkpoint

    torch.manual_seed(0)
    model = AstroRIM(AstroRIMConfig(n_iter=2))
    save_model_checkpoint(path, model, meta={"phase": "finetune", "training_data": streams,
                                             "note": "randomly initialised, for tests only"})
    return path


def trained_streams():
    return [{"role": role, "phase": phase, "version": v, "split": split, "seed": seed, "start_index": 0, "n": 80}
            for v in VERSIONS for phase, seed in (("initial", 1001), ("finetune", 2002))
            for role, split in (("train", "train"), ("val", "val"))]


SETTINGS = dict(batch_size=16, figure_rows_per_version=2, n_failures=3, n_tune_per_version=N_VAL,
                lambda_grid=(0.01, 1.0), cg_max_iter=60, threads=1)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    test = make_shards(root, "test", "test", 3003, N_TEST)
    val = make_shards(root, "finetune", "val", 2002, N_VAL)
    return root, test, val


@pytest.fixture(scope="module")
def evaluated(data, repo_root):
    root, test, val = data
    ckpt = random_checkpoint(root / "random.pt", trained_streams())
    dirs = P.OutputDirs.under(root / "results")
    result = P.run_evaluation(ckpt, test, val, dirs, repo_root / "resources/paper_table2.csv",
                              P.EvaluationSettings(**SETTINGS), expected_npix=96)
    return result, dirs


def test_every_declared_output_is_written(evaluated):
    result, dirs = evaluated
    for path in P.output_files(dirs):
        assert path.exists() and path.stat().st_size > 0, path
    leftovers = [p for d in (dirs.tables, dirs.figures, dirs.metrics) for p in d.iterdir() if p.name.startswith(".")]
    assert leftovers == []  # atomic writes leave no temporary files


def test_tables_agree_with_the_per_example_metrics(evaluated):
    result, dirs = evaluated
    pe = pd.read_csv(dirs.metrics / "per_example.csv")
    assert set(pe["method"]) == set(P.METHODS)
    assert (pe.groupby("method").size() == 6 * N_TEST).all()
    t2 = pd.read_csv(dirs.tables / "table2.csv", index_col="subset")
    assert list(t2.index) == ["All", "v1", "v2", "v3", "v4", "v5-6", "v5", "v6"]
    rim = pe[pe["method"] == "astrorim"]
    assert t2.loc["All", "n"] == 6 * N_TEST
    assert t2.loc["All", "ssim_mean"] == pytest.approx(rim["ssim"].mean(), rel=1e-6)
    assert t2.loc["v5-6", "mse_median"] == pytest.approx(rim[rim["version"].isin(["v5", "v6"])]["mse"].median(),
                                                         rel=1e-6)
    cmp = pd.read_csv(dirs.tables / "table2_vs_paper.csv")
    row = cmp[(cmp["subset"] == "All") & (cmp["statistic"] == "ssim_mean")].iloc[0]
    assert row["paper"] == 0.927 and row["ours"] == pytest.approx(t2.loc["All", "ssim_mean"], rel=1e-6)
    metrics = json.loads((dirs.metrics / "evaluate.json").read_text())
    assert metrics["astrorim"]["All"]["n"] == 6 * N_TEST
    for method in P.METHODS:
        assert metrics["seconds_per_lens"][method] > 0
    assert metrics["provenance"]["tikhonov_lens_light"].startswith("true lens light subtracted")
    assert set(metrics["tikhonov_lambda"]) == set(VERSIONS)
    assert all(v in SETTINGS["lambda_grid"] for v in metrics["tikhonov_lambda"].values())


def test_oracle_classical_methods_beat_a_random_model_where_the_source_is(evaluated):
    """A randomly initialised model must not look good on the source region; the true-Theta inversion must."""
    result, _ = evaluated
    pe = result.per_example
    med = pe.groupby("method")["ssim_source"].median()
    assert med["tikhonov_true"] > med["astrorim"] + 0.2
    assert med["tikhonov_true"] > med["backprojection_true"]


def test_parameter_recovery_outputs(evaluated):
    result, dirs = evaluated
    rec = pd.read_csv(dirs.tables / "parameter_recovery.csv")
    assert set(rec["parameter"]) == {"b", "q", "phi", "x0", "y0", "gamma", "gamma_phi", "kappa_s", "r_s", "theta_E"}
    params = pd.read_csv(dirs.metrics / "parameters.csv")
    assert len(params) == 6 * N_TEST
    assert (params["err_phi"].abs() <= np.pi / 2 + 1e-12).all()


def test_overlapping_checkpoint_is_refused_before_anything_is_written(data, repo_root, tmp_path):
    root, test, val = data
    streams = trained_streams() + [{"role": "train", "phase": "test", "version": "v3", "split": "test",
                                    "seed": 3003, "start_index": 1, "n": 5}]
    ckpt = random_checkpoint(tmp_path / "leaky.pt", streams)
    dirs = P.OutputDirs.under(tmp_path / "results")
    with pytest.raises(LeakageError, match="seed=3003 version=v3 phase=test split=test indices \\[1, 6\\)"):
        P.run_evaluation(ckpt, test, val, dirs, None, P.EvaluationSettings(**SETTINGS))
    assert not (tmp_path / "results").exists()


def test_classical_methods_are_deterministic(data):
    _, test, _ = data
    ex = P.load_examples(test, limit_per_version=1)
    settings = P.EvaluationSettings(**{**SETTINGS, "tikhonov_lambda": {v: 0.1 for v in VERSIONS}})
    a = P.evaluate_examples(ex, None, None, settings).per_example
    b = P.evaluate_examples(ex, None, None, settings).per_example
    assert set(a["method"]) == {"backprojection_true", "tikhonov_true"}
    pd.testing.assert_frame_equal(a, b)


def test_mixed_diagnostics_are_refused(data, tmp_path):
    _, test, _ = data
    val = make_shards(tmp_path, "finetune", "val", 2002, 1, diagnostics=False)
    ex = P.load_examples(test, limit_per_version=1)
    with pytest.raises(ValueError, match="diagnostics"):
        P.evaluate_examples(ex, None, P.load_examples(val), P.EvaluationSettings(**SETTINGS))


def _model_and_examples(data):
    from astrorim.model.astrorim import AstroRIM, AstroRIMConfig

    root, test, _ = data
    torch.manual_seed(0)
    return AstroRIM(AstroRIMConfig(n_iter=2)), P.load_examples(test[:1])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_evaluation_device_cuda_without_a_gpu_names_the_setting(data):
    model, ex = _model_and_examples(data)
    with pytest.raises(RuntimeError, match="evaluation.device is 'cuda'"):
        P.run_model(model, ex, 4, device="cuda")
    assert P.EvaluationSettings().device == "cpu"


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
def test_model_on_the_gpu_matches_the_cpu(data):
    model, ex = _model_and_examples(data)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    cpu = P.run_model(model, ex, 4, device="cpu")
    gpu = P.run_model(model, ex, 4, device="cuda")
    assert next(model.parameters()).device.type == "cpu"  # handed back
    for key in ("astrorim", "backprojection_encoder"):
        scale = np.abs(cpu[key]).max()
        assert np.abs(gpu[key] - cpu[key]).max() <= 1e-4 * scale, key
    for name, values in cpu["params"].items():
        assert np.allclose(gpu["params"][name], values, rtol=1e-4, atol=1e-6), name
