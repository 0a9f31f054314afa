"""The Snakemake report (`snakemake --report`), opened in headless Chromium.

The quick study's report (simulation, training, evaluation) is built and browsed by
tests/test_workflow.py::test_quick_study_runs on the outputs that test computes; here the report of a committed
CPU-scale run's real-lens and baseline outputs, which cost minutes to recompute, is built from the committed files.
"""

import pytest
from report_browser import browse_report, build_report, check_browsed

pytestmark = pytest.mark.workflow

RUN = "cpu_small"


def test_report_of_committed_real_lens_and_baseline_results(repo_root, tmp_path):
    out = tmp_path / "report.html"
    build_report(repo_root, out, f"config/{RUN}.yaml", "table1", "baseline_all")
    walk = browse_report(out, tmp_path / "browser")
    results = repo_root / "results" / RUN
    pngs = sorted(p.relative_to(repo_root) for p in [*(results / "real_lenses").rglob("*.png"),
                                                      *(results / "figures" / "real_lenses").glob("*.png"),
                                                      *(results / "baseline").rglob("*.png")])
    assert len(pngs) >= 28
    seen = check_browsed(walk, pngs, ["Real lenses", "Baseline"])
    assert seen[f"results/{RUN}/tables/table1.csv"][0]["subcategory"] == "Table 1"
    j1042 = seen[f"results/{RUN}/real_lenses/J1042/reference_fit.png"][0]
    assert j1042["subcategory"] == "J1042"
    assert "reference fit of J1042" in j1042["info"]  # the caption, with the lens wildcard filled in
    for table in ("comparison.csv", "comparison_summary.csv", "map_summary.csv", "posterior_summary.csv",
                  "table1_snr.csv"):
        assert f"results/{RUN}/baseline/{table}" in seen, table
