"""Encoder pre-training: runs, resumes bit-identically after a deadline stop, feeds the joint training."""

import pandas as pd
import pytest
import torch

from astrorim.model.checkpoint import read_checkpoint
from astrorim.train.pretrain import PretrainConfig, cosine_lr_factor, pretrain_encoder
from astrorim.train.testing import TINY_MODEL, make_tiny_dataset, tiny_config

PRETRAIN = {"epochs": 3, "batch_size": 8, "lr": 1e-3, "warmup_steps": 2, "seed": 3, "checkpoint_every_s": 0}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrain_data")
    return root, make_tiny_dataset(root)


def _config(data, tmp_path, **pretrain):
    root, _ = data
    cfg = tiny_config(root, tmp_path / "results")
    cfg["pretrain"] = {**PRETRAIN, **pretrain}
    return cfg


@pytest.fixture(scope="module")
def straight(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrain_straight")
    torch.set_num_threads(1)
    summary = pretrain_encoder(_config(data, out), out_dir=out / "pretrain", manifests=data[1])
    return out / "pretrain", summary


def test_straight_run_outputs_and_metrics(straight):
    out, summary = straight
    assert summary["stop_reason"] == "max_steps" and summary["global_step"] == summary["total_steps"] == 3 * 4
    metrics = pd.read_csv(out / "metrics.csv")
    assert list(metrics["epoch"]) == [1, 2, 3]
    for key in ("val_nll", "val_theta_e_median_rel_error", "val_coverage68_mean", "val_coverage68_e1"):
        assert metrics[key].notna().all(), key
    assert 0 <= summary["val"]["coverage68_mean"] <= 1
    ck = read_checkpoint(out / "encoder.pt")
    assert ck["meta"]["phase"] == "pretrain_encoder" and ck["model_config"]["encoder_heads"] == "components"
    assert not (out / "resume").exists()


def test_deadline_stop_then_rerun_is_bit_identical(data, straight, tmp_path):
    out, _ = straight
    cfg = _config(data, tmp_path, deadline_s=1e-9)   # stops after the first step
    first = pretrain_encoder(cfg, out_dir=tmp_path / "p", manifests=data[1])
    assert first["stop_reason"] == "deadline" and first["global_step"] == 1
    assert (tmp_path / "p" / "resume" / "last.pt").exists() and (tmp_path / "p" / "encoder.pt").exists()
    cfg["pretrain"]["deadline_s"] = 0
    second = pretrain_encoder(cfg, out_dir=tmp_path / "p", manifests=data[1])
    assert second["global_step"] == 12
    a = read_checkpoint(out / "encoder.pt")["ema_state"]
    b = read_checkpoint(tmp_path / "p" / "encoder.pt")["ema_state"]
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert pd.read_csv(tmp_path / "p" / "metrics.csv")["epoch"].tolist() == [1, 2, 3]


def test_a_deadline_stop_leaves_no_loader_workers_behind(data, tmp_path):
    import multiprocessing

    cfg = _config(data, tmp_path, deadline_s=1e-9)   # leaves the training loop by `break`
    cfg["training"]["num_workers"] = 2
    summary = pretrain_encoder(cfg, out_dir=tmp_path / "p", manifests=data[1])
    assert summary["stop_reason"] == "deadline"
    assert multiprocessing.active_children() == []


def test_changed_schedule_is_refused_on_resume(data, tmp_path):
    from astrorim.train.state import ConfigMismatchError

    cfg = _config(data, tmp_path, deadline_s=1e-9)
    pretrain_encoder(cfg, out_dir=tmp_path / "p", manifests=data[1])
    cfg["pretrain"].update(deadline_s=0, lr=5e-4)
    with pytest.raises(ConfigMismatchError, match="pretrain.lr"):
        pretrain_encoder(cfg, out_dir=tmp_path / "p", manifests=data[1])


def test_joint_training_starts_from_the_pretrained_encoder(data, straight, tmp_path):
    from astrorim.train.run import train_phase

    out, _ = straight
    root, manifests = data
    cfg = tiny_config(root, tmp_path / "results", initial={"epochs": 1, "lr_rim": 1e-3, "lr_forward": 1e-4,
                                                            "warmup_epochs": 0},
                      loss={"lambda_supervised": 1.0})
    cfg["model"] = dict(TINY_MODEL)
    summary = train_phase(cfg, "initial", out_dir=tmp_path / "initial", manifest=manifests["initial"],
                          encoder_checkpoint=out / "encoder.pt")
    assert summary["val"]["sup"] != 0
    ck = read_checkpoint(tmp_path / "initial" / "last.pt")
    assert ck["training_state"]["hashed_config"]["init"]["encoder"]["global_step"] == 12


def test_config_validation_and_schedule():
    with pytest.raises(ValueError, match="unknown"):
        PretrainConfig.from_dict({"epoch": 2})
    assert cosine_lr_factor(0, 100, 10, 0.1) == pytest.approx(0.1)
    assert cosine_lr_factor(10, 100, 10, 0.1) == pytest.approx(1.0)
    assert cosine_lr_factor(100, 100, 10, 0.1) == pytest.approx(0.1)


def test_warm_start_copies_everything_but_the_encoder_and_refuses_other_rim_settings(tmp_path):
    from astrorim.model import AstroRIM, AstroRIMConfig
    from astrorim.model.checkpoint import CheckpointError, save_model_checkpoint
    from astrorim.train.run import load_warm_start

    small = {**TINY_MODEL, "npix": 32}
    torch.manual_seed(0)
    donor = AstroRIM(AstroRIMConfig(**small, encoder_heads="periodic"))   # e.g. a format 1 (periodic) model
    path = save_model_checkpoint(tmp_path / "donor.pt", donor, meta={})
    torch.manual_seed(1)
    model = AstroRIM(AstroRIMConfig(**small))
    encoder_before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    provenance = load_warm_start(model, path)
    assert len(provenance["sha256"]) == 64
    for k, v in donor.rim.state_dict().items():
        assert torch.equal(model.rim.state_dict()[k], v), k
    for k, v in encoder_before.items():
        assert torch.equal(model.encoder.state_dict()[k], v), k
    other = AstroRIM(AstroRIMConfig(**{**small, "rim_hidden": 16}))
    with pytest.raises(CheckpointError, match="rim_hidden"):
        load_warm_start(other, path)
