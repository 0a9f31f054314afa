"""Real-lens figures (astrorim.real.figures): every marker and reference line explained in a legend, and no
label outside the figure."""

from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from astrorim.real.figures import diagnostic_figure, reference_fit_figure  # noqa: E402


def _point(x, y):
    return SimpleNamespace(x_arcsec=x, y_arcsec=y)


def _reference_inputs(rows=60, cols=40):
    rng = np.random.default_rng(0)
    shape = (rows, cols)
    search = SimpleNamespace(images=[_point(1.0, 0.2), _point(-0.9, -0.3)], rejected=[_point(0.3, 1.1)])
    prepared = SimpleNamespace(native=SimpleNamespace(noise=np.full((80, 80), 0.1)), centre_rc=(40.0, 40.0),
                               search=search,
                               entry=SimpleNamespace(name="TEST-LENS", theta_e_catalogue_arcsec=1.0))
    result = SimpleNamespace(
        crop_rc=(40 - rows // 2, 40 + rows // 2, 40 - cols // 2, 40 + cols // 2), pixel_scale_xy_arcsec=(0.05, 0.05),
        data_image=rng.normal(0, 0.1, shape), likelihood_mask=np.ones(shape, bool), model_image=np.zeros(shape),
        normalised_residual=rng.normal(0, 1, shape),
        kwargs_lens=[{"theta_E": 0.9, "e1": 0.05, "e2": 0.0, "center_x": 0.0, "center_y": 0.0},
                     {"gamma1": 0.02, "gamma2": 0.0}],
        kwargs_ps=[{"ra_image": np.array([0.9, -0.9]), "dec_image": np.array([0.2, -0.3])}],
        chi2_reduced=1.3, theta_e_arcsec=0.9, theta_e_err_arcsec=0.001,
        method="PSO (60 particles x 100 iterations) + emcee (40 walkers x 50 burn-in + 50 steps)")
    return prepared, result


def _legend_texts(ax):
    legend = ax.get_legend()
    return [t.get_text() for t in legend.get_texts()] if legend else []


def _every_line_is_in_the_legend(ax):
    labels = set(_legend_texts(ax))
    for line in ax.get_lines():
        assert not line.get_label().startswith("_"), f"{ax.get_title()}: a line or marker without a label"
        assert line.get_label() in labels, (ax.get_title(), line.get_label())


def _inside_the_figure(fig):
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    for ax in fig.axes:
        tight = ax.get_tightbbox(renderer)
        assert tight.x0 >= box.x0 - 1 and tight.y0 >= box.y0 - 1, ax.get_title()
        assert tight.x1 <= box.x1 + 1 and tight.y1 <= box.y1 + 1, ax.get_title()


@pytest.mark.parametrize("rows, cols", [(60, 40), (40, 60), (50, 50)])
def test_reference_fit_figure_explains_its_markers_and_keeps_its_labels(rows, cols):
    fig = reference_fit_figure(*_reference_inputs(rows, cols))
    data, model = fig.axes[:2]
    assert _legend_texts(data) == ["lens centre", "detected images", "other peaks (rejected)"]
    assert _legend_texts(model) == ["model image positions", "critical curve"]
    _every_line_is_in_the_legend(data)
    _every_line_is_in_the_legend(model)
    _inside_the_figure(fig)
    plt.close(fig)


def _diagnostic_inputs():
    n = 32
    r = np.linspace(0.05, 1.9, 20)
    xk = np.linspace(-1.9, 1.9, n)
    kx, ky = np.meshgrid(xk, xk)
    kappa = 0.5 / np.maximum(np.hypot(kx, ky), 0.05)
    model_input = SimpleNamespace(npix=n, pixel_scale_arcsec=0.12, mask=np.ones((n, n), bool),
                                  image=np.random.default_rng(0).normal(0, 1, (n, n)), noise=np.ones((n, n)))
    model_output = SimpleNamespace(model_image=np.zeros((n, n)), source=np.zeros((n, n)))
    diag = {"model": {"theta_e_arcsec": 0.5, "einstein_mass_msun": 3e10, "sigma_sis_kms": 150.0,
                      "params": {"q": 0.8, "gamma": 0.02}},
            "consistency": {"rms_residual": 0.03, "chi2_dof": 30.0, "flag_high_chi2": True, "chi2_dof_threshold": 3.0},
            "source": {"source_max": 0.2, "source_mean": 0.001},
            "curves": {"r_kappa_arcsec": r, "kappa_r": 0.5 / r, "r_mass_arcsec": r, "enclosed_mass_msun": 1e11 * r},
            "reference": {"theta_e_arcsec": 0.87}, "pixel_scale_arcsec": 0.12, "z_lens": 0.6, "z_source": 2.5}
    arrays = {"chi2_map": np.ones((n, n)), "kappa_x": xk, "kappa_y": xk, "kappa": kappa,
              "det_a": (1 - kappa) ** 2 - 0.01}
    return "TEST-LENS", model_input, model_output, diag, arrays


def test_diagnostic_figure_explains_its_reference_lines():
    fig = diagnostic_figure(*_diagnostic_inputs())
    kappa_profile, mass_profile = fig.axes[6], fig.axes[7]
    assert mass_profile.get_ylabel() == "M(<r) [Msun]"
    for ax in (kappa_profile, mass_profile):
        _every_line_is_in_the_legend(ax)
    assert {"kappa = 1", "kappa = 1/2", "reference 0.870\""} <= set(_legend_texts(kappa_profile))
    _inside_the_figure(fig)
    plt.close(fig)
