"""Training runs: bit-for-bit resumption, refusal of foreign checkpoints, outputs, finetuning metadata."""

import json

import pandas as pd
import pytest
import torch

from astrorim.model.checkpoint import CheckpointError, load_model, read_checkpoint
from astrorim.train.loop import PhaseRun, StopFlag, TrainingInterrupted
from astrorim.train.run import train_phase
from astrorim.train.state import ConfigMismatchError
from astrorim.train.testing import make_tiny_dataset
from astrorim.train.testing import tiny_config as _tiny_config

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def tiny_config(*args, **training):
    """The tiny configuration pinned to the CPU: bit-for-bit resumption is a CPU property (on CUDA, atomics in
    scatter/gather kernels make runs differ in the last bits; tests/test_train_cuda.py checks CUDA with
    tolerances)."""
    return _tiny_config(*args, **{"device": "cpu", "log_every_steps": 3, **training})


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    make_tiny_dataset(root)
    return root


@pytest.fixture(scope="module")
def straight(data, tmp_path_factory):
    """Two epochs without interruption: the reference every resumed run must reproduce exactly."""
    out = tmp_path_factory.mktemp("straight")
    summary = train_phase(tiny_config(data, out), "initial", progress=False)
    return out / "models" / "initial", summary


class Crash(RuntimeError):
    pass


def _assert_same_training_state(a, b):
    ca, cb = read_checkpoint(a), read_checkpoint(b)
    assert ca["epoch"] == cb["epoch"] == 2 and ca["global_step"] == cb["global_step"]
    for key in ("model_state", "ema_state"):
        assert ca[key].keys() == cb[key].keys()
        for name in ca[key]:
            assert torch.equal(ca[key][name], cb[key][name]), f"{key}[{name}] differs"
    sa, sb = ca["optimizer_state"]["state"], cb["optimizer_state"]["state"]
    assert sa.keys() == sb.keys()
    for i in sa:
        assert all(torch.equal(sa[i][k], sb[i][k]) for k in sa[i])


def test_straight_run_outputs(straight):
    out, summary = straight
    assert {p.name for p in out.iterdir()} == {"best.pt", "last.pt", "metrics.csv", "steps.csv", "summary.json"}
    metrics = pd.read_csv(out / "metrics.csv")
    assert metrics["epoch"].tolist() == [1, 2]
    for column in ("train_recon", "train_fwd", "val_mse", "val_ssim", "lr_rim", "lr_forward", "samples_per_s"):
        assert metrics[column].notna().all(), column
    assert metrics["lr_rim"].iloc[0] == pytest.approx(1e-3)  # warm-up of 1 epoch done by the end of epoch 1
    model, meta = load_model(out / "best.pt")
    assert meta["phase"] == "initial" and meta["training_seed"] == 7
    assert {(s["phase"], s["split"], s["role"]) for s in meta["training_data"]} == {
        ("initial", "train", "train"), ("initial", "val", "val")}
    assert sum(s["n"] for s in meta["training_data"] if s["role"] == "train") == 32
    steps = pd.read_csv(out / "steps.csv")
    assert list(steps.columns) == ["phase", "epoch", "step", "samples", "lr_forward", "lr_rim", "train_total",
                                   "train_recon", "train_fwd", "train_psf", "train_param", "train_sup", "train_mse"]
    # every 3 steps and at each epoch end (4 steps per epoch)
    assert steps["step"].tolist() == [3, 4, 6, 8] and steps["epoch"].tolist() == [1, 1, 2, 2]
    assert (steps["samples"] == 8 * steps["step"]).all() and (steps["phase"] == "initial").all()
    assert steps["lr_rim"].iloc[1] == pytest.approx(metrics["lr_rim"].iloc[0])
    for epoch, windows in ((1, [3, 1]), (2, [2, 2])):  # the rows' step-weighted means are the epoch's means
        rows = steps[steps["epoch"] == epoch]
        for term in ("train_total", "train_fwd", "train_mse"):
            mean = sum(w * v for w, v in zip(windows, rows[term])) / 4
            assert mean == pytest.approx(metrics.loc[metrics["epoch"] == epoch, term].iloc[0], rel=2e-5), term  # metrics.csv: 6 digits
    disk = json.loads((out / "summary.json").read_text())
    assert disk["val"]["mse"] == pytest.approx(summary["val"]["mse"])
    for key in ("adjoint_mse", "x0_mse", "zero_mse", "ssim"):
        assert key in disk["val"]


