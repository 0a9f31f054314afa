"""Evaluation figures (astrorim.evaluate.figures): Figure 7 and the failure gallery carry a colour bar on every
image panel and an angular scale bar in arcsec from each example's pixel scale."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

from astrorim.evaluate import figures


def _result(n_per_version=2, npix=48, pixel_scale=0.05):
    rng = np.random.default_rng(0)
    versions = ["v1", "v4"]
    n = n_per_version * len(versions)
    yy, xx = np.mgrid[:npix, :npix]
    source = np.exp(-((yy - 24.0) ** 2 + (xx - 22.0) ** 2) / 8.0)[None].repeat(n, 0).astype(np.float32)
    observed = (source + rng.normal(0, 0.05, source.shape)).astype(np.float32)
    truth = pd.DataFrame({"version": np.repeat(versions, n_per_version), "index": np.arange(n),
                          "pixel_scale": pixel_scale, "theta_E": 1.0, "q": 0.8, "norm_gamma": 0.01})
    per_example = pd.DataFrame({"method": "astrorim", "version": truth["version"],
                                "ssim": np.linspace(0.5, 0.95, n), "mse": np.linspace(1e-3, 1e-4, n)})
    examples = SimpleNamespace(observed=observed, source=source, noise_sigma=np.full(n, 0.05, np.float32),
                               truth=truth)
    return SimpleNamespace(per_example=per_example, examples=examples, provenance={},
                           estimates={"astrorim": 0.9 * source})


@pytest.fixture
def captured(monkeypatch):
    """The figures the module would save, kept open for inspection."""
    kept = []
    monkeypatch.setattr(figures, "_save", lambda fig, path: kept.append(fig) or [path])
    yield kept
    import matplotlib.pyplot as plt

    for fig in kept:
        plt.close(fig)


def _scale_bars(ax):
    return [a for a in ax.artists if isinstance(a, AnchoredSizeBar)]


@pytest.mark.parametrize("make", ["figure7", "failure_gallery"])
def test_every_image_panel_has_a_colour_bar_and_an_arcsec_scale_bar(captured, tmp_path, make):
    result = _result()
    if make == "figure7":
        figures.figure7(result, tmp_path / "f.png", 1)  # one row per version
    else:
        figures.failure_gallery(result, tmp_path / "f.png", 2)
    (fig,) = captured
    insets = {c for ax in fig.axes for c in ax.child_axes}
    image_axes = [ax for ax in fig.axes if ax.images and ax not in insets]
    assert len(image_axes) == 4 * 2  # two rows of observed | truth | reconstruction | residual
    for ax in image_axes:
        (colour_bar,) = ax.child_axes
        image = ax.images[0]
        assert colour_bar.get_ylim() == pytest.approx(image.get_clim()), ax.get_title()  # the panel's own range
        (bar,) = _scale_bars(ax)
        assert bar.txt_label.get_text().endswith('"'), ax.get_title()


def test_scale_bar_length_is_in_arcsec_at_the_example_pixel_scale(captured, tmp_path):
    figures.figure7(_result(pixel_scale=0.05), tmp_path / "f.png", 1)
    (fig,) = captured
    observed = fig.axes[0]
    (bar,) = _scale_bars(observed)
    length_arcsec = float(bar.txt_label.get_text().rstrip('"'))
    # 48 px at 0.05"/px = 2.4": the longest round length within a third of it is 0.5"
    assert length_arcsec == 0.5
    drawn_pixels = bar.size_bar.get_children()[0].get_width()
    assert drawn_pixels == pytest.approx(length_arcsec / 0.05)


@pytest.mark.parametrize("width, scale, expected", [(96, 0.05, 1.0), (96, 0.1, 2.0), (20, 0.04, 0.25), (4, 0.01, 0.1)])
def test_scale_bar_lengths(width, scale, expected):
    assert figures.scale_bar_arcsec(width, scale) == expected
