"""The ``astrorim`` command line: one subcommand per user-facing task, all in this module.

    astrorim simulate --simulator VERSION --n N --seed S --out SHARD.h5 [...]
    astrorim reconstruct IMAGE.fits --checkpoint CKPT --out OUT.fits [--resize] [--hdu N]
                         [--noise-sigma S | --noise-map N.fits] [--psf PSF.fits] [--pixel-scale S]
                         [--refine] [--n-iter T] [--device DEV]
    astrorim model-info [--checkpoint CKPT]

Every refusal (bad image, missing/incompatible checkpoint, bad option) prints
``astrorim <command>: error: ...`` on stderr and returns exit code 2 without writing output;
warnings (no pixel scale, a scale outside the training range) print ``astrorim <command>: warning: ...``.

The output FITS of ``reconstruct`` keeps the input's world coordinate system, pixel scale (``PIXSCALE``)
and flux unit (``BUNIT``) on every image HDU (rescaled after ``--resize``), and its PARAMS table carries a
unit (``TUNITn``) on every column, with the Einstein radius and lens centre in arcsec beside the
normalised values whenever the pixel scale is known.
"""

from __future__ import annotations

import argparse
import inspect
import math
import sys
from pathlib import Path

EXIT_USAGE_ERROR = 2

DESCRIPTION = ("astrorim: simulate strong-lens observations and reconstruct their unlensed sources\n"
               "with a trained AstroRIM model.")
EPILOG = """\
examples:
  astrorim simulate --simulator v3 --n 64 --seed 7 --out shard.h5
  astrorim reconstruct lens.fits --checkpoint models/cpu-small/model.pt --out recon.fits
  astrorim model-info --checkpoint models/cpu-small/model.pt

'astrorim COMMAND --help' describes each command; the whole study runs as a Snakemake workflow
(README.md).
"""
SIMULATE_EPILOG = """\
examples:
  astrorim simulate --simulator v3 --n 64 --seed 7 --out shard.h5
  astrorim simulate --simulator v1 --n 150 --seed 3003 --phase test --split test --out test.h5 \\
      --store-diagnostics --progress
"""


def _simulate(args: argparse.Namespace) -> int:
    from astrorim.io.atomic import check_writable
    from astrorim.io.shards import write_shard
    from astrorim.sim import simulate

    if args.old_version is not None:
        raise ValueError(f"'simulate --version' was renamed: pass --simulator {args.old_version} "
                         "('astrorim --version' prints the program's version)")
    if args.simulator is None:
        raise ValueError("--simulator is required (v1 ... v6)")
    try:  # before the simulating, not after it
        check_writable(args.out)
    except OSError as exc:
        raise ValueError(f"cannot write --out {args.out}: {exc.strerror or exc}") from None
    batch = simulate(args.simulator, args.n, args.seed, phase=args.phase, split=args.split,
                     start_index=args.start_index, npix=args.npix, progress=args.progress)
    meta = {"version": args.simulator, "phase": args.phase, "split": args.split, "seed": args.seed,
            "start_index": args.start_index}
    write_shard(args.out, batch, meta, store_diagnostics=args.store_diagnostics)
    print(f"wrote {args.n} {args.simulator} pairs to {args.out}")
    return 0


