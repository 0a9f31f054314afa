"""Table 2 statistics, the paper transcription, the comparison and the LaTeX/JSON writers."""

import json

import numpy as np
import pandas as pd
import pytest

from astrorim.evaluate import tables as T


def frame(method="astrorim"):
    rows = []
    values = {"v1": [0.70, 0.85, 0.92, 0.96, 0.99], "v2": [0.5, 0.95], "v5": [0.91], "v6": [0.79, 0.97]}
    for version, ssims in values.items():
        for i, s in enumerate(ssims):
            rows.append({"method": method, "version": version, "index": i, "ssim": s, "ssim_default": s - 0.01,
                         "ssim_source": s - 0.1, "mse": (1 - s) * 1e-2, "ssim_published": s + 0.01,
                         "mse_published": (1 - s) * 1e-3})
    return pd.DataFrame(rows)


def test_summary_statistics_by_hand():
    t = T.table2(frame())
    v1 = t.loc["v1"]
    assert v1["n"] == 5
    assert v1["ssim_mean"] == pytest.approx(np.mean([0.70, 0.85, 0.92, 0.96, 0.99]))
    assert v1["ssim_std"] == pytest.approx(np.std([0.70, 0.85, 0.92, 0.96, 0.99], ddof=1))
    assert v1["ssim_median"] == pytest.approx(0.92)
    # numpy linear percentiles on 5 values: P10 = 0.70 + 0.4 * (0.85 - 0.70)
    assert v1["ssim_p10"] == pytest.approx(0.76)
    assert v1["ssim_p90"] == pytest.approx(0.96 + 0.6 * 0.03)
    assert v1["frac_ssim_ge_090"] == pytest.approx(3 / 5)
    assert v1["frac_ssim_ge_095"] == pytest.approx(2 / 5)
    assert v1["frac_ssim_lt_080"] == pytest.approx(1 / 5)
    assert v1["ssim_min"] == pytest.approx(0.70)
    assert v1["mse_median"] == pytest.approx(0.08e-2)
    assert v1["ssim_default_mean"] == pytest.approx(v1["ssim_mean"] - 0.01)


def test_rows_and_pooling():
    t = T.table2(frame())
    assert list(t.index) == ["All", "v1", "v2", "v3", "v4", "v5-6", "v5", "v6"]
    assert t.loc["All", "n"] == 10
    assert t.loc["v5-6", "n"] == t.loc["v5", "n"] + t.loc["v6", "n"] == 3
    assert t.loc["v5-6", "ssim_mean"] == pytest.approx(np.mean([0.91, 0.79, 0.97]))
    assert t.loc["v3", "n"] == 0 and np.isnan(t.loc["v3", "ssim_mean"])
    with pytest.raises(ValueError, match="no per-example metrics for method 'tikhonov'"):
        T.table2(frame(), "tikhonov")


def test_paper_transcription_is_internally_consistent(repo_root):
    """All-sims mean/N must equal the N-weighted means of the subsets (to the paper's rounding)."""
    paper = T.load_paper_table(repo_root / "resources/paper_table2.csv")
    subsets = paper.drop(index="All")
    assert subsets["n"].sum() == paper.loc["All", "n"] == 900
    w = subsets["n"] / subsets["n"].sum()
    assert (w * subsets["ssim_mean"]).sum() == pytest.approx(paper.loc["All", "ssim_mean"], abs=6e-4)
    assert (w * subsets["mse_mean"]).sum() == pytest.approx(paper.loc["All", "mse_mean"], rel=2e-3)
    for _, r in paper.iterrows():
        assert r["ssim_p10"] <= r["ssim_median"] <= r["ssim_p90"]
        assert r["mse_p10"] <= r["mse_median"] <= r["mse_p90"]
    assert paper.loc["v4", "ssim_min"] == 0.611
    assert paper.loc["All", "frac_ssim_ge_090"] == 0.729


def test_comparison_with_paper_differences(repo_root):
    paper = T.load_paper_table(repo_root / "resources/paper_table2.csv")
    pe = frame()
    ours = T.table2(pe)
    cmp = T.compare_with_paper(ours, paper, T.published_protocol_view(pe))
    row = cmp[(cmp["subset"] == "v1") & (cmp["statistic"] == "ssim_mean")].iloc[0]
    assert row["paper"] == 0.900
    assert row["ours"] == pytest.approx(ours.loc["v1", "ssim_mean"])
    assert row["difference"] == pytest.approx(ours.loc["v1", "ssim_mean"] - 0.900)
    assert row["ours_published_protocol"] == pytest.approx(ours.loc["v1", "ssim_mean"] + 0.01)
    # statistics the paper does not give for a subset are left out, not invented
    assert cmp[(cmp["subset"] == "v1") & (cmp["statistic"] == "frac_ssim_ge_090")].empty
    assert set(cmp["subset"]) == {"All", "v1", "v2", "v3", "v4", "v5-6"}
    tex = T.comparison_latex(cmp, "caption")
    assert "v5--6" in tex and "\\bottomrule" in tex


def test_latex_number_formatting():
    assert T.latex_sci(5.95e-4) == "$5.95 \\times 10^{-4}$"
    assert T.latex_sci(9.999e-4) == "$1.00 \\times 10^{-3}$"
    assert T.latex_sci(float("nan")) == "--"
    tex = T.table2_latex(T.table2(frame()), "Table 2")
    assert "All & 10 &" in tex
    assert "v3 & 0 & --" in tex
    assert "60.0\\%" in tex  # v1 fraction >= 0.90


def test_methods_table_and_json(tmp_path):
    pe = pd.concat([frame("astrorim"), frame("tikhonov_true")], ignore_index=True)
    m = T.methods_table(pe, {"astrorim": 0.25}, {"astrorim": 0.5})
    assert set(m["method"]) == {"astrorim", "tikhonov_true"}
    assert m.loc[m["method"] == "astrorim", "seconds_per_lens"].iloc[0] == 0.25
    assert np.isnan(m.loc[m["method"] == "tikhonov_true", "seconds_per_lens"].iloc[0])
    tex = T.methods_latex(m, {"astrorim": "AstroRIM"}, "caption")
    assert "AstroRIM &" in tex and "& 0.25 / 0.5 \\\\" in tex and "& -- / -- \\\\" in tex
    data = T.metrics_json({"astrorim": T.table2(pe, "astrorim")}, {"astrorim": 0.25})
    path = tmp_path / "m.json"
    T.write_json(data, path)
    loaded = json.loads(path.read_text())
    assert loaded["astrorim"]["v3"]["ssim_mean"] is None  # NaN -> null, still valid JSON
    assert loaded["astrorim"]["All"]["n"] == 10
    assert loaded["seconds_per_lens"]["astrorim"] == 0.25
