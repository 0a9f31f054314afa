"""The classical reference fit on a simulated quad with known Einstein radius."""

import time

import numpy as np
import pytest
from astropy.io import fits

from astrorim.real.ingest import find_lens_centre, read_native
from astrorim.real.point_sources import find_point_images
from astrorim.real.reference_fit import (
    ReferenceFitSettings,
    effective_einstein_radius_arcsec,
    fit_reference,
    reference_params_normalised,
)

TRUE_THETA_E = 1.0
SCALE = 0.05


def _simulate(tmp_path):
    """A 72x72 quad: SIE + shear, Sersic lens light and source, a quasar; returns the FITS paths."""
    from lenstronomy.Data.imaging_data import ImageData
    from lenstronomy.Data.psf import PSF
    from lenstronomy.ImSim.image_model import ImageModel
    from lenstronomy.LensModel.lens_model import LensModel
    from lenstronomy.LensModel.Solver.lens_equation_solver import LensEquationSolver
    from lenstronomy.LightModel.light_model import LightModel
    from lenstronomy.PointSource.point_source import PointSource

    n = 72
    half = (n - 1) / 2 * SCALE
    data = ImageData(image_data=np.zeros((n, n)), ra_at_xy_0=-half, dec_at_xy_0=-half,
                     transform_pix2angle=np.diag([SCALE, SCALE]))
    y, x = np.mgrid[-10:11, -10:11]
    kernel = np.exp(-0.5 * (x ** 2 + y ** 2) / (0.1 / 2.355 / SCALE) ** 2)
    psf = PSF(psf_type="PIXEL", kernel_point_source=kernel / kernel.sum())
    lens = LensModel(["SIE", "SHEAR"])
    kw_lens = [{"theta_E": TRUE_THETA_E, "e1": 0.08, "e2": -0.04, "center_x": 0.0, "center_y": 0.0},
               {"gamma1": 0.03, "gamma2": 0.02}]
    src_x, src_y = 0.04, 0.02
    xs, ys = LensEquationSolver(lens).image_position_from_source(src_x, src_y, kw_lens, min_distance=SCALE,
                                                                  search_window=4.0)
    assert len(xs) == 4
    model = ImageModel(data, psf, lens, LightModel(["SERSIC_ELLIPSE"]), LightModel(["SERSIC_ELLIPSE"]),
                       PointSource(["LENSED_POSITION"], fixed_magnification_list=[False]))
    clean = model.image(kw_lens,
                        [{"amp": 20.0, "R_sersic": 0.15, "n_sersic": 1.5, "e1": 0.1, "e2": 0.0,
                          "center_x": src_x, "center_y": src_y}],
                        [{"amp": 15.0, "R_sersic": 0.6, "n_sersic": 3.0, "e1": 0.05, "e2": 0.0,
                          "center_x": 0.0, "center_y": 0.0}],
                        [{"ra_image": xs, "dec_image": ys, "point_amp": np.full(4, 60.0)}])
    rng = np.random.default_rng(11)
    sigma = np.sqrt(0.01 ** 2 + np.clip(clean, 0, None) / 2000.0)
    image = clean + rng.normal(0.0, sigma)
    header = fits.Header()
    header["PIXSCALE"] = SCALE
    paths = {}
    for name, arr in (("image", image), ("noise", sigma), ("psf", kernel / kernel.sum())):
        paths[name] = tmp_path / f"{name}.fits"
        fits.PrimaryHDU(arr.astype(np.float32), header=header if name == "image" else None).writeto(paths[name])
    return paths, (xs, ys)


@pytest.mark.slow
def test_reference_fit_recovers_theta_e(tmp_path):
    paths, (xs, ys) = _simulate(tmp_path)
    native = read_native(paths["image"], noise_path=paths["noise"], psf_path=paths["psf"])
    theta_guess = 1.1  # the catalogue value is only a rough start
    centre = find_lens_centre(native, 0.4 * theta_guess)
    assert centre == pytest.approx((35.5, 35.5), abs=0.2)
    images = find_point_images(native, centre, theta_guess).images
    found = np.array([[im.x_arcsec, im.y_arcsec] for im in images])
    true = np.stack([xs, ys], axis=1)
    assert np.max(np.min(np.linalg.norm(found[:, None] - true[None], axis=2), axis=1)) < 0.5 * SCALE
    settings = ReferenceFitSettings(n_particles=30, n_iterations=40, mcmc_n_burn=10, mcmc_n_run=10,
                                    n_theta_samples=60, seed=3)
    t0 = time.process_time()
    result = fit_reference(native, centre, images, theta_guess, settings)
    cpu = time.process_time() - t0
    assert result.theta_e_arcsec == pytest.approx(TRUE_THETA_E, rel=0.01)
    assert result.theta_e_eff_arcsec == pytest.approx(
        effective_einstein_radius_arcsec([{"theta_E": 1.0, "e1": 0.08, "e2": -0.04, "center_x": 0.0, "center_y": 0.0},
                                          {"gamma1": 0.03, "gamma2": 0.02}]), rel=0.01)
    assert 0 < result.theta_e_err_arcsec < 0.02
    assert result.chi2_reduced < 1.5
    assert result.runtime_s["cpu_total"] == pytest.approx(cpu, rel=0.5)
    # Same seed, same answer (a tiny PSO keeps this cheap); the caller's random stream is untouched.
    tiny = ReferenceFitSettings(n_particles=8, n_iterations=4, seed=5)
    np.random.seed(0)
    first = fit_reference(native, centre, images, theta_guess, tiny, run_mcmc=False).kwargs_lens[0]["theta_E"]
    after = np.random.random()
    np.random.seed(0)
    second = fit_reference(native, centre, images, theta_guess, tiny, run_mcmc=False).kwargs_lens[0]["theta_E"]
    assert first == second
    assert np.random.random() == after
    payload = {"status": "ok", "name": "sim", "kwargs_lens": result.kwargs_lens}
    norm = reference_params_normalised(payload, 96, 0.04)
    assert norm["b"] * 48 * 0.04 == pytest.approx(result.theta_e_arcsec)
    assert norm["kappa_s"] == 0.0
