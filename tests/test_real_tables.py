"""Table 1 builder and per-lens tables on fixture JSONs."""

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from astrorim.physics import conversions
from astrorim.real.catalogue import CatalogueError, read_catalogue
from astrorim.real.tables import NO_DATA, NO_MODEL, build_table1, lens_table_rows, write_lens_table

REPO = Path(__file__).resolve().parents[1]
CATALOGUE = REPO / "config/real_lenses.csv"


def _diag(name, theta_model, theta_ref, chi2_dof=1.2, flag=False):
    """A diagnostics.json-shaped fixture (only the fields Table 1 reads, plus the per-lens table's)."""
    return {
        "name": name, "status": "ok", "illustrative_only": False, "z_lens": 0.3, "z_source": 0.66,
        "pixel_scale_arcsec": 0.08,
        "model": {"theta_e_arcsec": theta_model, "theta_e_effective_arcsec": theta_model,
                  "params": {"b": theta_model / 3.84, "q": 0.88, "phi": -3.13, "x0": 0.016, "y0": 0.005,
                             "gamma": 0.16, "gamma_phi": 0.06, "kappa_s": 0.06, "r_s": 0.11},
                  "sigma_sis_kms": 350.0, "einstein_mass_msun": 7.7e11, "mass_within_theta_e_msun": 7.8e11,
                  "sigma_crit_msun_per_arcsec2": 6.9e10, "sigma_crit_kg_per_m2": 4.1},
        "consistency": {"chi2_dof": chi2_dof, "flag_high_chi2": flag, "rms_residual": 0.0357, "snr": 1.36},
        "source": {"source_max": 0.032, "source_mean": 0.002},
        "reference": {"status": "ok", "theta_e_arcsec": theta_ref, "theta_e_err_arcsec": 0.004,
                      "theta_e_eff_arcsec": 0.99 * theta_ref},
    }


def _write(path: Path, payload: dict) -> Path:
    path.write_text(json.dumps(payload))
    return path


def test_table1_lists_every_catalogue_lens_and_paper_lens(tmp_path):
    j1 = _write(tmp_path / "rxj.json", _diag("RXJ1131-1231", 1.804, 1.900, chi2_dof=5.0, flag=True))
    j2 = _write(tmp_path / "he.json", {"name": "HE0435-1223", "status": "ok", "theta_e_arcsec": 1.2,
                                       "theta_e_err_arcsec": 0.01})  # a reference fit alone
    table = build_table1([j1, j2], CATALOGUE, tmp_path / "table1")
    entries = read_catalogue(CATALOGUE)
    assert len(table) == len(entries) + 1
    paper = {"B1608", "B2045", "B2108", "CFRS03", "HST01247", "HST14113", "SDSSJ1004"}
    no_data = table[table["status"] == NO_DATA]
    assert set(no_data["lens"]) == paper
    assert table.loc[table["lens"] == "SDSSJ1004", "paper_theta_e_ref_arcsec"].item() == pytest.approx(7.995)
    # Paper's Table-1 lenses come first, in the paper's (alphabetical) order.
    assert list(table["lens"].iloc[:8]) == ["B1608", "B2045", "B2108", "CFRS03", "HST01247", "HST14113",
                                            "RXJ1131 (RXJ1131-1231)", "SDSSJ1004"]
    rxj = table[table["lens"] == "RXJ1131 (RXJ1131-1231)"].iloc[0]
    assert rxj["abs_pct_diff_theta_e"] == pytest.approx(100 * 0.096 / 1.9)
    assert rxj["sigma_ref_kms"] == pytest.approx(conversions.sis_velocity_dispersion(1.9, 0.3, 0.66))
    assert rxj["mass_e_model_msun"] == pytest.approx(conversions.einstein_mass(1.804, 0.3, 0.66))
    assert rxj["abs_pct_diff_mass_e"] == pytest.approx(100 * (1 - (1.804 / 1.9) ** 2), rel=1e-9)
    assert bool(rxj["flag_high_chi2"])
    assert rxj["abs_pct_diff_theta_e_eff"] == pytest.approx(100 * abs(1.804 - 0.99 * 1.9) / (0.99 * 1.9))
    he = table[table["lens"] == "HE0435-1223"].iloc[0]
    assert he["status"] == NO_MODEL and he["theta_e_ref_arcsec"] == 1.2 and pd.isna(he["theta_e_model_arcsec"])
    mape = table.iloc[-1]
    assert mape["lens"].startswith("Mean abs.")
    assert mape["abs_pct_diff_theta_e"] == pytest.approx(rxj["abs_pct_diff_theta_e"])
    # Files: CSV readable back, LaTeX with the no-data note and the chi2 flag.
    back = pd.read_csv(tmp_path / "table1.csv")
    assert len(back) == len(table)
    tex = (tmp_path / "table1.tex").read_text()
    assert r"\multicolumn{11}{c}{\emph{no data available offline}}" in tex
    assert r"RXJ1131 (RXJ1131-1231)$^\ast$" in tex
    m = conversions.einstein_mass(1.804, 0.3, 0.66)
    assert f"${m / 1e11:.2f} \\times 10^{{11}}$" in tex


