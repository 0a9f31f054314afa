"""Physical diagnostics against analytic limits and lenstronomy."""

import math

import numpy as np
import pytest

from astrorim.params import b_from_theta_e_arcsec, lenstronomy_kwargs_to_normalised
from astrorim.physics import conversions
from astrorim.real import diagnostics as dg

NPIX, SCALE = 96, 0.04
ZL, ZS = 0.5, 2.0


def _params(theta_e=1.0, q=1.0, phi=0.0, x0=0.0, y0=0.0, gamma=0.0, gamma_phi=0.0, kappa_s=0.0, r_s=float("nan")):
    return {"b": float(b_from_theta_e_arcsec(theta_e, NPIX, SCALE)), "q": q, "phi": phi, "x0": x0, "y0": y0,
            "gamma": gamma, "gamma_phi": gamma_phi, "kappa_s": kappa_s, "r_s": r_s}


def test_sis_kappa_is_half_at_theta_e():
    p = _params(theta_e=1.0, x0=0.05, y0=-0.03)
    centre = dg.lens_centre_arcsec(p, NPIX, SCALE)
    x, y = dg.grid_arcsec(NPIX, SCALE, oversample=4)
    kappa = dg.convergence_map(p, NPIX, SCALE, x, y)
    r_mid, k_r = dg.radial_profile(kappa, x, y, centre, np.array([0.99, 1.01]))
    assert k_r[0] == pytest.approx(0.5, rel=2e-3)
    # Pointwise too: kappa = theta_E / (2 r) for an SIS.
    r = np.hypot(x - centre[0], y - centre[1])
    ring = np.abs(r - 1.0) < 0.01
    np.testing.assert_allclose(kappa[ring], 0.5 / r[ring], rtol=1e-6)


def test_sis_enclosed_mass_at_theta_e_equals_einstein_mass():
    p = _params(theta_e=1.0)
    m_e = conversions.einstein_mass(1.0, ZL, ZS)
    m_gauss = dg.enclosed_mass_msun(p, NPIX, SCALE, 1.0, ZL, ZS)[0]
    assert m_gauss == pytest.approx(m_e, rel=1e-4)
    # The pixel sum of the kappa map (the published code's way) agrees to 1 %.
    x, y = dg.grid_arcsec(NPIX, SCALE, oversample=4)
    kappa = dg.convergence_map(p, NPIX, SCALE, x, y)
    sigma = conversions.critical_surface_density(ZL, ZS)
    m_pix = dg.enclosed_mass_pixel_sum_msun(kappa, x, y, (SCALE / 4) ** 2, 1.0, sigma, (0.0, 0.0))
    assert m_pix == pytest.approx(m_e, rel=0.01)
    q = dg.physical_quantities(p, NPIX, SCALE, ZL, ZS)
    assert q["theta_e_arcsec"] == pytest.approx(1.0)
    assert q["mass_within_theta_e_msun"] == pytest.approx(m_e, rel=1e-4)
    assert q["theta_e_effective_arcsec"] == pytest.approx(1.0, rel=1e-4)
    assert q["sigma_sis_kms"] == pytest.approx(conversions.sis_velocity_dispersion(1.0, ZL, ZS))


def test_enclosed_mass_grows_linearly_for_sis():
    p = _params(theta_e=0.8)
    r = np.array([0.2, 0.5, 1.0, 1.5])
    m = dg.enclosed_mass_msun(p, NPIX, SCALE, r, ZL, ZS)
    sigma = conversions.critical_surface_density(ZL, ZS)
    np.testing.assert_allclose(m, np.pi * sigma * 0.8 * r, rtol=1e-4)  # M(<r) = pi Sigma_crit theta_E r


