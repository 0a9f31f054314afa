"""The comparison's pieces: the fitting hook, AstroRIM's parameters in lenstronomy units, the mock on the
model grid, the per-lens rows and their summary."""

import numpy as np
import pandas as pd
import pytest
import torch
from lenstronomy.Util import param_util

from astrorim.baseline.compare import (astrorim_lens_params, comparison_row, comparison_summary, fit_image,
                                       mock_on_model_grid)
from astrorim.baseline.latent_prior import LatentPrior
from astrorim.baseline.lens_model import ImageGrid
from astrorim.baseline.map_fit import MapConfig

from test_baseline_model import BlobDecoder


def test_fit_image_returns_parameters_in_input_units_and_is_flux_scale_invariant():
    rng = np.random.default_rng(0)
    c = np.arange(32) - 15.5
    img = np.exp(-0.5 * (np.hypot(*np.meshgrid(c, c)) - 8) ** 2 / 4.0) + 0.05 * rng.standard_normal((32, 32))
    prior = LatentPrior(torch.zeros(64), torch.eye(64), 9.0)
    cfg = MapConfig(steps=4, n_starts=2, record_every=0, seed=1)
    a = fit_image(img, 0.05, 0.15, BlobDecoder(), prior, psf_sigma_arcsec=0.1, map_config=cfg)
    b = fit_image(10 * img, 0.5, 0.15, BlobDecoder(), prior, psf_sigma_arcsec=0.1, map_config=cfg)
    assert set(a.params) >= {"r_ein", "slope", "q", "phi", "x_lens", "y_lens", "gamma1", "gamma2"}
    assert a.source.shape == a.model_image.shape == (32, 32)
    assert a.wall_s > 0 and np.isfinite(a.log_posterior)
    for k in ("r_ein", "q", "phi", "x_src"):
        assert b.params[k] == pytest.approx(a.params[k], rel=1e-4, abs=1e-6)
    assert b.params["iota"] == pytest.approx(10 * a.params["iota"], rel=1e-4)
    np.testing.assert_allclose(b.model_image, 10 * a.model_image, rtol=1e-3, atol=1e-4)
    with pytest.raises(ValueError, match="square"):
        fit_image(img[:, :30], 0.05, 0.15, BlobDecoder(), prior, map_config=cfg)


def test_astrorim_parameters_in_lenstronomy_units():
    row = {"b": 0.3, "q": 0.8, "phi": 0.4, "x0": 0.02, "y0": -0.05, "gamma": 0.06, "gamma_phi": 1.1,
           "kappa_s": 0.0, "r_s": 1.0}
    got = astrorim_lens_params(row, npix=96, pixel_scale_arcsec=0.05)  # half field of view 2.4"
    g1, g2 = param_util.shear_polar2cartesian(phi=1.1, gamma=0.06)
    assert got["theta_E"] == pytest.approx(0.72)
    assert (got["center_x"], got["center_y"]) == pytest.approx((0.048, -0.12))
    assert (got["gamma1"], got["gamma2"]) == pytest.approx((g1, g2))
    assert (got["q"], got["phi"]) == (0.8, 0.4)


def test_mock_on_model_grid_conserves_flux_keeps_positions_and_scales_the_noise():
    fov, n_in, n_out = 10.0, 256, 96
    x, y = (t.numpy() for t in ImageGrid(n_in, fov).coordinates())
    blob = np.exp(-0.5 * ((x - 1.3) ** 2 + (y + 0.7) ** 2) / 0.3 ** 2)
    grid = mock_on_model_grid(blob, 0.1, fov, n_out)
    assert grid.image.shape == (n_out, n_out) and grid.pixel_scale == pytest.approx(fov / n_out)
    assert grid.image.sum() == pytest.approx(blob.sum(), rel=1e-5)
    w = grid.image / grid.image.sum()
    assert float((w * grid.x.numpy()).sum()) == pytest.approx(1.3, abs=0.01)
    assert float((w * grid.y.numpy()).sum()) == pytest.approx(-0.7, abs=0.01)
    assert grid.flux_ratio == pytest.approx((n_in / n_out) ** 2)
    # the stated per-pixel noise is what rebinned noise realisations show
    rng = np.random.default_rng(1)
    noise = np.stack([mock_on_model_grid(rng.normal(0, 0.1, (n_in, n_in)), 0.1, fov, n_out).image
                      for _ in range(20)])
    assert noise[:, 5:-5, 5:-5].std() == pytest.approx(grid.noise_sigma, rel=0.03)


