"""Per-lens entry points that the workflow calls (one job per lens).

    run_reference(name, catalogue_csv, out_dir)                       -> reference_fit.json (+ PNG check)
    run_lens(name, catalogue_csv, checkpoint, out_dir, reference_json) -> diagnostics.json, tables, panel
    build_table1(per_lens_jsons, catalogue_csv, out_prefix)            -> table1.csv / table1.tex

Command line (both take ``--allow-nonlinear`` and ``--pixel-scale ARCSEC``, see :func:`build_parser`)::

    python -m astrorim.real.pipeline reference NAME CATALOGUE OUT_DIR [--seed N]
    python -m astrorim.real.pipeline lens NAME CATALOGUE CHECKPOINT OUT_DIR [--reference JSON] [--figure PNG]

All outputs are written atomically.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path
from typing import Callable

import numpy as np

from astrorim.io.atomic import atomic_path, write_text_atomic
from astrorim.real.catalogue import CatalogueError, get_entry
from astrorim.real.ingest import IngestError
from astrorim.real.prepare import prepare_lens
from astrorim.real.reference_fit import ReferenceFitSettings, fit_reference

REFERENCE_JSON = "reference_fit.json"
REFERENCE_PNG = "reference_fit.png"
DIAGNOSTICS_JSON = "diagnostics.json"


def write_json_atomic(path: str | Path, payload: dict) -> None:
    """Indented JSON, written atomically; NaN is written as null so that the file is strict JSON."""
    write_text_atomic(path, json.dumps(_nan_to_none(payload), indent=1, sort_keys=False) + "\n")


def _nan_to_none(obj):
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return None if not np.isfinite(obj) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def _versions() -> dict:
    import astropy
    import lenstronomy

    from astrorim import __version__

    return {"astrorim": __version__, "lenstronomy": lenstronomy.__version__, "astropy": astropy.__version__,
            "numpy": np.__version__, "python": platform.python_version()}


def _derived_lens_summary(result, settings: ReferenceFitSettings) -> dict:
    """q, phi, shear amplitude/angle, mass-light offset, and which solved quantities sit near a bound."""
    from astrorim.params import q_phi_from_ellipticity, shear_polar

    sie, shear, light = result.kwargs_lens[0], result.kwargs_lens[1], result.kwargs_lens_light[0]
    q, phi = q_phi_from_ellipticity(sie["e1"], sie["e2"])
    gamma, gamma_phi = shear_polar(shear["gamma1"], shear["gamma2"])
    e = float(np.hypot(sie["e1"], sie["e2"]))
    offset = float(np.hypot(sie["center_x"] - light["center_x"], sie["center_y"] - light["center_y"]))
    near = []
    if e > 0.9 * settings.ellipticity_max:
        near.append(f"ellipticity={e:.3f} (bound {settings.ellipticity_max})")
    if gamma > 0.9 * settings.shear_max:
        near.append(f"gamma={float(gamma):.3f} (bound {settings.shear_max})")
    if offset > 0.9 * settings.centre_offset_max_arcsec:
        near.append(f"mass-light offset={offset:.3f}\" (bound {settings.centre_offset_max_arcsec})")
    return {"q": float(q), "phi_rad": float(phi), "gamma_ext": float(gamma), "gamma_phi_rad": float(gamma_phi),
            "mass_light_offset_arcsec": offset, "near_bounds": near}


def run_reference(name: str, catalogue_csv: str | Path, out_dir: str | Path,
                  settings: ReferenceFitSettings | None = None, make_png: bool = True, *,
                  allow_nonlinear: bool = False, pixel_scale_arcsec: float | None = None) -> dict:
    """Classical lenstronomy fit of one lens; writes ``out_dir/reference_fit.json`` (and the check PNG).

    Returns the JSON payload.  A lens without data gets a JSON with status "no data available offline".
    ``allow_nonlinear`` / ``pixel_scale_arcsec``: see :func:`astrorim.real.prepare.read_entry`.
    """
    out_dir = Path(out_dir)
    entry = get_entry(catalogue_csv, name)
    if not entry.has_data:
        payload = {"name": name, "status": "no data available offline"}
        write_json_atomic(out_dir / REFERENCE_JSON, payload)
        return payload
    prepared = prepare_lens(entry, allow_nonlinear=allow_nonlinear, pixel_scale_arcsec=pixel_scale_arcsec)
    if prepared.search is None:
        raise ValueError(f"{entry.image}: fewer than four quasar images found for {name}; the reference fit "
                         "(SIE + shear with a lensed point source) needs a quad")
    result = fit_reference(prepared.native, prepared.centre_rc, prepared.search.images,
                           entry.theta_e_catalogue_arcsec, settings)
    cat = entry.theta_e_catalogue_arcsec
    payload = {
        "name": name,
        "status": "ok",
        "frame": "pixel frame: x along image columns, y along rows [arcsec], origin at the lens-light centre "
                 "(lens_centre_rc_native, native pixels); not north-up for rotated grids",
        "image": str(entry.image),
        "pixel_scale_source": prepared.native.pixel_scale_source,
        "z_lens": entry.z_lens,
        "z_source": entry.z_source,
        "theta_e_catalogue_arcsec": cat,
        "theta_e_catalogue_origin": entry.theta_e_catalogue_origin,
        "theta_e_minus_catalogue_percent": 100.0 * (result.theta_e_arcsec - cat) / cat,
        **result.to_json_dict(),
        "derived": _derived_lens_summary(result, settings or ReferenceFitSettings()),
        "candidate_peaks": [{"x_arcsec": c.x_arcsec, "y_arcsec": c.y_arcsec, "peak": c.peak}
                            for c in prepared.search.candidates],
        "native_notes": prepared.native.notes,
        "versions": _versions(),
    }
    payload["runtime_seconds"] = payload["runtime_s"]["total"]
    payload["runtime_cpu_seconds"] = payload["runtime_s"]["cpu_total"]
    if make_png:
        from astrorim.real.figures import plot_reference_fit

        plot_reference_fit(prepared, result, out_dir / REFERENCE_PNG)
    write_json_atomic(out_dir / REFERENCE_JSON, payload)
    return payload


def _reference_summary(reference_json: str | Path | None, z_lens: float, z_source: float,
                       centre_rc: tuple[float, float]) -> dict | None:
    """theta_E +- err of the reference fit and the sigma / M_E they imply, or None without a usable fit.

    The fit must have been made about the same lens centre as this run (same data, same code).
    """
    if reference_json is None:
        return None
    path = Path(reference_json)
    try:
        ref = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the reference fit ({exc})") from exc
    if ref.get("status") != "ok":
        return {"status": ref.get("status", "unknown"), "path": str(path)}
    fit_centre = ref.get("lens_centre_rc_native")
    if fit_centre is not None and max(abs(fit_centre[0] - centre_rc[0]), abs(fit_centre[1] - centre_rc[1])) > 0.01:
        raise ValueError(f"{path}: field lens_centre_rc_native={fit_centre} differs from this run's lens centre "
                         f"({centre_rc[0]:.3f}, {centre_rc[1]:.3f}); rerun the reference fit")
    from astrorim.physics import conversions
    from astrorim.real.tables import reference_runtime_s

    theta = float(ref["theta_e_arcsec"])
    return {"status": "ok", "path": str(path), "theta_e_arcsec": theta,
            "theta_e_err_arcsec": ref.get("theta_e_err_arcsec"),
            "theta_e_err_scaled_arcsec": ref.get("theta_e_err_scaled_arcsec"),
            "theta_e_eff_arcsec": ref.get("theta_e_eff_arcsec"), "theta_e_eff_err_arcsec": ref.get("theta_e_eff_err_arcsec"),
            "sigma_sis_kms": conversions.sis_velocity_dispersion(theta, z_lens, z_source),
            "einstein_mass_msun": conversions.einstein_mass(theta, z_lens, z_source),
            "chi2_reduced": ref.get("chi2_reduced"), "method": ref.get("method"),
            "runtime_s": reference_runtime_s(ref), "runtime_cpu_s": ref.get("runtime_cpu_seconds")}


def run_lens(name: str, catalogue_csv: str | Path, checkpoint: str | Path | None, out_dir: str | Path,
             reference_json: str | Path | None = None, *, figure_path: str | Path | None = None,
             model_runner: Callable | None = None,
             chi2_dof_threshold: float | None = None, allow_nonlinear: bool = False,
             pixel_scale_arcsec: float | None = None) -> dict:
    """Run the model on one catalogue lens and write its diagnostics.

    Writes ``out_dir/diagnostics.json``, ``out_dir/lens_table.{csv,tex}``, ``out_dir/arrays.npz``
    (model input, model output, kappa map, chi2 map) and the diagnostic panel at ``figure_path``
    (default ``out_dir/diagnostic_panel.png``).  ``model_runner(model_input, checkpoint)`` defaults to
    :func:`astrorim.real.model_step.run_model`; it is a parameter only so that tests can stand in for
    a trained model.  ``allow_nonlinear`` / ``pixel_scale_arcsec``: see
    :func:`astrorim.real.prepare.read_entry`.  ``model_runtime_s`` in the payload is the runner's
    ``ModelOutput.runtime_s`` (the reconstruction alone, checkpoint loading excluded; null when the
    runner does not time it).  Returns the diagnostics payload (without arrays).
    """
    from astrorim.real import diagnostics as dg
    from astrorim.real.figures import plot_diagnostic_panel
    from astrorim.real.model_step import run_model
    from astrorim.real.tables import write_lens_table

    out_dir = Path(out_dir)
    entry = get_entry(catalogue_csv, name)
    if not entry.has_data:
        payload = {"name": name, "status": "no data available offline"}
        write_json_atomic(out_dir / DIAGNOSTICS_JSON, payload)
        return payload
    prepared = prepare_lens(entry, allow_nonlinear=allow_nonlinear, pixel_scale_arcsec=pixel_scale_arcsec)
    mi = prepared.model_input
    noise_estimated = mi.noise is None
    if noise_estimated:
        if not mi.illustrative_only:
            raise ValueError(f"{entry.image}: no noise map for a calibrated image; give field noise in the catalogue")
        # Illustrative inputs carry no noise model: a flat map at the robust background level stands in.
        from astrorim.real.ingest import robust_background_rms

        mi.noise = np.where(mi.mask, robust_background_rms(mi.image, mi.mask), 0.0).astype(np.float32)
    runner = model_runner or run_model
    out = runner(mi, checkpoint)
    zl, zs = entry.z_lens, entry.z_source
    npix, scale = mi.npix, mi.pixel_scale_arcsec
    quantities = dg.physical_quantities(out.params, npix, scale, zl, zs)
    threshold = dg.CHI2_DOF_FLAG_THRESHOLD if chi2_dof_threshold is None else chi2_dof_threshold
    consistency = dg.forward_consistency(mi.image, out.model_image, mi.noise, mi.mask, threshold=threshold)
    chi2_map = consistency.pop("chi2_map")
    curves = dg.profile_curves(out.params, npix, scale, zl, zs)
    xk, yk = dg.grid_arcsec(npix, scale, oversample=2)
    kappa = dg.convergence_map(out.params, npix, scale, xk, yk)
    det_a = dg.magnification_determinant(out.params, npix, scale, xk, yk)
    reference = _reference_summary(reference_json, zl, zs, prepared.centre_rc)
    payload = {
        "name": name,
        "status": "ok",
        "checkpoint": str(checkpoint) if checkpoint is not None else None,
        "illustrative_only": bool(mi.illustrative_only),
        "noise_estimated_from_image": noise_estimated,
        "z_lens": zl, "z_source": zs,
        "pixel_scale_arcsec": scale,
        "pixel_scale_source": prepared.native.pixel_scale_source,
        "fov_arcsec": mi.fov_arcsec,
        "model_input": mi.metadata(),
        "noise_sigma_given_to_model": out.noise_sigma,
        "model_runtime_s": out.runtime_s,
        "model_device": out.device,
        "model": {"params": dict(out.params), **quantities},
        "consistency": consistency,
        "source": dg.source_summary(out.source),
        "curves": {k: np.asarray(v).tolist() for k, v in curves.items()},
        "reference": reference,
        "versions": _versions(),
    }
    if reference and reference.get("status") == "ok":
        ref_theta = reference["theta_e_arcsec"]
        payload["theta_e_model_minus_reference_percent"] = 100.0 * (quantities["theta_e_arcsec"] - ref_theta) / ref_theta
    with atomic_path(out_dir / "arrays.npz", suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, observed=mi.image, noise=mi.noise, mask=mi.mask,
                                psf=mi.psf if mi.psf is not None else np.zeros((0, 0)),
                                source=out.source, model_image=out.model_image, chi2_map=chi2_map,
                                kappa=kappa, kappa_x=xk, kappa_y=yk, det_a=det_a)
    write_lens_table(payload, out_dir / "lens_table")
    plot_diagnostic_panel(name, mi, out, payload,
                          {"chi2_map": chi2_map, "kappa": kappa, "kappa_x": xk, "kappa_y": yk, "det_a": det_a},
                          figure_path or out_dir / "diagnostic_panel.png")
    write_json_atomic(out_dir / DIAGNOSTICS_JSON, payload)
    return payload


def build_table1(per_lens_jsons, catalogue_csv: str | Path, out_prefix: str | Path):
    """Table 1 as ``<out_prefix>.csv`` / ``.tex`` (see :func:`astrorim.real.tables.build_table1`)."""
    from astrorim.real.tables import build_table1 as _build

    return _build(per_lens_jsons, catalogue_csv, out_prefix)


def _positive_arcsec(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--pixel-scale {text!r} is not a number") from None
    if not (np.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"--pixel-scale {text!r} must be a positive number of arcsec/pix")
    return value


def _add_ingest_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--allow-nonlinear", action="store_true",
                        help="accept a PNG/JPEG (non-linear, uncalibrated) image; the run is flagged illustrative "
                             "only (without this flag such images are refused)")
    parser.add_argument("--pixel-scale", type=_positive_arcsec, metavar="ARCSEC", default=None,
                        help="native pixel scale [arcsec/pix] for an image whose header has none (e.g. a FITS "
                             "without WCS, or a PNG); a header scale wins and a >1%% disagreement is an error")


def build_parser() -> argparse.ArgumentParser:
    """Argument parser with the subcommands ``reference`` and ``lens``."""
    parser = argparse.ArgumentParser(prog="python -m astrorim.real.pipeline",
                                     description="real lenses: reference fit or model run of one catalogue lens")
    sub = parser.add_subparsers(dest="command", required=True)
    ref = sub.add_parser("reference", help="classical lenstronomy reference fit of one real lens")
    ref.add_argument("name")
    ref.add_argument("catalogue_csv")
    ref.add_argument("out_dir")
    ref.add_argument("--seed", type=int, default=ReferenceFitSettings().seed)
    _add_ingest_options(ref)
    lens = sub.add_parser("lens", help="the trained model on one real lens, with its physical diagnostics")
    lens.add_argument("name")
    lens.add_argument("catalogue_csv")
    lens.add_argument("checkpoint")
    lens.add_argument("out_dir")
    lens.add_argument("--reference", metavar="JSON", default=None, help="reference_fit.json of the same lens")
    lens.add_argument("--figure", metavar="PNG", default=None, help="diagnostic panel path")
    _add_ingest_options(lens)
    return parser


def _print_reference(name: str, payload: dict) -> None:
    if payload["status"] != "ok":
        print(f"{name}: {payload['status']}")
        return
    print(f"{name}: theta_E = {payload['theta_e_arcsec']:.4f} +- {payload['theta_e_err_arcsec']:.4f} arcsec "
          f"(catalogue {payload['theta_e_catalogue_arcsec']:.4f}), theta_E,eff = {payload['theta_e_eff_arcsec']:.4f} "
          f"+- {payload['theta_e_eff_err_arcsec']:.4f}, chi2/dof = {payload['chi2_reduced']:.2f}, "
          f"{payload['runtime_seconds']:.0f} s wall, {payload['runtime_cpu_seconds']:.0f} s CPU, "
          f"pixel scale from the {payload['pixel_scale_source']}")


def _print_lens(name: str, payload: dict) -> None:
    if payload["status"] != "ok":
        print(f"{name}: {payload['status']}")
        return
    runtime = payload.get("model_runtime_s")
    runtime_text = "not timed" if runtime is None else f"{runtime:.3f} s ({payload.get('model_device')})"
    print(f"{name}: theta_E model = {payload['model']['theta_e_arcsec']:.4f} arcsec, chi2/dof = "
          f"{payload['consistency']['chi2_dof']:.2f}, model step {runtime_text}, "
          f"pixel scale from the {payload['pixel_scale_source']}"
          + (", ILLUSTRATIVE ONLY" if payload.get("illustrative_only") else ""))


def main(argv: list[str] | None = None) -> int:
    """Command line; ingest refusals (file, field and the option that helps) print as one line, exit 2."""
    args = build_parser().parse_args(argv)
    ingest = {"allow_nonlinear": args.allow_nonlinear, "pixel_scale_arcsec": args.pixel_scale}
    try:
        if args.command == "reference":
            payload = run_reference(args.name, args.catalogue_csv, args.out_dir,
                                    ReferenceFitSettings(seed=args.seed), **ingest)
            _print_reference(args.name, payload)
        else:
            payload = run_lens(args.name, args.catalogue_csv, args.checkpoint, args.out_dir, args.reference,
                               figure_path=args.figure, **ingest)
            _print_lens(args.name, payload)
    except (IngestError, CatalogueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