def test_reference_values_reproduce_paper_rxj1131_row(tmp_path):
    # With the paper's redshifts, our conversions give Table 1's reference sigma and mass for RXJ1131.
    rows = list(csv.DictReader(open(CATALOGUE)))
    header = list(rows[0])
    rxj = next(r for r in rows if r["name"] == "RXJ1131-1231")
    rxj = dict(rxj, z_lens="0.295", z_source="0.658")
    cat = tmp_path / "cat.csv"
    with open(cat, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=header)
        w.writeheader()
        w.writerow({**rxj, "image": str(REPO / rxj["image"]), "psf": "", "noise": "", "psf_variance": ""})
    j = _write(tmp_path / "rxj.json", _diag("RXJ1131-1231", 1.804, 1.900))
    table = build_table1([j], cat, tmp_path / "t1")
    row = table.iloc[0]
    assert row["sigma_ref_kms"] == pytest.approx(360.7, abs=0.1)
    assert row["mass_e_ref_msun"] == pytest.approx(7.95e11, rel=1e-3)


def test_unknown_lens_json_refused(tmp_path):
    j = _write(tmp_path / "x.json", _diag("NOT-A-LENS", 1.0, 1.0))
    with pytest.raises(ValueError, match=r"x\.json: lens 'NOT-A-LENS' is not in the catalogue"):
        build_table1([j], CATALOGUE, tmp_path / "t")


def test_lens_table_files(tmp_path):
    diag = _diag("RXJ1131-1231", 1.804, 1.900, chi2_dof=5.0, flag=True)
    rows = lens_table_rows(diag)
    names = [r[0] for r in rows]
    for q in ("b", "q", "phi", "(x0, y0)", "gamma", "gamma_phi", "kappa_s", "r_s", "theta_E", "sigma_v (SIS)",
              "pixel scale", "RMS residual", "S/N", "chi2/dof", "(z_l, z_s)", "source max/mean"):
        assert q in names
    assert dict((r[0], r[1]) for r in rows)["chi2/dof"].endswith("[HIGH]")
    write_lens_table(diag, tmp_path / "lens")
    assert pd.read_csv(tmp_path / "lens.csv").shape == (len(rows), 3)
    assert r"\begin{tabular}" in (tmp_path / "lens.tex").read_text()


def test_catalogue_errors_name_file_line_and_field(tmp_path):
    bad = tmp_path / "bad.csv"
    text = CATALOGUE.read_text().splitlines()
    header, first = text[0], text[1]
    fields = next(csv.reader([first]))
    idx = next(csv.reader([header])).index("z_lens")
    fields[idx] = "zero point three"
    bad.write_text(header + "\n" + ",".join(f'"{f}"' for f in fields) + "\n")
    with pytest.raises(CatalogueError, match=r"bad\.csv line 2: field z_lens='zero point three' is not a number"):
        read_catalogue(bad)
    missing = tmp_path / "missing.csv"
    missing.write_text("name,image\nX,\n")
    with pytest.raises(CatalogueError, match=r"missing\.csv: missing column"):
        read_catalogue(missing)


def test_catalogue_content():
    entries = {e.name: e for e in read_catalogue(CATALOGUE)}
    with_data = [e for e in entries.values() if e.has_data]
    assert len(with_data) == 10
    assert all(e.image.is_file() and e.psf.is_file() and e.noise.is_file() for e in with_data)
    assert entries["RXJ1131-1231"].paper_theta_e_ref_arcsec == pytest.approx(1.9)
    assert entries["RXJ1131-1231"].in_paper_table1
    assert np.sum([e.in_paper_table1 for e in entries.values()]) == 8
    assert entries["J1042"].exclude_circles_pix == ((59.75, 36.75, 4.375),)


