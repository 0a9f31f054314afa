"""The high-S/N phi error of every paper-003 source prior measured so far, in one table and one figure.

    python studies/baseline_phi_bias_summary.py
    # -> results/studies/baseline_phi_bias.csv, baseline_phi_bias.png and baseline_phi_bias_misfit.png

Fits nothing: it reads the committed ``baseline_map_convergence.py`` results listed in ``MEASUREMENTS`` (which prior,
which experiment, which file) and the truth of each system from the configuration that each file names.  For every
start from the prior centre and from the truth it reports phi's error in per cent (the paper's measure) and in
degrees, and the fitted external shear's magnitude and angle errors, since the lens orientation trades against the
shear.  The figure puts the experiments side by side per system, with the issue's ~1 % target as a band:

* ``shear free``: the workflow's model on the mock (the real test);
* ``shear pinned``: the same with the external shear held at its truth (``--pin-shear``, a diagnostic);
* ``well-specified control``: the mock re-observed with its source replaced by the VAE's own drawing of it
  (``--well-specified``), so that the source prior can draw the source exactly;
* ``seen source``: the mock's source replaced by a training image of the VAE (``--seen-source``);
* ``misfit scan`` (``MISFIT_SCAN``, its own figure): the mock's source replaced by the VAE's drawing plus a fraction
  F of what the drawing misses (``--misfit-fraction F``, F from 0, the control, to 1, the mock): how the bias grows
  with the part of the source that the prior cannot draw.

Every output is written atomically.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from astrorim.baseline.io import load_json  # noqa: E402
from astrorim.baseline.plots import plt, save_figure  # noqa: E402
from astrorim.config import ConfigError, load_config  # noqa: E402
from astrorim.io.atomic import atomic_path  # noqa: E402

STUDIES = "results/studies"


class Measurement(NamedTuple):
    prior: str  # the source prior, as docs/baseline-findings.md names it
    experiment: str  # one of EXPERIMENTS
    path: str  # a baseline_map_convergence.py result, relative to the repository


EXPERIMENTS = ("shear free", "shear pinned", "well-specified control", "seen source", "misfit scan")

W16_150, W32_120, W16_450 = "width 16, 150 ep", "width 32, 120 ep", "width 16, 450 ep"
W64_43, W64_124 = "width 64, 43 ep", "width 64, 124 ep"
PRIORS = (W16_150, W32_120, W16_450, W64_43, W64_124)
W16_150_RETRAINED = "width 16, 150 ep, retrained"  # cpu_small's configuration trained again for the misfit scan

MEASUREMENTS = (
    Measurement(W16_150, "shear free", f"{STUDIES}/baseline_map_phi_starts_system1.json"),
    Measurement(W16_150, "shear free", f"{STUDIES}/baseline_map_phi_starts_system2.json"),
    Measurement(W16_150, "well-specified control", f"{STUDIES}/baseline_map_convergence_vae150_control_polish.json"),
    Measurement(W16_150, "seen source", f"{STUDIES}/baseline_map_seen_source_system1.json"),
    Measurement(W16_150, "seen source", f"{STUDIES}/baseline_map_seen_source_system2.json"),
    Measurement(W32_120, "shear free", f"{STUDIES}/baseline_map_convergence_vae32_long_system1.json"),
    Measurement(W32_120, "shear free", f"{STUDIES}/baseline_map_convergence_vae32_long_system2.json"),
    Measurement(W16_450, "shear free", f"{STUDIES}/baseline_map_convergence_vae16_450_system1.json"),
    Measurement(W16_450, "shear free", f"{STUDIES}/baseline_map_convergence_vae16_450_system2.json"),
    Measurement(W16_450, "shear pinned", f"{STUDIES}/baseline_map_convergence_vae16_450_pinned_shear_system1.json"),
    Measurement(W16_450, "shear pinned", f"{STUDIES}/baseline_map_convergence_vae16_450_pinned_shear_system2.json"),
    Measurement(W64_43, "shear free",
                f"{STUDIES}/prior_study_vae64_cpu/baseline_map_convergence_cpu_small_vae64_system1.json"),
    Measurement(W64_43, "shear free",
                f"{STUDIES}/prior_study_vae64_cpu/baseline_map_convergence_cpu_small_vae64_system2.json"),
    Measurement(W64_124, "shear free",
                f"{STUDIES}/prior_study_vae64_cpu_124ep/baseline_map_convergence_cpu_small_vae64_system1.json"),
    Measurement(W64_124, "shear free",
                f"{STUDIES}/prior_study_vae64_cpu_124ep/baseline_map_convergence_cpu_small_vae64_system2.json"),
    Measurement(W64_124, "shear pinned", f"{STUDIES}/baseline_map_convergence_vae64_124ep_pinned_shear_system1.json"),
    Measurement(W64_124, "shear pinned", f"{STUDIES}/baseline_map_convergence_vae64_124ep_pinned_shear_system2.json"),
)

MISFIT_FRACTIONS = ("0", "0.25", "0.5", "0.75", "1")
MISFIT_SCAN = tuple(Measurement(W16_150_RETRAINED, "misfit scan", f"{STUDIES}/baseline_map_misfit/{system}_f{f}.json")
                    for system in ("system1", "system2") for f in MISFIT_FRACTIONS)

STARTS = ("prior centre", "truth")  # the starts every file has; the phi-moved starts of the scan are left out
COLUMNS = ("prior", "experiment", "misfit_fraction", "system", "start", "phi_true_rad", "phi_error_pct",
           "phi_error_deg", "shear_magnitude_error_pct", "shear_angle_error_deg", "log_joint", "source")


def _read_json(path: Path, repo: Path) -> dict:
    try:
        return load_json(path)
    except FileNotFoundError:
        raise SystemExit(f"{path.relative_to(repo)}: missing (a MEASUREMENTS entry of {Path(__file__).name})")
    except json.JSONDecodeError as err:
        raise SystemExit(f"{path.relative_to(repo)}: not JSON ({err})")


def _field(record: dict, key: str, where: str):
    if key not in record:
        raise SystemExit(f"{where}: no field {key!r}")
    return record[key]


def _truth(config_path: str, system: str, repo: Path, where: str) -> dict:
    try:
        config = load_config(repo / config_path)
    except (ConfigError, FileNotFoundError) as err:
        raise SystemExit(f"{where}: its config {config_path} cannot be read ({err})")
    systems = config["baseline"]["systems"]
    if system not in systems:
        raise SystemExit(f"{where}: system {system!r} is not in {config_path}'s baseline.systems")
    return systems[system]["truth"]


def shear_errors(truth: dict, rel_error_pct: dict) -> tuple[float, float]:
    """(magnitude error [%], angle error [deg]) of the fitted external shear, from the fit's relative errors of
    gamma1 and gamma2; the shear angle is atan2(gamma2, gamma1) / 2, wrapped to (-90, 90] degrees."""
    g1, g2 = truth["gamma1"], truth["gamma2"]
    f1, f2 = g1 * (1 + rel_error_pct["gamma1"] / 100), g2 * (1 + rel_error_pct["gamma2"] / 100)
    magnitude_pct = 100 * (math.hypot(f1, f2) / math.hypot(g1, g2) - 1)
    angle_deg = math.degrees(0.5 * (math.atan2(f2, f1) - math.atan2(g2, g1)))
    angle_deg = (angle_deg + 90) % 180 - 90
    return magnitude_pct, angle_deg


def collect(measurements=MEASUREMENTS + MISFIT_SCAN, repo: Path = REPO) -> list[dict]:
    """One row per (measurement, start), in MEASUREMENTS order."""
    rows = []
    for m in measurements:
        if m.experiment not in EXPERIMENTS:
            raise SystemExit(f"{m.path}: experiment {m.experiment!r} is not one of {EXPERIMENTS}")
        record = _read_json(repo / m.path, repo)
        system = _field(record, "system", m.path)
        truth = _truth(_field(record, "config", m.path), system, repo, m.path)
        for i, run in enumerate(_field(record, "runs", m.path)):
            if run.get("phi_start") is not None or run.get("start") not in STARTS:
                continue
            where = f"{m.path}: runs[{i}]"
            errors = _field(run, "rel_error_pct", where)
            phi_pct = _field(errors, "phi", f"{where}.rel_error_pct")
            magnitude_pct, angle_deg = (shear_errors(truth, errors) if {"gamma1", "gamma2"} <= errors.keys()
                                        else (math.nan, math.nan))
            rows.append({"prior": m.prior, "experiment": m.experiment,
                         "misfit_fraction": record.get("misfit_fraction"), "system": system, "start": run["start"],
                         "phi_true_rad": truth["phi"], "phi_error_pct": phi_pct,
                         "phi_error_deg": math.degrees(phi_pct / 100 * truth["phi"]),
                         "shear_magnitude_error_pct": magnitude_pct, "shear_angle_error_deg": angle_deg,
                         "log_joint": _field(run, "log_joint", where), "source": m.path})
    return rows


def write_csv(rows: list[dict], path: Path) -> None:
    with atomic_path(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


def _target_band_deg(phi_true_rad: float, target_pct: float) -> float:
    return math.degrees(abs(phi_true_rad) * target_pct / 100)


def plot(rows: list[dict], path: Path, target_pct: float = 1.0) -> None:
    """Per system: phi's error [deg] per prior, one marker per experiment and start, the target as a band."""
    rows = [r for r in rows if r["prior"] in PRIORS]

    styles = {"shear free": ("tab:red", "o"), "shear pinned": ("tab:blue", "*"),
              "well-specified control": ("tab:green", "^"), "seen source": ("tab:purple", "s")}
    offsets = {(e, s): (j - 3.5) * 0.07 for j, (e, s) in enumerate((e, s) for e in EXPERIMENTS for s in STARTS)}
    systems = sorted({r["system"] for r in rows})
    fig, axes = plt.subplots(1, len(systems), figsize=(6.2 * len(systems), 4.6), squeeze=False)
    for ax, system in zip(axes[0], systems):
        sys_rows = [r for r in rows if r["system"] == system]
        band_deg = _target_band_deg(sys_rows[0]["phi_true_rad"], target_pct)
        ax.axhspan(-band_deg, band_deg, color="0.85", zorder=0, label=f"±{target_pct:g} % of phi (target)")
        ax.axhline(0, color="0.4", lw=0.8)
        seen = set()
        for r in sys_rows:
            colour, marker = styles[r["experiment"]]
            x = PRIORS.index(r["prior"]) + offsets[(r["experiment"], r["start"])]
            label = f"{r['experiment']}, from the {r['start']}"
            ax.scatter(x, r["phi_error_deg"], color=colour if r["start"] == "prior centre" else "none",
                       edgecolors=colour, marker=marker, s=90 if marker == "*" else 45, zorder=3,
                       label=None if label in seen else label)
            seen.add(label)
        ax.set_xticks(range(len(PRIORS)), PRIORS, rotation=20, ha="right")
        ax.set_ylabel("MAP phi - true phi [deg]")
        ax.set_title(f"{system}, high S/N (true phi {math.degrees(sys_rows[0]['phi_true_rad']):.1f} deg)")
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    for ax in axes[0][1:]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle("Paper-003 baseline: phi at high S/N against the source prior (filled: start from the prior "
                 "centre, open: from the truth)", fontsize=10)
    fig.tight_layout(rect=(0, 0.13, 1, 0.97))
    save_figure(fig, path, dpi=130)


