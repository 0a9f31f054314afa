"""Training curves (astrorim.train.curves): per logged step from steps.csv when each phase has one, per epoch
from metrics.csv otherwise."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from astrorim.train.curves import load_steps, plot_training_curves, training_figure  # noqa: E402

EPOCHS = {"initial": 3, "finetune": 2}
STEPS_PER_EPOCH = 10


def _metrics(directory, phase, first_step=0):
    n = EPOCHS[phase]
    epoch = np.arange(1, n + 1)
    frame = pd.DataFrame({
        "phase": phase, "epoch": epoch, "global_step": first_step + epoch * STEPS_PER_EPOCH,
        "train_total": 10.0 / epoch, "train_recon": 5.0 / epoch, "train_fwd": 4.0 / epoch,
        "train_psf": 1e-3, "train_param": 2.0, "train_sup": 0.0, "train_grad_norm": 3.0,
        "val_total": 11.0 / epoch, "val_mse": 1e-3 / epoch, "val_ssim": 0.9, "lr_rim": 1e-3, "lr_forward": 1e-4,
    })
    directory.mkdir(parents=True, exist_ok=True)
    frame.to_csv(directory / "metrics.csv", index=False)
    return directory / "metrics.csv"


def _steps(directory, phase, first_step=0, lr_columns=("lr_forward", "lr_rim"), extra_term=None):
    """A steps.csv with a row every 2 optimiser steps and at each epoch end (the training loop's layout)."""
    rows = []
    for epoch in range(1, EPOCHS[phase] + 1):
        for k in range(2, STEPS_PER_EPOCH + 1, 2):
            step = first_step + (epoch - 1) * STEPS_PER_EPOCH + k
            row = {"phase": phase, "epoch": epoch, "step": step, "samples": step * 8}
            row.update({c: 1e-3 * (1 + 0.01 * step) for c in lr_columns})
            row.update(train_total=10.0 / step, train_recon=5.0 / step, train_fwd=4.0 / step, train_psf=1e-3,
                       train_param=2.0, train_sup=0.0, train_mse=1e-3)
            if extra_term:
                row[extra_term] = 0.5
            rows.append(row)
    frame = pd.DataFrame(rows)
    frame.to_csv(directory / "steps.csv", index=False)
    return len(frame)


def _lines(ax):
    return {line.get_label(): line for line in ax.get_lines() if not line.get_label().startswith("_")}


def test_steps_of_a_phase_that_counts_from_zero_go_on_after_the_previous_phase(tmp_path):
    for phase in EPOCHS:
        _metrics(tmp_path / phase, phase)
        _steps(tmp_path / phase, phase)
    steps = load_steps({p: tmp_path / p / "steps.csv" for p in EPOCHS})
    initial = steps[steps["phase"] == "initial"]["total_step"]
    finetune = steps[steps["phase"] == "finetune"]["total_step"]
    assert initial.max() == 30 and finetune.min() == 32 and finetune.max() == 50
    assert steps["total_step"].is_monotonic_increasing


def test_steps_numbered_on_from_the_previous_phase_are_kept(tmp_path):
    _steps(tmp_path, "initial")
    (tmp_path / "steps.csv").rename(tmp_path / "initial.csv")
    _steps(tmp_path, "finetune", first_step=30)
    steps = load_steps({"initial": tmp_path / "initial.csv", "finetune": tmp_path / "steps.csv"})
    assert steps[steps["phase"] == "finetune"]["total_step"].min() == 32


def test_curves_per_step_from_steps_csv_beside_metrics(tmp_path):
    paths = {}
    for phase in EPOCHS:
        paths[phase] = _metrics(tmp_path / phase, phase)
        _steps(tmp_path / phase, phase, lr_columns=("lr_forward", "lr_rim", "lr_encoder"),
                         extra_term="train_newterm")
    fig = training_figure(paths)
    loss, terms, validation, rates = fig.axes[:4]
    assert rates.get_xlabel() == "optimiser step (both phases)"
    lr = _lines(rates)
    assert set(lr) == {"RIM", "forward operator + encoder", "encoder"}  # every lr_* column, named or not
    n_initial = EPOCHS["initial"] * STEPS_PER_EPOCH // 2
    assert all(len(line.get_xdata()) == n_initial for line in lr.values())  # first phase's line of each
    assert len(rates.get_lines()) == 3 * 2 + 1  # per column and phase, and the phase boundary
    train = _lines(loss)["initial train (per step)"]
    assert len(train.get_xdata()) == n_initial
    # validation once per epoch, at each epoch's last step
    val = _lines(loss)["finetune val (EMA)"]
    np.testing.assert_array_equal(val.get_xdata(), [40, 50])
    term_labels = set(_lines(terms))
    assert {"recon", "forward x0.5", "param x0.001", "PSF x0.001", "newterm"} <= term_labels
    assert "supervised" not in term_labels  # all zero: nothing to draw on a log axis
    plt.close(fig)
    out = plot_training_curves(paths, tmp_path / "curves.png", title="t")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_curves_per_epoch_without_steps_csv(tmp_path):
    paths = {phase: _metrics(tmp_path / phase, phase) for phase in EPOCHS}
    fig = training_figure(paths)
    rates = fig.axes[3]
    assert rates.get_xlabel() == "epoch"
    lr = _lines(rates)
    assert set(lr) == {"RIM", "forward operator + encoder"}
    assert all(len(line.get_xdata()) == EPOCHS["initial"] for line in lr.values())
    np.testing.assert_array_equal(_lines(fig.axes[0])["finetune val (EMA)"].get_xdata(), [4, 5])
    plt.close(fig)


def test_a_phase_without_steps_csv_falls_back_to_epochs_for_all(tmp_path):
    paths = {phase: _metrics(tmp_path / phase, phase) for phase in EPOCHS}
    _steps(tmp_path / "initial", "initial")
    fig = training_figure(paths)
    assert fig.axes[3].get_xlabel() == "epoch"
    plt.close(fig)


def test_a_file_that_is_not_a_step_log_is_refused(tmp_path):
    paths = {"initial": _metrics(tmp_path / "initial", "initial")}
    pd.DataFrame({"a": [1]}).to_csv(tmp_path / "initial" / "steps.csv", index=False)
    with pytest.raises(ValueError, match="steps.csv: not a per-step training log"):
        training_figure(paths)
