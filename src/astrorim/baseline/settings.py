"""The ``baseline:`` section of the workflow configuration, as typed settings.

Every value has the paper-003 default named in the comment; the quick configuration overrides them to
run a miniature version.  Unknown keys raise ``KeyError`` naming them (the JSON schema rejects them too).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from astrorim.baseline.forward import LensingForward
from astrorim.baseline.lens_model import ImageGrid
from astrorim.baseline.map_fit import MapConfig
from astrorim.baseline.nuts import NutsConfig
from astrorim.baseline.priors import SCALAR_PARAMS
from astrorim.baseline.source_model import DEFAULT_STAMP_WIDTH_PER_SCALE
from astrorim.baseline.train_vae import TrainConfig
from astrorim.baseline.vae import VAEConfig

PAPER_NOISE_LEVELS = (0.333, 0.1, 0.0333)          # Table 1
NOISE_LABELS = ("low", "med", "high")              # S/N labels of Table 1's columns
PAPER_SNR = {"system1": (66.0, 272.0, 757.0), "system2": (77.0, 313.0, 849.0)}  # Table 1


@dataclass(frozen=True)
class SystemSettings:
    name: str
    truth: dict[str, float]
    select: str | None = None
    origin: str | None = None
    target_snr_medium: float | None = None


@dataclass(frozen=True)
class BaselineSettings:
    seed: int
    sim_versions: tuple[str, ...]
    max_sim_per_split: dict[str, int]
    use_hdf: bool
    hdf_val_fraction: float
    hdf_test_fraction: float
    vae: VAEConfig
    train: TrainConfig
    prior_cov_factor: float
    grid: ImageGrid
    psf_sigma_arcsec: float
    stamp_width_per_scale: float
    noise_levels: tuple[float, ...]
    systems: dict[str, SystemSettings]
    map: MapConfig
    nuts: NutsConfig
    compare: dict[str, Any] = field(default_factory=dict)

    def forward(self, decoder, device: str = "cpu") -> LensingForward:
        return LensingForward(decoder, self.grid, self.psf_sigma_arcsec, self.stamp_width_per_scale, device=device)

    def noise_index(self, label: str) -> int:
        if label not in NOISE_LABELS[: len(self.noise_levels)]:
            raise KeyError(f"unknown noise label {label!r}; expected one of {NOISE_LABELS[:len(self.noise_levels)]}")
        return NOISE_LABELS.index(label)


def _take(section: dict, allowed: set[str], where: str) -> dict:
    unknown = sorted(set(section) - allowed)
    if unknown:
        raise KeyError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    return section


def parse_settings(config: dict[str, Any]) -> BaselineSettings:
    """Typed settings from the whole workflow config (reads ``config['baseline']``)."""
    if "baseline" not in config:
        raise KeyError("the configuration has no 'baseline' section")
    b = _take(dict(config["baseline"]), {"seed", "vae_data", "vae", "lens", "noise_levels", "systems", "map",
                                          "nuts", "compare"}, "baseline")
    seed = int(b.get("seed", 0))
    d = _take(dict(b.get("vae_data", {})), {"sim_versions", "max_sim_per_split", "hdf", "hdf_val_fraction",
                                            "hdf_test_fraction"}, "baseline.vae_data")
    v = _take(dict(b.get("vae", {})), {"width", "latent_dim", "decoder_sigma", "lr", "lr_final_factor", "augment",
                                       "beta1", "beta2", "batch_size", "max_epochs", "patience", "particles",
                                       "grad_clip", "prior_cov_factor", "device"}, "baseline.vae")
    lens = _take(dict(b.get("lens", {})), {"npix", "fov_arcsec", "psf_sigma_arcsec", "stamp_width_per_scale"},
                 "baseline.lens")
    m = _take(dict(b.get("map", {})), {"steps", "n_starts", "lr", "lr_final_factor", "init_jitter",
                                       "record_every", "polish_iterations"}, "baseline.map")
    n = _take(dict(b.get("nuts", {})), {"warmup", "samples", "max_tree_depth", "target_accept"}, "baseline.nuts")
    systems = {}
    for name, s in dict(b.get("systems", {})).items():
        s = _take(dict(s), {"truth", "select", "origin", "target_snr_medium"}, f"baseline.systems.{name}")
        truth = {k: float(x) for k, x in dict(s["truth"]).items()}
        missing = [k for k in SCALAR_PARAMS if k not in truth]
        extra = sorted(set(truth) - set(SCALAR_PARAMS))
        if missing or extra:
            raise KeyError(f"baseline.systems.{name}.truth: missing {missing}, unknown {extra}")
        systems[name] = SystemSettings(name, truth, s.get("select"), s.get("origin"), s.get("target_snr_medium"))
    return BaselineSettings(
        seed=seed,
        sim_versions=tuple(d.get("sim_versions", ())),
        max_sim_per_split={k: int(x) for k, x in dict(d.get("max_sim_per_split", {})).items()},
        use_hdf=bool(d.get("hdf", True)),
        hdf_val_fraction=float(d.get("hdf_val_fraction", 0.1)),
        hdf_test_fraction=float(d.get("hdf_test_fraction", 0.1)),
        vae=VAEConfig(latent_dim=int(v.get("latent_dim", 64)), width=int(v.get("width", 64)),
                      decoder_sigma=float(v.get("decoder_sigma", 0.02))),
        train=TrainConfig(lr=float(v.get("lr", 1e-6)), lr_final_factor=float(v.get("lr_final_factor", 1.0)),
                          augment=str(v.get("augment", "none")),
                          betas=(float(v.get("beta1", 0.5)), float(v.get("beta2", 0.999))),
                          batch_size=int(v.get("batch_size", 32)), max_epochs=int(v.get("max_epochs", 450)),
                          patience=int(v.get("patience", 10)), particles=int(v.get("particles", 1)),
                          grad_clip=float(v.get("grad_clip", 0.0)), seed=seed,
                          device=str(v.get("device", "cpu"))),
        prior_cov_factor=float(v.get("prior_cov_factor", 9.0)),
        grid=ImageGrid(int(lens.get("npix", 256)), float(lens.get("fov_arcsec", 10.0))),
        psf_sigma_arcsec=float(lens.get("psf_sigma_arcsec", 0.05)),
        stamp_width_per_scale=float(lens.get("stamp_width_per_scale", DEFAULT_STAMP_WIDTH_PER_SCALE)),
        noise_levels=tuple(float(x) for x in b.get("noise_levels", PAPER_NOISE_LEVELS)),
        systems=systems,
        map=MapConfig(steps=int(m.get("steps", 10_000)), n_starts=int(m.get("n_starts", 4)),
                      lr=float(m.get("lr", 0.02)), lr_final_factor=float(m.get("lr_final_factor", 0.05)),
                      init_jitter=float(m.get("init_jitter", 0.5)), record_every=int(m.get("record_every", 50)),
                      polish_iterations=int(m.get("polish_iterations", 0)), seed=seed),
        nuts=NutsConfig(warmup=int(n.get("warmup", 50)), samples=int(n.get("samples", 500)),
                        max_tree_depth=int(n.get("max_tree_depth", 10)),
                        target_accept=float(n.get("target_accept", 0.8)), seed=seed),
        compare=dict(b.get("compare", {})),
    )