def test_runtimes_side_by_side_and_old_jsons_without_them(tmp_path):
    new = _diag("RXJ1131-1231", 1.804, 1.900)
    new["model_runtime_s"], new["model_device"] = 0.0421, "cuda"
    new["reference"]["runtime_s"] = 148.3
    old = _diag("J1537", 1.40, 1.40)  # a diagnostics.json from before the timing fields
    ref_only = {"name": "HE0435-1223", "status": "ok", "theta_e_arcsec": 1.2, "theta_e_err_arcsec": 0.01,
                "runtime_s": {"pso": 80.0, "mcmc": 40.0, "total": 122.4, "cpu_total": 39.0}}
    paths = [_write(tmp_path / f"{i}.json", d) for i, d in enumerate((new, old, ref_only))]
    table = build_table1(paths, CATALOGUE, tmp_path / "table1")
    cols = list(table.columns)
    assert cols.index("ref_runtime_s") == cols.index("model_runtime_s") + 1
    by_lens = table.set_index("lens")
    assert by_lens.loc["RXJ1131 (RXJ1131-1231)", "model_runtime_s"] == pytest.approx(0.0421)
    assert by_lens.loc["RXJ1131 (RXJ1131-1231)", "ref_runtime_s"] == pytest.approx(148.3)
    assert pd.isna(by_lens.loc["J1537", "model_runtime_s"]) and pd.isna(by_lens.loc["J1537", "ref_runtime_s"])
    assert by_lens.loc["J1537", "status"] == "ok"
    assert by_lens.loc["HE0435-1223", "ref_runtime_s"] == pytest.approx(122.4)
    back = pd.read_csv(tmp_path / "table1.csv").set_index("lens")
    assert back.loc["RXJ1131 (RXJ1131-1231)", "ref_runtime_s"] == pytest.approx(148.3)
    assert pd.isna(back.loc["J1537", "model_runtime_s"])
    tex = (tmp_path / "table1.tex").read_text()
    assert r"$t^{\rm model}$ & $t^{\rm ref}$ \\" in tex
    rxj_line = next(line for line in tex.splitlines() if line.startswith("RXJ1131"))
    assert rxj_line.endswith(r"& 0.042 & 148 \\")
    j1537_line = next(line for line in tex.splitlines() if line.startswith("J1537"))
    assert j1537_line.endswith(r"& -- & -- \\")
    # Every tabular row has the header's number of cells.
    body = [line for line in tex.splitlines() if line.endswith(r"\\")]

    def cells(line):
        span = int(line.split(r"\multicolumn{")[1].split("}")[0]) if "multicolumn" in line else 1
        return line.count("&") + span

    n_cells = {cells(line) for line in body}
    assert n_cells == {14}

    rows = dict((q, (v, u)) for q, v, u in lens_table_rows(new))
    assert rows["runtime, AstroRIM model step (cuda)"] == ("0.0421", "s")
    assert rows["runtime, lenstronomy reference fit (wall)"] == ("148", "s")
    old_rows = dict((q, v) for q, v, _ in lens_table_rows(old))
    assert old_rows["runtime, AstroRIM model step"] == "--"
    assert old_rows["runtime, lenstronomy reference fit (wall)"] == "--"


def test_status_says_what_the_flags_say(tmp_path):
    """No "ok" beside flag_high_chi2 = True: the status names the flag (and an illustrative-only input)."""
    flagged = _diag("RXJ1131-1231", 1.80, 1.90, chi2_dof=24.1, flag=True)
    flagged["consistency"]["chi2_dof_threshold"] = 3.0
    clean = _diag("J1537", 1.40, 1.40)
    odd = _diag("HE0435-1223", 1.2, 1.2, chi2_dof=5.0, flag=True)
    odd["illustrative_only"] = True
    paths = [_write(tmp_path / f"{i}.json", d) for i, d in enumerate((flagged, clean, odd))]
    table = build_table1(paths, CATALOGUE, tmp_path / "table1").set_index("lens")
    status = table.loc["RXJ1131 (RXJ1131-1231)", "status"]
    assert status != "ok" and "high model chi2/dof 24.1 > 3" in status
    assert table.loc["J1537", "status"] == "ok"
    he = table.loc[[i for i in table.index if "HE0435" in i][0], "status"]
    assert "high model chi2/dof 5" in he and "illustrative only" in he
    flagged_rows = table[table["flag_high_chi2"].astype(str) == "True"]
    assert len(flagged_rows) == 2 and not (flagged_rows["status"] == "ok").any()