def test_one_epoch_then_resume_matches_two_straight_epochs(data, straight, tmp_path):
    config = tiny_config(data, tmp_path, initial={"epochs": 1})
    train_phase(config, "initial", progress=False)
    out = tmp_path / "models" / "initial"
    assert read_checkpoint(out / "last.pt")["epoch"] == 1 and not (out / "resume").exists()
    train_phase(tiny_config(data, tmp_path), "initial", progress=False)  # epochs is not part of the hash
    _assert_same_training_state(straight[0] / "last.pt", out / "last.pt")
    assert pd.read_csv(out / "metrics.csv")["epoch"].tolist() == [1, 2]


def test_crash_mid_epoch_then_rerun_after_outputs_deleted_is_bit_identical(data, straight, tmp_path):
    """A crash after step 6 (epoch 2, batch 2), checkpoints every batch; the rerun finds its outputs deleted
    (as Snakemake does) and resumes from resume/last.pt."""
    config = tiny_config(data, tmp_path, checkpoint_every_batches=1)

    def crash(step, epoch, batch):
        if step == 6:
            raise Crash

    with pytest.raises(Crash):
        train_phase(config, "initial", on_step=crash, progress=False)
    out = tmp_path / "models" / "initial"
    saved = read_checkpoint(out / "resume" / "last.pt")
    assert (saved["epoch"], saved["batch_in_epoch"]) == (1, 1)
    for name in ("last.pt", "best.pt", "metrics.csv"):
        (out / name).unlink()
    train_phase(config, "initial", progress=False)
    _assert_same_training_state(straight[0] / "last.pt", out / "last.pt")
    ref = pd.read_csv(straight[0] / "metrics.csv")
    got = pd.read_csv(out / "metrics.csv")
    assert got["val_mse"].tolist() == ref["val_mse"].tolist()
    assert got["train_total"].tolist() == pytest.approx(ref["train_total"].tolist(), rel=1e-12)
    # the rows the crashed run logged after its last checkpoint (step 6) were dropped and logged again
    assert (out / "steps.csv").read_text() == (straight[0] / "steps.csv").read_text()
    assert not (out / "resume").exists()


def test_stop_signal_writes_checkpoint_and_rerun_resumes(data, straight, tmp_path):
    config = tiny_config(data, tmp_path)
    flag = StopFlag()

    def request_stop(step, epoch, batch):
        if step == 3:
            flag.requested, flag.signal_name = True, "SIGTERM"

    with pytest.raises(TrainingInterrupted, match="SIGTERM"):
        train_phase(config, "initial", stop_flag=flag, on_step=request_stop, progress=False)
    out = tmp_path / "models" / "initial"
    assert read_checkpoint(out / "resume" / "last.pt")["batch_in_epoch"] == 3
    train_phase(config, "initial", progress=False)
    _assert_same_training_state(straight[0] / "last.pt", out / "last.pt")
    assert (out / "steps.csv").read_text() == (straight[0] / "steps.csv").read_text()