def test_comparison_rows_wrap_phi_score_sources_and_summarise():
    truth = {"theta_E": 1.0, "q": 0.8, "phi": 1.5, "center_x": 0.0, "center_y": 0.0, "gamma1": 0.0, "gamma2": 0.0}
    src = np.zeros((16, 16))
    src[6:10, 6:10] = 1.0
    a = comparison_row("mock", "s/med", "fast", truth, dict(truth, theta_E=1.1, phi=-1.5), 0.1, src, src)
    b = comparison_row("mock", "s/low", "fast", truth, dict(truth, theta_E=0.8), 0.3, src, 0.5 * src)
    c = comparison_row("mock", "s/med", "sampler", truth, dict(truth, theta_E=1.0), 100.0)
    assert a["phi_err"] == pytest.approx(np.pi - 3.0)  # -1.5 vs 1.5 differ by 3 rad = pi - 3 modulo pi
    assert a["source_mse"] == 0.0 and a["source_ssim"] == pytest.approx(1.0)
    assert b["source_mse"] > 0 and b["source_ssim"] < 1
    assert np.isnan(c["source_mse"])
    s = comparison_summary(pd.DataFrame([a, b, c])).set_index("method")
    assert s.loc["fast", "n"] == 2
    assert s.loc["fast", "median_abs_err_theta_E"] == pytest.approx(0.15)
    assert s.loc["fast", "median_rel_err_theta_E"] == pytest.approx(0.15)
    assert s.loc["fast", "median_wall_s"] == pytest.approx(0.2)
    assert s.loc["sampler", "median_abs_err_theta_E"] == 0.0 and np.isnan(s.loc["sampler", "median_source_ssim"])


def _figure_summary(theta_errors):
    methods = [("mock", "astrorim"), ("mock", "paper003_map"), ("mock", "paper003_nuts"), ("test", "astrorim")]
    return pd.DataFrame({"set": [s for s, _ in methods], "method": [m for _, m in methods],
                         "median_wall_s": [0.1, 500.0, 300.0, 0.06],
                         "median_rel_err_theta_E": theta_errors})


@pytest.mark.parametrize("errors, log", [([0.02, 0.0017, 0.0024, 0.22], True), ([0.2, 0.3, 0.25, 0.4], False)])
def test_comparison_bars_are_visible_with_their_values(errors, log):
    """Values spanning decades go on a log axis, where a 0.0017 bar next to a 0.22 one is still seen; every bar
    has its value written beside it."""
    import matplotlib.pyplot as plt

    from astrorim.baseline.compare import Panel, comparison_figure

    image = np.zeros((32, 32))
    image[12:20, 12:20] = 1.0
    fig = comparison_figure([Panel("p", image, image, image, image)], _figure_summary(errors))
    time_ax, error_ax = fig.axes[-2:]
    assert time_ax.get_xscale() == "log"  # 0.06 s to 500 s
    assert error_ax.get_xscale() == ("log" if log else "linear")
    bars = error_ax.patches
    assert [b.get_x() + b.get_width() for b in bars] == pytest.approx(errors)
    lo, hi = error_ax.get_xlim()
    for bar in bars:  # each bar is at least a few per cent of the axis long, in the axis' own scale
        if log:
            assert np.log(bar.get_x() + bar.get_width()) - np.log(lo) > 0.05 * (np.log(hi) - np.log(lo))
        else:
            assert bar.get_width() > 0.05 * (hi - lo)
    assert [t.get_text() for t in error_ax.texts] == [f"{e:.3g}" for e in errors]
    plt.close(fig)