def test_shear_adds_no_mass_and_sie_matches_pixel_sum():
    p = _params(theta_e=1.2, q=0.6, phi=0.4, gamma=0.08, gamma_phi=1.0)
    x, y = dg.grid_arcsec(NPIX, SCALE, oversample=6)
    kappa = dg.convergence_map(p, NPIX, SCALE, x, y)
    sigma = conversions.critical_surface_density(ZL, ZS)
    for r in (0.6, 1.2, 1.7):
        m_gauss = dg.enclosed_mass_msun(p, NPIX, SCALE, r, ZL, ZS)[0]
        m_pix = dg.enclosed_mass_pixel_sum_msun(kappa, x, y, (SCALE / 6) ** 2, r, sigma, (0.0, 0.0))
        assert m_gauss == pytest.approx(m_pix, rel=0.01)
    p0 = dict(p, gamma=0.0)
    assert dg.enclosed_mass_msun(p, NPIX, SCALE, 1.0, ZL, ZS)[0] == pytest.approx(
        dg.enclosed_mass_msun(p0, NPIX, SCALE, 1.0, ZL, ZS)[0], rel=1e-9)


def test_nfw_enclosed_mass_matches_lenstronomy():
    from lenstronomy.LensModel.Profiles.nfw import NFW

    rs_arcsec, alpha_rs = 1.5, 0.4
    sie = {"theta_E": 0.9, "e1": 0.0, "e2": 0.0, "center_x": 0.0, "center_y": 0.0}
    p = lenstronomy_kwargs_to_normalised(sie, {"gamma1": 0.0, "gamma2": 0.0},
                                         {"Rs": rs_arcsec, "alpha_Rs": alpha_rs}, NPIX, SCALE)
    nfw = NFW()
    rho0 = nfw.alpha2rho0(alpha_rs, rs_arcsec)
    for r in (0.5, 1.0, 1.8):
        mean_kappa = dg.mean_convergence_inside(p, NPIX, SCALE, r)[0]
        expected = (np.pi * 0.9 * r + nfw.mass_2d(r, rs_arcsec, rho0)) / (np.pi * r ** 2)  # SIS: pi theta_E r
        assert mean_kappa == pytest.approx(expected, rel=1e-4)


def test_critical_curve_of_sis_is_the_einstein_circle():
    p = _params(theta_e=1.0)
    phi = np.linspace(0, 2 * np.pi, 7)
    det_in = dg.magnification_determinant(p, NPIX, SCALE, 0.95 * np.cos(phi), 0.95 * np.sin(phi))
    det_on = dg.magnification_determinant(p, NPIX, SCALE, np.cos(phi), np.sin(phi))
    det_out = dg.magnification_determinant(p, NPIX, SCALE, 1.05 * np.cos(phi), 1.05 * np.sin(phi))
    assert np.all(det_in < 0) and np.all(det_out > 0)
    np.testing.assert_allclose(det_on, 0.0, atol=1e-6)


def test_sigma_crit_kg_per_m2_matches_astropy():
    from astropy import constants as const
    from astropy import units as u

    cosmo = conversions.default_cosmology()
    d_l = cosmo.angular_diameter_distance(ZL)
    d_s = cosmo.angular_diameter_distance(ZS)
    d_ls = cosmo.angular_diameter_distance(ZL, ZS)
    expected = (const.c ** 2 / (4 * math.pi * const.G) * d_s / (d_l * d_ls)).to_value(u.kg / u.m ** 2)
    assert dg.sigma_crit_kg_per_m2(ZL, ZS) == pytest.approx(expected, rel=1e-10)


def test_forward_consistency_on_pure_noise():
    rng = np.random.default_rng(5)
    model = rng.random((96, 96))
    noise = np.full((96, 96), 0.1)
    obs = model + rng.normal(0, 0.1, size=model.shape)
    mask = np.ones_like(obs, dtype=bool)
    mask[:10] = False
    res = dg.forward_consistency(obs, model, noise, mask)
    assert res["dof"] == 86 * 96 - 9
    assert res["chi2_dof"] == pytest.approx(1.0, abs=0.05)
    assert not res["flag_high_chi2"]
    assert np.isnan(res["chi2_map"][0, 0])
    assert res["rms_residual"] == pytest.approx(0.1, rel=0.05)
    bad = dg.forward_consistency(obs, model * 1.5, noise, mask)
    assert bad["flag_high_chi2"] and bad["chi2_dof"] > 3.0


def test_bad_params_rejected():
    with pytest.raises(ValueError, match="missing"):
        dg.physical_quantities({"b": 0.5}, NPIX, SCALE, ZL, ZS)
    with pytest.raises(ValueError, match="0 < q <= 1"):
        dg.physical_quantities(_params(q=1.5), NPIX, SCALE, ZL, ZS)