def test_checkpoint_from_another_config_is_refused(data, tmp_path):
    config = tiny_config(data, tmp_path, checkpoint_every_batches=1)
    with pytest.raises(Crash):
        train_phase(config, "initial", on_step=lambda s, e, b: (_ for _ in ()).throw(Crash) if s == 2 else None,
                    progress=False)
    old_hash = read_checkpoint(tmp_path / "models" / "initial" / "resume" / "last.pt")["config_hash"]
    changed = tiny_config(data, tmp_path, checkpoint_every_batches=1, initial={"lr_rim": 2e-3},
                          loss={"lambda_fwd": 0.25})
    with pytest.raises(ConfigMismatchError) as info:
        train_phase(changed, "initial", progress=False)
    message = str(info.value)
    assert old_hash in message and "training.schedule.lr_rim: 0.001 -> 0.002" in message
    assert "training.loss.lambda_fwd: 0.5 -> 0.25" in message
    new_hash = message.split("this run has config hash ")[1].split(".")[0]
    assert new_hash != old_hash and len(new_hash) == 16


def test_finetune_records_both_phases_and_refuses_a_wrong_init(data, straight, tmp_path):
    config = tiny_config(data, tmp_path)
    summary = train_phase(config, "finetune", init_checkpoint=straight[0] / "best.pt", progress=False)
    out = tmp_path / "models" / "finetune"
    model, meta = load_model(out / "best.pt")
    assert meta["phase"] == "finetune" and meta["phases"] == ["finetune", "initial"]
    assert {s["phase"] for s in meta["training_data"]} == {"initial", "finetune"}
    assert meta["init_checkpoint"].endswith("best.pt")
    assert summary["n_train"] == 16
    lrs = pd.read_csv(out / "metrics.csv")["lr_rim"]
    assert lrs.iloc[0] == pytest.approx(1e-4)  # the finetune schedule, no warm-up
    with pytest.raises(CheckpointError, match="expected an initial-phase checkpoint"):
        train_phase(config, "finetune", init_checkpoint=out / "best.pt", out_dir=tmp_path / "again",
                    progress=False)


def test_export_keeps_the_ema_weights_only(straight, tmp_path):
    from astrorim.train.export import export_ema

    out = export_ema(straight[0] / "best.pt", tmp_path / "model.pt")
    ckpt = read_checkpoint(out)
    assert ckpt["ema_state"] is None and "optimizer_state" not in ckpt
    assert out.stat().st_size < (straight[0] / "best.pt").stat().st_size / 2
    exported, meta = load_model(out)
    reference, _ = load_model(straight[0] / "best.pt")  # prefers the EMA weights
    raw = read_checkpoint(straight[0] / "best.pt")["model_state"]
    name = next(n for n, v in raw.items() if n.startswith("rim.") and v.ndim == 4)
    assert torch.equal(exported.state_dict()[name], reference.state_dict()[name])
    assert not torch.equal(exported.state_dict()[name], raw[name])
    y = torch.rand(2, 32, 32)
    with torch.no_grad():
        assert torch.equal(exported(y)["source"], reference(y)["source"])
    assert meta["phase"] == "initial" and len(meta["exported_from_sha256"]) == 64


def test_finetune_stops_early_when_validation_does_not_improve(data, straight, tmp_path, monkeypatch):
    # Validation MSE forced to worsen every epoch after the first: patience 2 must stop after epoch 3 of 5.
    real_validate = PhaseRun._validate
    calls = []

    def worsening_validate(self, reference_sources=False):
        val = real_validate(self, reference_sources)
        if not reference_sources:
            calls.append(1)
            val["mse"] = float(len(calls))
        return val

    monkeypatch.setattr(PhaseRun, "_validate", worsening_validate)
    config = tiny_config(data, tmp_path, finetune={"epochs": 5, "early_stopping_patience": 2})
    summary = train_phase(config, "finetune", init_checkpoint=straight[0] / "best.pt", progress=False)
    assert summary["stop_reason"] == "early_stopping"
    assert summary["epochs_run"] == 3 and summary["best_epoch"] == 1
    assert pd.read_csv(tmp_path / "models" / "finetune" / "metrics.csv")["epoch"].tolist() == [1, 2, 3]