def plot_misfit(rows: list[dict], path: Path, target_pct: float = 1.0) -> None:
    """Per system: phi's error [deg] (top) and the shear's magnitude error [%] (bottom) against the misfit fraction."""
    rows = [r for r in rows if r["experiment"] == "misfit scan"]
    systems = sorted({r["system"] for r in rows})
    fig, axes = plt.subplots(2, len(systems), figsize=(5.6 * len(systems), 6.4), sharex=True, squeeze=False)
    for col, system in enumerate(systems):
        sys_rows = [r for r in rows if r["system"] == system]
        band_deg = _target_band_deg(sys_rows[0]["phi_true_rad"], target_pct)
        axes[0][col].axhspan(-band_deg, band_deg, color="0.85", zorder=0, label=f"±{target_pct:g} % of phi (target)")
        for start, face in (("prior centre", "tab:red"), ("truth", "none")):
            pts = sorted((r["misfit_fraction"], r["phi_error_deg"], r["shear_magnitude_error_pct"])
                         for r in sys_rows if r["start"] == start)
            fractions = [p[0] for p in pts]
            for row, values in ((0, [p[1] for p in pts]), (1, [p[2] for p in pts])):
                axes[row][col].plot(fractions, values, color="tab:red", lw=0.8, zorder=2)
                axes[row][col].scatter(fractions, values, color=face, edgecolors="tab:red", zorder=3,
                                       label=f"from the {start}")
        axes[0][col].set_title(f"{system}, high S/N (true phi {math.degrees(sys_rows[0]['phi_true_rad']):.1f} deg)")
        axes[0][col].set_ylabel("MAP phi - true phi [deg]")
        axes[1][col].set_ylabel("fitted |shear| / true - 1 [%]")
        axes[1][col].set_xlabel("F: source = (1 - F) x VAE drawing + F x mock source")
        for ax in axes[:, col]:
            ax.axhline(0, color="0.4", lw=0.8)
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"Paper-003 baseline, {rows[0]['prior']} VAE: the bias against the part of the source it cannot "
                 "draw (F = 0: well-specified control, F = 1: the mock)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    save_figure(fig, path, dpi=130)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-csv", type=Path, default=REPO / STUDIES / "baseline_phi_bias.csv")
    parser.add_argument("--out-png", type=Path, default=REPO / STUDIES / "baseline_phi_bias.png")
    parser.add_argument("--out-misfit-png", type=Path, default=REPO / STUDIES / "baseline_phi_bias_misfit.png")
    args = parser.parse_args(argv)
    rows = collect()
    write_csv(rows, args.out_csv)
    plot(rows, args.out_png)
    plot_misfit(rows, args.out_misfit_png)
    for r in rows:
        fraction = "" if r["misfit_fraction"] is None else f"F={r['misfit_fraction']:g}"
        print(f"{r['prior']:28s} {r['experiment']:23s} {fraction:6s} {r['system']} {r['start']:12s} "
              f"phi {r['phi_error_pct']:+6.2f} % "
              f"({r['phi_error_deg']:+5.2f} deg)  shear |g| {r['shear_magnitude_error_pct']:+6.1f} %, "
              f"angle {r['shear_angle_error_deg']:+5.2f} deg")
    print(f"wrote {args.out_csv}, {args.out_png} and {args.out_misfit_png}")


if __name__ == "__main__":
    main()
