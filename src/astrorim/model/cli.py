"""``astrorim reconstruct`` and ``astrorim model-info`` (registered by :func:`register`).

    astrorim reconstruct IMAGE.fits --checkpoint CKPT --out OUT.fits [--resize] [--hdu N]
                         [--noise-sigma S] [--n-iter T] [--device DEV]
    astrorim model-info [--checkpoint CKPT]

Every refusal (bad image, missing/incompatible checkpoint, bad option) prints
``astrorim <command>: error: ...`` on stderr and returns exit code 2 without writing output.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

EXIT_USAGE_ERROR = 2


def _fail(command: str, message: str) -> int:
    print(f"astrorim {command}: error: {message}", file=sys.stderr)
    return EXIT_USAGE_ERROR


def run_reconstruct(args: argparse.Namespace) -> int:
    """Reconstruct one FITS image and write the result FITS; returns the exit code."""
    from astrorim import __version__
    from astrorim.inference import reconstruct
    from astrorim.io.fits_io import (FitsInputError, read_fits_image, resample_flux_conserving,
                                     resampled_noise_sigma, write_reconstruction_fits)
    from astrorim.model.checkpoint import CheckpointError, load_model, sha256_file

    cmd = "reconstruct"
    if args.noise_sigma is not None and not (math.isfinite(args.noise_sigma) and args.noise_sigma > 0):
        return _fail(cmd, f"--noise-sigma must be a finite positive number, got {args.noise_sigma}")
    if args.n_iter is not None and args.n_iter < 1:
        return _fail(cmd, f"--n-iter must be >= 1, got {args.n_iter}")
    if Path(args.out).resolve() == Path(args.image).resolve():
        return _fail(cmd, "--out must differ from the input image")
    try:
        image, header = read_fits_image(args.image, args.hdu)
    except FitsInputError as exc:
        return _fail(cmd, str(exc))
    try:
        model, meta = load_model(args.checkpoint, map_location=args.device or "cpu")
    except CheckpointError as exc:
        return _fail(cmd, str(exc))

    npix = model.config.npix
    original_shape = image.shape
    sigma = args.noise_sigma
    resampled = False
    if image.shape != (npix, npix):
        if not args.resize:
            return _fail(cmd, f"{args.image} is {image.shape[0]} x {image.shape[1]} px but the model "
                              f"needs {npix} x {npix}; pass --resize for a flux-conserving resample")
        if image.shape[0] != image.shape[1]:
            return _fail(cmd, f"{args.image} is {image.shape[0]} x {image.shape[1]} px; --resize needs "
                              f"a square image (crop it first)")
        if sigma is not None:
            sigma = resampled_noise_sigma(sigma, image.shape[0], npix)
        image = resample_flux_conserving(image, npix)
        resampled = True

    try:
        result = reconstruct(image, model, noise_sigma=sigma, n_iter=args.n_iter, batch_size=1,
                             device=args.device or "cpu")
    except (ValueError, RuntimeError) as exc:
        return _fail(cmd, f"reconstruction failed: {exc}")

    row = result.params.iloc[0]
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
    }
    if "BUNIT" in header:
        cards["BUNIT"] = (header["BUNIT"], "flux unit of the input")
    for key in ("epoch", "phase"):
        if key in meta and isinstance(meta[key], (int, float, str)):
            cards[f"CKPT{key[:4].upper()}"] = (meta[key], f"checkpoint meta {key}")
    params = {name: float(row[name]) for name in
              ("b", "q", "phi", "x0", "y0", "gamma", "gamma_phi", "kappa_s", "r_s")}
    try:
        write_reconstruction_fits(args.out, result.source, result.model_image, result.residual,
                                  params, cards)
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
            return _fail("model-info", str(exc))
        source = str(args.checkpoint)
    counts = count_parameters(model)
    print(f"AstroRIM ({source}): npix={model.config.npix} n_iter={model.config.n_iter}")
    width = max(len(k) for k in counts)
    for name, value in counts.items():
        print(f"  {name:<{width}}  {value:>9,d}")
    return 0


def register(subparsers) -> None:
    """Add ``reconstruct`` and ``model-info`` to an argparse subparsers object."""
    p = subparsers.add_parser("reconstruct", help="reconstruct the source of one FITS lens image",
                              description="Reconstruct the unlensed source of a FITS image with a "
                                          "trained AstroRIM checkpoint.")
    p.add_argument("image", type=Path, help="input FITS image (2-D, linear flux)")
    p.add_argument("--checkpoint", type=Path, required=True, help="AstroRIM checkpoint (.pt)")
    p.add_argument("--out", type=Path, required=True, help="output FITS (written atomically)")
    p.add_argument("--resize", action="store_true",
                   help="flux-conservingly resample a square image of another size to the model's")
    p.add_argument("--hdu", type=int, default=None, help="HDU index (default: first with image data)")
    p.add_argument("--noise-sigma", type=float, default=None,
                   help="noise standard deviation in the image's units (default: estimated)")
    p.add_argument("--n-iter", type=int, default=None, help="RIM iterations (default: the model's)")
    p.add_argument("--device", default=None, help="torch device (default: cpu)")
    p.set_defaults(func=run_reconstruct)

    q = subparsers.add_parser("model-info", help="print AstroRIM parameter counts by component")
    q.add_argument("--checkpoint", type=Path, default=None, help="checkpoint (default: untrained model)")
    q.set_defaults(func=run_model_info)


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point (``python -m astrorim.model.cli ...``)."""
    parser = argparse.ArgumentParser(prog="astrorim")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
