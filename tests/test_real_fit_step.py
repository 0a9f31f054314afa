"""Real lenses with "AstroRIM + fit": the point-image mask and Table 1 with the fit's columns."""

import math

import numpy as np
import pandas as pd

from astrorim.real.fit_step import FIT_COLUMNS, point_image_mask, table1_fit_latex, table1_with_fit


def test_point_image_mask_removes_disks_at_lens_centre_plus_offset():
    npix, scale = 96, 0.05
    keep = point_image_mask(npix, scale, (0.1, -0.05), [(1.0, 0.0), (0.0, -1.0)], radius_arcsec=0.2, min_pix=0)
    centres = (np.arange(npix) - (npix - 1) / 2) * scale
    col = lambda x: int(np.argmin(np.abs(centres - x)))  # noqa: E731
    # x along columns, y along rows: image 1 at (1.1, -0.05), image 2 at (0.1, -1.05)
    assert not keep[col(-0.05), col(1.1)] and not keep[col(-1.05), col(0.1)]
    assert keep[col(-0.05), col(1.1) + 5] and keep[col(1.1), col(-0.05)]  # 0.25" away; the transposed point
    # two disks of radius 4 px: ~2 x pi x 16 pixels masked
    assert abs((~keep).sum() - 2 * math.pi * 16) < 12
    # the pixel floor: at least min_pix pixels of radius
    assert (~point_image_mask(npix, scale, (0, 0), [(0, 0)], radius_arcsec=0.01, min_pix=2)).sum() >= 9


def test_table1_with_fit_inserts_the_fit_columns_beside_the_network():
    table1 = pd.DataFrame({
        "lens": ["B1608", "A", "B", "RXJ1131 (RXJ1131-1231)", "Mean abs. % error (MAPE)"],
        "theta_e_model_arcsec": [np.nan, 1.1, 0.5, 1.8, np.nan],
        "theta_e_ref_arcsec": [np.nan, 1.0, 1.0, 2.0, np.nan],
        "abs_pct_diff_theta_e": [np.nan, 10.0, 50.0, 10.0, 23.3],
        "chi2_dof_model": [np.nan, 30.0, 200.0, 40.0, np.nan],
        "status": ["no data available offline", "ok", "ok", "ok", ""],
    })
    fits = [{"name": "A", "status": "ok", "theta_e_fit_arcsec": 0.98, "theta_e_fit_err_arcsec": 0.01,
             "chi2_per_pixel": 1.2, "flag": "ok", "fit_runtime_s": 12.0},
            {"name": "B", "status": "fit refused", "reason": "observed: no signal"},
            {"name": "RXJ1131-1231", "status": "ok", "theta_e_fit_arcsec": 1.9, "theta_e_fit_err_arcsec": 0.02,
             "chi2_per_pixel": 3.0, "flag": "not_converged", "fit_runtime_s": 9.0}]
    out = table1_with_fit(table1, fits)
    cols = list(out.columns)
    assert cols[cols.index("chi2_dof_model") + 1: cols.index("chi2_dof_model") + 1 + len(FIT_COLUMNS)] == \
        list(FIT_COLUMNS)
    a = out.set_index("lens").loc["A"]
    assert a["theta_e_fit_arcsec"] == 0.98 and abs(a["abs_pct_diff_theta_e_fit"] - 2.0) < 1e-9
    assert a["chi2_dof_fit"] == 1.2 and a["flag_fit"] == "ok"
    b = out.set_index("lens").loc["B"]
    assert math.isnan(b["theta_e_fit_arcsec"]) and b["fit_status"] == "fit refused: observed: no signal"
    assert out.set_index("lens").loc["B1608", "fit_status"] == ""
    # a paper lens is matched by the catalogue name in brackets
    assert out.set_index("lens").loc["RXJ1131 (RXJ1131-1231)", "theta_e_fit_arcsec"] == 1.9
    # the summary row: mean over lenses with both numbers (A: 2 %, RXJ1131: 5 %)
    assert abs(out.set_index("lens").loc["Mean abs. % error (MAPE)", "abs_pct_diff_theta_e_fit"] - 3.5) < 1e-9
    tex = table1_fit_latex(out)
    assert "A & 1.000 & 1.100 (10.0\\%)" in tex and "$0.980 \\pm 0.010$ (2.0\\%)" in tex and "B1608" not in tex
