"""Parameter recovery: periodic angles, theta_E in arcsec, halo-only r_s, the summary table."""

import math

import numpy as np
import pandas as pd
import pytest

from astrorim.evaluate import recovery as R
from astrorim.params import PARAMETER_NAMES


def truth_frame():
    return pd.DataFrame({
        "version": ["v1", "v1", "v3"], "pixel_scale": [0.04, 0.04, 0.2],
        "norm_b": [0.5, 0.6, 0.1], "norm_q": [0.8, 0.7, 0.9], "norm_phi": [1.5, -1.5, 0.0],
        "norm_x0": [0.0, 0.01, -0.02], "norm_y0": [0.0, 0.0, 0.01], "norm_gamma": [0.05, 0.02, 0.0],
        "norm_gamma_phi": [0.1, -1.55, 0.3], "norm_kappa_s": [0.0, 0.1, 0.0], "norm_r_s": [np.nan, 2.0, np.nan]})


def test_wrap_periodic():
    assert R.wrap_periodic(math.pi - 0.01, math.pi) == pytest.approx(-0.01)
    assert R.wrap_periodic(-math.pi / 2, math.pi) == pytest.approx(-math.pi / 2)
    assert R.wrap_periodic(3 * math.pi + 0.2, math.pi) == pytest.approx(0.2)


def test_parameter_frame_errors():
    truth = truth_frame()
    pred = {p: truth[f"norm_{p}"].to_numpy(float).copy() for p in PARAMETER_NAMES}
    pred["phi"] = np.array([-1.6, 1.6, 0.1])  # 1.5 -> -1.6 is +0.0416 across the pi boundary
    pred["b"] = np.array([0.55, 0.6, 0.1])
    pred["r_s"] = np.array([5.0, 2.5, 7.0])
    f = R.parameter_frame(truth, pred, npix=96)
    assert f["err_phi"].iloc[0] == pytest.approx(math.pi - 3.1)
    assert f["err_phi"].iloc[1] == pytest.approx(-(math.pi - 3.1))
    assert f["true_theta_E"].iloc[0] == pytest.approx(0.5 * 48 * 0.04)  # 0.96 arcsec
    assert f["err_theta_E"].iloc[0] == pytest.approx(0.05 * 48 * 0.04)
    assert f["true_theta_E"].iloc[2] == pytest.approx(0.1 * 48 * 0.2)
    assert np.isnan(f["err_r_s"].iloc[0]) and np.isnan(f["err_r_s"].iloc[2])
    assert f["err_r_s"].iloc[1] == pytest.approx(0.5)
    f["version"] = truth["version"]
    s = R.summarise_recovery(f).set_index(["subset", "parameter"])
    assert s.loc[("All", "r_s"), "n"] == 1
    assert s.loc[("v1", "b"), "median_abs_error"] == pytest.approx(0.025)
    assert s.loc[("v1", "b"), "bias"] == pytest.approx(0.025)
    assert s.loc[("v1", "b"), "median_abs_rel_error"] == pytest.approx(0.05)
    assert s.loc[("v3", "b"), "n"] == 1 and s.loc[("v2", "b"), "n"] == 0
    tex = R.recovery_latex(s.reset_index(), "caption")
    assert "$\\theta_E$ [arcsec]" in tex


def test_missing_prediction_is_named():
    truth = truth_frame()
    pred = {p: np.zeros(3) for p in PARAMETER_NAMES if p != "kappa_s"}
    with pytest.raises(KeyError, match="kappa_s"):
        R.parameter_frame(truth, pred, npix=96)


def test_theta_e_matches_the_simulator_truth():
    """Our b -> theta_E conversion must agree with the simulator's own theta_E column."""
    from astrorim.sim import simulate

    truth = pd.concat([simulate(v, 2, 11, phase="test", split="test").truth for v in ("v1", "v3")],
                      ignore_index=True)
    pred = {p: truth[f"norm_{p}"].to_numpy(float) for p in PARAMETER_NAMES}
    f = R.parameter_frame(truth, pred, npix=96)
    np.testing.assert_allclose(f["true_theta_E"], truth["theta_E"], rtol=1e-6)
    assert np.all(f["err_b"] == 0)