def _register_simulate(subparsers) -> None:
    p = subparsers.add_parser("simulate", help="simulate (source, observation) pairs into one HDF5 shard",
                              description="Simulate n pairs of one simulator version into one shard file\n"
                                          "(format: docs/data-format.md).",
                              epilog=SIMULATE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--simulator", metavar="VERSION", help="simulator version, v1 ... v6 (required)")
    # The old spelling clashed with 'astrorim --version'; kept hidden only to refuse it with a hint.
    p.add_argument("--version", dest="old_version", default=None, help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, required=True, help="number of pairs")
    p.add_argument("--seed", type=int, required=True, help="base seed of the random stream")
    p.add_argument("--out", type=Path, required=True, help="output .h5 path (written atomically)")
    p.add_argument("--phase", default="initial", help="initial | finetune | test (keys the random stream)")
    p.add_argument("--split", default="train", help="train | val | test (keys the random stream)")
    p.add_argument("--start-index", type=int, default=0, help="index of the first example in its stream")
    p.add_argument("--npix", type=int, default=96, help="image side in pixels")
    p.add_argument("--store-diagnostics", action="store_true", help="also store noiseless images")
    p.add_argument("--progress", action="store_true",
                   help="report progress (a bar on a terminal, else a line every 30 s with ETA)")
    p.set_defaults(func=_simulate)


# PARAMS columns: unit ('' = dimensionless) and the TTYPE comment.
NORMALISED_COLUMNS: dict[str, tuple[str, str]] = {
    "b": ("", "SIE Einstein radius / half field of view"),
    "q": ("", "SIE axis ratio (minor/major)"),
    "phi": ("rad", "SIE position angle, ccw from +x"),
    "x0": ("", "SIE centre along FITS axis 1 / half field"),
    "y0": ("", "SIE centre along FITS axis 2 / half field"),
    "gamma": ("", "external shear amplitude"),
    "gamma_phi": ("rad", "external shear angle"),
    "kappa_s": ("", "NFW characteristic convergence"),
    "r_s": ("", "NFW scale radius / half field of view"),
}
# The lengths among them and their columns in arcsec (written when the pixel scale is known).
ARCSEC_COLUMNS: dict[str, tuple[str, str]] = {
    "theta_e_arcsec": ("b", "SIE Einstein radius"),
    "x0_arcsec": ("x0", "SIE centre along FITS axis 1 from field centre"),
    "y0_arcsec": ("y0", "SIE centre along FITS axis 2 from field centre"),
    "r_s_arcsec": ("r_s", "NFW scale radius"),
}
# Columns a refined result (``refine=True``) may add, with their units where known.
REFINED_COLUMN_UNITS: dict[str, str] = {
    "theta_e_arcsec": "arcsec", "x0_arcsec": "arcsec", "y0_arcsec": "arcsec", "r_s_arcsec": "arcsec",
    "chi2_per_pixel": "", "log_evidence": "", "converged": "", "flag": "",
}
# Result columns that go to the primary header, not to PARAMS.
_HEADER_COLUMNS = ("noise_sigma", "noise_sigma_estimated", "flux_scale")


def _fail(command: str, message: str) -> int:
    print(f"astrorim {command}: error: {message}", file=sys.stderr)
    return EXIT_USAGE_ERROR


def _warn(command: str, message: str) -> None:
    print(f"astrorim {command}: warning: {message}", file=sys.stderr)


def checkpoint_problem(path, exc: Exception) -> str:
    """The one-line refusal for a checkpoint that :func:`load_model` rejected.

    A file torch cannot read as plain tensors (a pickled model, any other file) is "not an astrorim
    checkpoint"; torch's own advice (load with ``weights_only=False``, i.e. run its code) is not repeated.
    """
    from astrorim.model.checkpoint import NotACheckpointError

    if not isinstance(exc, NotACheckpointError):
        return str(exc)
    cause = exc.__cause__
    if cause is not None and type(cause).__name__ == "UnpicklingError" and "Weights only" in str(cause):
        why = "it holds pickled Python objects, not the plain state an astrorim checkpoint stores"
    elif cause is not None:
        why = f"torch cannot read it ({type(cause).__name__})"
    else:
        why = "it has no astrorim checkpoint 'format' entry"
    return f"not an astrorim checkpoint: {path} ({why})"


def _read_pixel_scale(header, args) -> tuple[object, list[str]]:
    """The input's pixel scale (astrorim.real.pixel_scale: WCS, CDELT, CD, TPA, PIXSCALE, --pixel-scale) or
    None, and the warnings to print once the inputs are all accepted."""
    from astrorim.real.pixel_scale import MissingPixelScaleError, resolve_pixel_scale

    try:
        scale = resolve_pixel_scale(header, str(args.image), user_arcsec=args.pixel_scale)
    except MissingPixelScaleError:
        return None, [f"{args.image} has no pixel scale in its header (CD1_1.., CDELT1/2, TPA1_1.., PIXSCALE) "
                      "and no --pixel-scale was given: the PARAMS table has no arcsec columns "
                      "(theta_e_arcsec, x0_arcsec, ...) and the output no PIXSCALE"]
    if abs(scale.x_arcsec - scale.y_arcsec) > 0.01 * scale.mean_arcsec:
        return scale, [f"{args.image} has non-square pixels ({scale.x_arcsec:.4g} x {scale.y_arcsec:.4g}\"/pix); "
                       "the model assumes square ones, arcsec values use their geometric mean"]
    return scale, []


def _check_training_range(scale_arcsec: float, cmd: str) -> None:
    from astrorim.real.ingest import TRAINING_PIXEL_SCALES_ARCSEC

    low, high = min(TRAINING_PIXEL_SCALES_ARCSEC), max(TRAINING_PIXEL_SCALES_ARCSEC)
    if not low * 0.99 <= scale_arcsec <= high * 1.01:
        _warn(cmd, f"pixel scale {scale_arcsec:.4g}\"/pix (after any --resize) is outside the training range "
                   f"{low:g}-{high:g}\"/pix: lenses of this angular size were never seen in training, "
                   "treat the result as an extrapolation")


def _params_table(row, extra_columns, npix: int, scale_arcsec: float | None):
    """PARAMS columns {name: value}, their units and their comments."""
    values: dict[str, object] = {}
    units: dict[str, str] = {}
    comments: dict[str, str] = {}
    for name, (unit, comment) in NORMALISED_COLUMNS.items():
        values[name], units[name], comments[name] = float(row[name]), unit, comment
    if scale_arcsec is not None:
        half_fov = 0.5 * npix * scale_arcsec
        for name, (source, comment) in ARCSEC_COLUMNS.items():
            values[name], units[name], comments[name] = float(row[source]) * half_fov, "arcsec", comment
    for name in extra_columns:  # a refined result's own columns (its theta_e_arcsec wins)
        value = row[name]
        if hasattr(value, "item"):
            value = value.item()
        values[name] = value
        units[name] = extra_column_unit(name)
        if name.startswith("amortised_"):
            comments[name] = "the network's value before --refine"
        elif name.endswith("_err"):
            comments[name] = "1-sigma uncertainty from the refinement"
        else:
            comments.setdefault(name, "from the refinement (--refine)")
    return values, units, comments


def extra_column_unit(name: str) -> str:
    """TUNIT of a column the result adds: arcsec lengths, radian angles, else dimensionless ('')."""
    base = name.removeprefix("amortised_").removesuffix("_err")
    if base in REFINED_COLUMN_UNITS:
        return REFINED_COLUMN_UNITS[base]
    if base in NORMALISED_COLUMNS:
        return NORMALISED_COLUMNS[base][0]
    return "arcsec" if base.endswith("_arcsec") else ""


def run_reconstruct(args: argparse.Namespace) -> int:
    """Reconstruct one FITS image and write the result FITS; returns the exit code."""
    from astropy.io import fits

    from astrorim import __version__
    from astrorim.inference import reconstruct
    from astrorim.io.atomic import check_writable
    from astrorim.io.fits_io import (FitsInputError, check_noise_map, check_not_constant, check_psf,
                                     has_distortion, image_wcs, read_fits_image, resample_flux_conserving,
                                     resampled_noise_sigma, resampled_wcs, wcs_header,
                                     write_reconstruction_fits)
    from astrorim.model.checkpoint import CheckpointError, load_model, sha256_file
    from astrorim.params import PARAMETER_NAMES
    from astrorim.real.pixel_scale import PixelScaleError
    from astrorim.real.resample import rebin_psf, rebin_variance

    cmd = "reconstruct"
    if args.noise_sigma is not None and not (math.isfinite(args.noise_sigma) and args.noise_sigma > 0):
        return _fail(cmd, f"--noise-sigma must be a finite positive number, got {args.noise_sigma}")
    if args.noise_sigma is not None and args.noise_map is not None:
        return _fail(cmd, "give either --noise-sigma or --noise-map, not both")
    if args.pixel_scale is not None and not (math.isfinite(args.pixel_scale) and args.pixel_scale > 0):
        return _fail(cmd, f"--pixel-scale must be a finite positive number of arcsec/pix, got {args.pixel_scale}")
    if args.n_iter is not None and args.n_iter < 1:
        return _fail(cmd, f"--n-iter must be >= 1, got {args.n_iter}")
    if Path(args.out).resolve() == Path(args.image).resolve():
        return _fail(cmd, "--out must differ from the input image")
    try:
        image, header = read_fits_image(args.image, args.hdu)
        check_not_constant(image, str(args.image))
        psf = check_psf(read_fits_image(args.psf)[0], str(args.psf)) if args.psf is not None else None
        noise_map = (check_noise_map(read_fits_image(args.noise_map)[0], image.shape, str(args.noise_map))
                     if args.noise_map is not None else None)
        scale, warnings = _read_pixel_scale(header, args)
    except (FitsInputError, PixelScaleError) as exc:
        return _fail(cmd, str(exc))
    try:
        check_writable(args.out)
    except OSError as exc:
        return _fail(cmd, f"cannot write --out {args.out}: {exc.strerror or exc}")
    try:
        model, meta = load_model(args.checkpoint, map_location=args.device or "cpu")
    except CheckpointError as exc:
        return _fail(cmd, checkpoint_problem(args.checkpoint, exc))
    for message in warnings:
        _warn(cmd, message)

    npix = model.config.npix
    original_shape = image.shape
    sigma = args.noise_sigma
    try:
        wcs = image_wcs(header)
    except Exception as exc:  # astropy raises many kinds on a malformed WCS; it is not worth a refusal
        _warn(cmd, f"{args.image}: its WCS cannot be read ({type(exc).__name__}: {exc}); the output has none")
        wcs = None
    resampled = False
    if image.shape != (npix, npix):
        if not args.resize:
            return _fail(cmd, f"{args.image} is {image.shape[0]} x {image.shape[1]} px but the model "
                              f"needs {npix} x {npix}; pass --resize for a flux-conserving resample")
        if image.shape[0] != image.shape[1]:
            return _fail(cmd, f"{args.image} is {image.shape[0]} x {image.shape[1]} px; --resize needs "
                              f"a square image (crop it first)")
        n_in = image.shape[0]
        ratio = n_in / npix
        if sigma is not None:
            sigma = resampled_noise_sigma(sigma, n_in, npix)
        if noise_map is not None:
            centre = ((n_in - 1) / 2, (n_in - 1) / 2)
            noise_map = rebin_variance(noise_map ** 2, centre, npix, (ratio, ratio)) ** 0.5
        if psf is not None:
            psf = rebin_psf(psf, ratio)
        if wcs is not None:
            if has_distortion(wcs):
                _warn(cmd, f"{args.image}: the WCS distortion terms (SIP / lookup tables) are dropped after "
                           "--resize; the output WCS is the linear part only")
            wcs = resampled_wcs(wcs, n_in, npix)
        image = resample_flux_conserving(image, npix)
        resampled = True
    scale_model = None if scale is None else scale.mean_arcsec * original_shape[0] / npix
    if scale_model is not None:
        _check_training_range(scale_model, cmd)

    # Only the options the user gave are passed, so this works with any reconstruct that has them.
    extra = {}
    if noise_map is not None:
        extra["noise_map"] = noise_map
    if psf is not None:
        extra["psf"] = psf
    if args.refine:
        extra["refine"] = True
    supported = inspect.signature(reconstruct).parameters
    if (args.refine or args.pixel_scale is not None) and scale_model is not None:
        # the CLI computes the arcsec columns itself: a reconstruct without pixel_scale is no loss
        if args.refine or "pixel_scale" in supported:
            extra["pixel_scale"] = scale_model
    unsupported = [name for name in extra if name not in supported]
    if unsupported:
        return _fail(cmd, f"this astrorim's reconstruct does not support {', '.join(unsupported)} "
                          "(astrorim.inference.reconstruct has no such keyword argument)")
    try:
        result = reconstruct(image, model, noise_sigma=sigma, n_iter=args.n_iter, batch_size=1,
                             device=args.device or "cpu", **extra)
    except (ValueError, RuntimeError) as exc:
        return _fail(cmd, f"reconstruction failed: {exc}")

    row = result.params.iloc[0]
    known = set(PARAMETER_NAMES) | set(_HEADER_COLUMNS)
    extra_columns = [c for c in result.params.columns if c not in known]
    params, units, comments = _params_table(row, extra_columns, npix, scale_model)

    cfg = model.config
    cards = {
        "ORIGIN": ("astrorim " + __version__, "software"),
        "CKPTPATH": (str(Path(args.checkpoint).resolve()), "checkpoint file"),
        "CKPTSHA": (sha256_file(args.checkpoint), "sha256 of the checkpoint file"),
        "INPUT": (str(Path(args.image).resolve()), "input image"),
        "INHDU": (-1 if args.hdu is None else args.hdu, "input HDU (-1: first with image data)"),
        "MODNPIX": (cfg.npix, "model image size [pix]"),
        "MODNITER": (args.n_iter or cfg.n_iter, "RIM iterations used"),
        "MODRIMC": (",".join(map(str, cfg.rim_channels)) + f";h={cfg.rim_hidden}", "RIM widths"),
        "MODENCC": (",".join(map(str, cfg.encoder_channels)) + f";pool={cfg.encoder_pool}",
                    "encoder widths"),
        "RESAMPLD": (resampled, "input flux-conservingly resampled to MODNPIX"),
        "ORIGSHP": (f"{original_shape[0]}x{original_shape[1]}", "input image shape [pix]"),
        "FLUXSCL": (float(row["flux_scale"]), "per-example normalisation divisor"),
        "NOISESIG": (float(row["noise_sigma"]), "noise sigma used [input units]"),
        "NOISEEST": (bool(row["noise_sigma_estimated"]), "noise sigma estimated from border"),
        "REFINED": (bool(args.refine), "lens parameters refined by a likelihood fit"),
    }
    if args.psf is not None:
        cards["PSFFILE"] = (str(Path(args.psf).resolve()), "PSF kernel given")
    if args.noise_map is not None:
        cards["NOISEMAP"] = (str(Path(args.noise_map).resolve()), "noise sigma map given")
    if scale is not None:
        cards["PSCLSRC"] = (scale.source if scale.origin == "header" else "--pixel-scale",
                            "pixel scale source")
        cards["ORIGPSCL"] = (scale.mean_arcsec, "input pixel scale [arcsec/pix]")
    for key in ("epoch", "phase"):
        if key in meta and isinstance(meta[key], (int, float, str)):
            cards[f"CKPT{key[:4].upper()}"] = (meta[key], f"checkpoint meta {key}")

    image_header = fits.Header() if wcs is None else wcs_header(wcs)
    if scale_model is not None:
        image_header["PIXSCALE"] = (scale_model, "pixel scale [arcsec/pix] of this HDU")
    if "BUNIT" in header:
        image_header["BUNIT"] = (header["BUNIT"], "flux per pixel, the input's unit")
    try:
        write_reconstruction_fits(args.out, result.source, result.model_image, result.residual, params, cards,
                                  image_header=image_header, param_units=units, param_comments=comments)
    except OSError as exc:
        return _fail(cmd, f"cannot write {args.out}: {exc}")
    print(f"wrote {args.out}")
    return 0


def run_model_info(args: argparse.Namespace) -> int:
    """Print parameter counts by component; returns the exit code."""
    from astrorim.model.astrorim import AstroRIM, count_parameters
    from astrorim.model.checkpoint import CheckpointError, load_model

    if args.checkpoint is None:
        model, source = AstroRIM(), "default configuration"
    else:
        try:
            model, _ = load_model(args.checkpoint)
        except CheckpointError as exc:
            return _fail("model-info", checkpoint_problem(args.checkpoint, exc))
        source = str(args.checkpoint)
    counts = count_parameters(model)
    print(f"AstroRIM ({source}): npix={model.config.npix} n_iter={model.config.n_iter}")
    width = max(len(k) for k in counts)
    for name, value in counts.items():
        print(f"  {name:<{width}}  {value:>9,d}")
    return 0


RECONSTRUCT_EPILOG = """\
examples:
  astrorim reconstruct lens.fits --checkpoint models/cpu-small/model.pt --out recon.fits
  astrorim reconstruct big.fits --checkpoint models/cpu-small/model.pt --out recon.fits --resize \\
      --pixel-scale 0.05 --psf psf.fits --noise-map sigma.fits --refine

output: SOURCE (primary), MODEL, RESIDUAL images carrying the input's WCS, PIXSCALE and BUNIT
(rescaled after --resize), and a PARAMS table with a unit on every column; theta_e_arcsec,
x0_arcsec, y0_arcsec, r_s_arcsec need a pixel scale (header or --pixel-scale).
"""

MODEL_INFO_EPILOG = """\
examples:
  astrorim model-info                                        # the default (untrained) configuration
  astrorim model-info --checkpoint models/cpu-small/model.pt
"""


def _register_reconstruct(subparsers) -> None:
    p = subparsers.add_parser("reconstruct", help="reconstruct the source of one FITS lens image",
                              description="Reconstruct the unlensed source and the lens parameters of a FITS\n"
                                          "image with a trained AstroRIM checkpoint.",
                              epilog=RECONSTRUCT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("image", type=Path, help="input FITS image (2-D, linear flux)")
    p.add_argument("--checkpoint", type=Path, required=True, help="AstroRIM checkpoint (.pt)")
    p.add_argument("--out", type=Path, required=True, help="output FITS (written atomically)")
    p.add_argument("--resize", action="store_true",
                   help="flux-conservingly resample a square image of another size to the model's")
    p.add_argument("--hdu", type=int, default=None, help="HDU index (default: first with image data)")
    p.add_argument("--noise-sigma", type=float, default=None,
                   help="noise standard deviation in the image's units (default: estimated)")
    p.add_argument("--noise-map", type=Path, default=None, metavar="N.fits",
                   help="per-pixel noise sigma map (FITS, the image's shape, every pixel > 0)")
    p.add_argument("--psf", type=Path, default=None, metavar="PSF.fits",
                   help="PSF kernel (FITS, square, odd size, sum 1) at the image's pixel scale")
    p.add_argument("--pixel-scale", type=float, default=None, metavar="ARCSEC",
                   help="pixel scale of the input image [arcsec/pix] when its header has none "
                        "(checked against the header otherwise)")
    p.add_argument("--refine", action="store_true",
                   help="refine the lens parameters by a likelihood fit after the network")
    p.add_argument("--n-iter", type=int, default=None, help="RIM iterations (default: the model's)")
    p.add_argument("--device", default=None, help="torch device (default: cpu)")
    p.set_defaults(func=run_reconstruct)


def _register_model_info(subparsers) -> None:
    q = subparsers.add_parser("model-info", help="print AstroRIM parameter counts by component",
                              description="Print the model configuration (image size, RIM iterations) and the\n"
                                          "number of trainable parameters of each component of a checkpoint,\n"
                                          "or of the default untrained model.",
                              epilog=MODEL_INFO_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    q.add_argument("--checkpoint", type=Path, default=None, help="checkpoint (default: untrained model)")
    q.set_defaults(func=run_model_info)


def build_parser() -> argparse.ArgumentParser:
    from astrorim import __version__

    parser = argparse.ArgumentParser(prog="astrorim", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"astrorim {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _register_simulate(subparsers)
    _register_reconstruct(subparsers)
    _register_model_info(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, KeyError, RuntimeError) as exc:
        print(f"astrorim {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())
