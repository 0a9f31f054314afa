"""The real-lens catalogue ``config/real_lenses.csv``: one row per lens, read and validated.

Columns (``image`` blank = no data available offline, a lens listed only because the paper's
Table 1 has it):

    name, paper_name, image, psf, noise, mask, psf_variance   paths relative to the repository root
    exclude_circles_pix    "row col radius; ..." circles (native pixels) to mask, e.g. a field star
    allow_nonlinear        true for a PNG/JPEG input (paper's LRG-3-757 case): processed as
                           illustrative only, with pixel_scale as the assumed scale (the command
                           line's --allow-nonlinear does the same for one run)
    pixel_scale            arcsec/pix: a cross-check of the FITS header's scale (>1 % apart is an
                           error), used only when the header has none (--pixel-scale takes precedence)
    z_lens, z_source       redshifts used here
    theta_e_catalogue      arcsec, a rough prior (samana model starting values, NOT measurements)
    theta_e_catalogue_origin
    in_paper_table1        true/false
    paper_theta_e_ref, paper_z_lens, paper_z_source   the paper's Table 1 values where it lists the lens
    note
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

REQUIRED_COLUMNS = ("name", "image", "psf", "noise", "pixel_scale", "z_lens", "z_source", "theta_e_catalogue",
                    "theta_e_catalogue_origin", "in_paper_table1", "paper_theta_e_ref", "paper_z_lens",
                    "paper_z_source")
OPTIONAL_COLUMNS = ("paper_name", "mask", "psf_variance", "exclude_circles_pix", "allow_nonlinear", "note")


class CatalogueError(ValueError):
    """The catalogue file is malformed; the message names the file, row and field."""


@dataclass(frozen=True)
class LensEntry:
    """One catalogue row with paths resolved against the repository root (None where blank)."""

    name: str
    paper_name: str
    image: Path | None
    psf: Path | None
    noise: Path | None
    mask: Path | None
    psf_variance: Path | None
    pixel_scale_arcsec: float | None
    z_lens: float | None
    z_source: float | None
    theta_e_catalogue_arcsec: float | None
    theta_e_catalogue_origin: str
    in_paper_table1: bool
    paper_theta_e_ref_arcsec: float | None
    paper_z_lens: float | None
    paper_z_source: float | None
    note: str
    exclude_circles_pix: tuple[tuple[float, float, float], ...] = ()
    allow_nonlinear: bool = False

    @property
    def has_data(self) -> bool:
        return self.image is not None


def _float(row: dict, key: str, where: str, positive: bool = True) -> float | None:
    text = (row.get(key) or "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise CatalogueError(f"{where}: field {key}={text!r} is not a number") from None
    if not math.isfinite(value) or (positive and value <= 0):
        raise CatalogueError(f"{where}: field {key}={text!r} must be a positive finite number")
    return value


def _bool(row: dict, key: str, where: str) -> bool:
    text = (row.get(key) or "").strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no", ""):
        return False
    raise CatalogueError(f"{where}: field {key}={text!r} is not true/false")


def _circles(row: dict, where: str) -> tuple[tuple[float, float, float], ...]:
    text = (row.get("exclude_circles_pix") or "").strip()
    circles = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        try:
            r, c, rad = (float(v) for v in part.split())
        except ValueError:
            raise CatalogueError(f"{where}: field exclude_circles_pix entry {part!r} is not 'row col radius'") from None
        if rad <= 0:
            raise CatalogueError(f"{where}: field exclude_circles_pix entry {part!r} has a non-positive radius")
        circles.append((r, c, rad))
    return tuple(circles)


def default_repo_root(catalogue_csv: str | Path) -> Path:
    """The repository root for a catalogue at ``<root>/config/real_lenses.csv`` (its parent's parent)."""
    return Path(catalogue_csv).resolve().parent.parent


def read_catalogue(catalogue_csv: str | Path, repo_root: str | Path | None = None) -> list[LensEntry]:
    """All rows of the catalogue, validated; paths resolved against ``repo_root``."""
    path = Path(catalogue_csv)
    root = Path(repo_root) if repo_root is not None else default_repo_root(path)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            header = reader.fieldnames or []
            rows = list(reader)
    except OSError as exc:
        raise CatalogueError(f"{path}: cannot read the catalogue ({exc})") from exc
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise CatalogueError(f"{path}: missing column(s) {missing}")
    entries: list[LensEntry] = []
    seen: set[str] = set()
    for i, row in enumerate(rows, start=2):
        where = f"{path} line {i}"
        name = (row.get("name") or "").strip()
        if not name:
            raise CatalogueError(f"{where}: field name is empty")
        if name in seen:
            raise CatalogueError(f"{where}: lens name {name!r} appears twice")
        seen.add(name)

        def _path(key: str) -> Path | None:
            text = (row.get(key) or "").strip()
            return (root / text) if text else None

        entry = LensEntry(
            name=name,
            paper_name=(row.get("paper_name") or "").strip(),
            image=_path("image"), psf=_path("psf"), noise=_path("noise"), mask=_path("mask"),
            psf_variance=_path("psf_variance"),
            pixel_scale_arcsec=_float(row, "pixel_scale", where),
            z_lens=_float(row, "z_lens", where), z_source=_float(row, "z_source", where),
            theta_e_catalogue_arcsec=_float(row, "theta_e_catalogue", where),
            theta_e_catalogue_origin=(row.get("theta_e_catalogue_origin") or "").strip(),
            in_paper_table1=_bool(row, "in_paper_table1", where),
            paper_theta_e_ref_arcsec=_float(row, "paper_theta_e_ref", where),
            paper_z_lens=_float(row, "paper_z_lens", where),
            paper_z_source=_float(row, "paper_z_source", where),
            note=(row.get("note") or "").strip(),
            exclude_circles_pix=_circles(row, where),
            allow_nonlinear=_bool(row, "allow_nonlinear", where),
        )
        if entry.has_data:
            for key in ("z_lens", "z_source", "theta_e_catalogue"):
                if _float(row, key, where) is None:
                    raise CatalogueError(f"{where}: lens {name} has an image but field {key} is empty")
            if entry.z_source <= entry.z_lens:
                raise CatalogueError(f"{where}: z_source={entry.z_source} must exceed z_lens={entry.z_lens}")
        entries.append(entry)
    return entries


def get_entry(catalogue_csv: str | Path, name: str, repo_root: str | Path | None = None) -> LensEntry:
    """The catalogue row named ``name``."""
    for entry in read_catalogue(catalogue_csv, repo_root):
        if entry.name == name:
            return entry
    raise CatalogueError(f"{catalogue_csv}: no lens named {name!r}")
