"""Classical lenstronomy fit of a quadruply imaged quasar, independent of the ML model.

Model (lenstronomy names): lens ``SIE`` + ``SHEAR``; lens light ``SERSIC_ELLIPSE``; source light
``SERSIC_ELLIPSE`` centred on the quasar (``joint_source_with_point_source``); the quasar as
``LENSED_POSITION`` with the four image positions found by :mod:`astrorim.real.point_sources` as
starting values.  The ``PROFILE_SHEAR`` solver makes the four images map onto one source exactly:
given the image positions and the shear strength it fixes theta_E, e1, e2, the lens centre and the
shear angle, so the sampled parameters are the image positions, the shear strength and the light
profiles.  All amplitudes are solved linearly.  The likelihood uses the given noise map, PSF and
PSF variance map (``psf_variance_map``: the PSF error around bright quasars is added to the
variance) on a square cut-out around the lens.

Fitting: lenstronomy ``FittingSequence`` with PSO, then a short emcee MCMC.  theta_E is not a
sampled parameter (the solver fixes it), so its posterior is obtained by passing a thinned set of
MCMC samples through the solver.  The quoted uncertainty is the half width of the 16-84 %
interval of those values: a statistical error given this model, from a short chain (the walkers
start in a ball around the PSO optimum; ``mcmc_*`` settings).  ``theta_e_err_scaled_arcsec``
multiplies it by sqrt(chi2/dof) when the fit is worse than the noise (RXJ1131: chi2/dof ~ 24).  It does not include the model
systematics (SIE vs power law, missing satellites, the ellipticity-shear degeneracy), which are
larger: on HE0435 two solutions with chi2/dof 3.29 and 3.30 give SIE theta_E = 1.32" and 1.23".  The effective Einstein radius (mean convergence 1 inside it) is far less sensitive to that
degeneracy and is reported too (``theta_e_eff_*``).

Frame: x along image columns, y along rows, arcsec, origin at the lens-light centre found by
:func:`astrorim.real.ingest.find_lens_centre` (the model cut-out is centred there too), so the
fitted parameters convert directly to the model's normalised parameters.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from astrorim.progress import Progress
from astrorim.real.ingest import NativeImage
from astrorim.real.point_sources import PointImage


class ReferenceFitError(RuntimeError):
    """The reference fit could not be set up or run."""


@dataclass(frozen=True)
class ReferenceFitSettings:
    """Sampler sizes, bounds and cut-out geometry; the defaults cost ~20-60 s of CPU per lens."""

    n_particles: int = 60
    n_iterations: int = 100
    mcmc_walker_ratio: int = 2
    mcmc_n_burn: int = 50
    mcmc_n_run: int = 50
    mcmc_sigma_scale: float = 0.1
    n_theta_samples: int = 300
    crop_margin_arcsec: float = 0.6
    image_position_sigma_arcsec: float = 0.005
    image_position_bound_arcsec: float = 0.04
    shear_max: float = 0.5
    ellipticity_max: float = 0.5
    centre_offset_max_arcsec: float = 0.3
    centre_prior_sigma_arcsec: float | None = 0.05
    solver_type: str = "PROFILE_SHEAR"
    seed: int = 12345


@dataclass
class ReferenceFitResult:
    """Best fit and uncertainty; ``to_json_dict`` gives the JSON written per lens."""

    theta_e_arcsec: float
    theta_e_err_arcsec: float
    theta_e_median_arcsec: float
    theta_e_p16_arcsec: float
    theta_e_p84_arcsec: float
    theta_e_eff_arcsec: float
    theta_e_eff_err_arcsec: float
    theta_e_eff_median_arcsec: float
    theta_e_err_scaled_arcsec: float
    kwargs_lens: list[dict]
    kwargs_lens_light: list[dict]
    kwargs_source: list[dict]
    kwargs_ps: list[dict]
    chi2_reduced: float
    n_pixels: int
    n_sampled_params: int
    log_likelihood: float
    method: str
    mcmc_acceptance: float | None
    crop_rc: tuple[int, int, int, int]
    pixel_scale_xy_arcsec: tuple[float, float]
    lens_centre_rc_native: tuple[float, float]
    runtime_s: dict[str, float]
    settings: dict
    images_used: list[dict]
    model_image: np.ndarray | None = field(default=None, repr=False)
    data_image: np.ndarray | None = field(default=None, repr=False)
    normalised_residual: np.ndarray | None = field(default=None, repr=False)
    likelihood_mask: np.ndarray | None = field(default=None, repr=False)

    def to_json_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items()
             if k not in ("model_image", "data_image", "normalised_residual", "likelihood_mask")}
        return _to_builtin(d)


def _to_builtin(obj):
    if isinstance(obj, dict):
        return {str(k): _to_builtin(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_builtin(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [_to_builtin(v) for v in obj.tolist()]
    if isinstance(obj, (np.floating, float)):
        return float(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def effective_einstein_radius_arcsec(kwargs_lens: list[dict]) -> float:
    """Radius [arcsec] about the SIE centre inside which the mean convergence of SIE + shear is 1.

    Unlike the SIE parameter theta_E it barely moves along the ellipticity-shear degeneracy of a
    quad (HE0435: the SIE theta_E differs by 7 % between two near-equal-likelihood solutions, this
    radius by 1.5 %), so it is reported alongside.
    """
    from astrorim.params import lenstronomy_kwargs_to_normalised
    from astrorim.real.diagnostics import effective_einstein_radius

    # Any grid works: the normalised parameters are converted straight back to arcsec.
    npix, scale = 96, 0.04
    params = lenstronomy_kwargs_to_normalised(kwargs_lens[0], kwargs_lens[1], None, npix, scale)
    return effective_einstein_radius(params, npix, scale)


def crop_bounds(native: NativeImage, centre_rc: tuple[float, float], half_arcsec: float) -> tuple[int, int, int, int]:
    """(row0, row1, col0, col1) of a square cut-out of half-size ``half_arcsec`` around ``centre_rc``, clipped to the image."""
    hr = int(np.ceil(half_arcsec / native.pixel_scale.y_arcsec))
    hc = int(np.ceil(half_arcsec / native.pixel_scale.x_arcsec))
    rc, cc = int(round(centre_rc[0])), int(round(centre_rc[1]))
    ny, nx = native.shape
    return max(rc - hr, 0), min(rc + hr + 1, ny), max(cc - hc, 0), min(cc + hc + 1, nx)


def _kwargs_params(theta_e: float, xs: np.ndarray, ys: np.ndarray, s: ReferenceFitSettings) -> dict:
    dp, sp = s.image_position_bound_arcsec, s.image_position_sigma_arcsec
    lens = [
        [{"theta_E": theta_e, "e1": 0.0, "e2": 0.0, "center_x": 0.0, "center_y": 0.0},
         {"gamma1": 0.05, "gamma2": 0.0}],
        [{"theta_E": 0.1 * theta_e, "e1": 0.1, "e2": 0.1, "center_x": 0.02, "center_y": 0.02},
         {"gamma1": 0.15, "gamma2": 0.15}],
        [{}, {"ra_0": 0.0, "dec_0": 0.0}],
        [{"theta_E": 0.2 * theta_e, "e1": -0.6, "e2": -0.6, "center_x": -0.4, "center_y": -0.4},
         {"gamma1": -s.shear_max, "gamma2": -s.shear_max}],
        [{"theta_E": 3.0 * theta_e, "e1": 0.6, "e2": 0.6, "center_x": 0.4, "center_y": 0.4},
         {"gamma1": s.shear_max, "gamma2": s.shear_max}],
    ]
    lens_light = [
        [{"R_sersic": 0.5, "n_sersic": 3.0, "e1": 0.0, "e2": 0.0, "center_x": 0.0, "center_y": 0.0}],
        [{"R_sersic": 0.2, "n_sersic": 1.0, "e1": 0.1, "e2": 0.1, "center_x": 0.02, "center_y": 0.02}],
        [{}],
        [{"R_sersic": 0.03, "n_sersic": 0.5, "e1": -0.5, "e2": -0.5, "center_x": -0.2, "center_y": -0.2}],
        [{"R_sersic": 5.0, "n_sersic": 8.0, "e1": 0.5, "e2": 0.5, "center_x": 0.2, "center_y": 0.2}],
    ]
    source = [
        [{"R_sersic": 0.2, "n_sersic": 1.5, "e1": 0.0, "e2": 0.0}],
        [{"R_sersic": 0.1, "n_sersic": 0.5, "e1": 0.1, "e2": 0.1}],
        [{}],
        [{"R_sersic": 0.01, "n_sersic": 0.5, "e1": -0.5, "e2": -0.5}],
        [{"R_sersic": 2.0, "n_sersic": 6.0, "e1": 0.5, "e2": 0.5}],
    ]
    n = len(xs)
    ps = [
        [{"ra_image": xs.copy(), "dec_image": ys.copy()}],
        [{"ra_image": np.full(n, sp), "dec_image": np.full(n, sp)}],
        [{}],
        [{"ra_image": xs - dp, "dec_image": ys - dp}],
        [{"ra_image": xs + dp, "dec_image": ys + dp}],
    ]
    return {"lens_model": lens, "lens_light_model": lens_light, "source_model": source,
            "point_source_model": ps}


class _SolvedLensPrior:
    """Bounds and a centre prior on the solver-fixed SIE parameters (lenstronomy ``custom_logL_addition``).

    ``check_bounds`` only sees sampled parameters.  Given four image positions the PROFILE_SHEAR
    solver can trade shear against ellipticity and a shifted mass centre along a near-degenerate
    valley, along which theta_E moves by a few per cent (seen on J2205 and 2M1134).  A Gaussian prior
    of width ``centre_sigma_arcsec`` ties the mass centre to the fitted lens-light centre, as is
    common practice for galaxy-scale lenses, and hard bounds exclude |e| > ``ellipticity_max`` and
    centre offsets beyond ``centre_offset_max_arcsec``.  A class (not a closure) so that it pickles.
    """

    def __init__(self, ellipticity_max: float, centre_offset_max_arcsec: float, centre_sigma_arcsec: float | None):
        self.e_max = ellipticity_max
        self.c_max = centre_offset_max_arcsec
        self.c_sigma = centre_sigma_arcsec

    def __call__(self, kwargs_lens=None, kwargs_lens_light=None, **_ignored) -> float:
        sie, light = kwargs_lens[0], kwargs_lens_light[0]
        dx, dy = sie["center_x"] - light["center_x"], sie["center_y"] - light["center_y"]
        if np.hypot(sie["e1"], sie["e2"]) > self.e_max or np.hypot(dx, dy) > self.c_max:
            return -1e18
        if self.c_sigma is None:
            return 0.0
        return -0.5 * (dx * dx + dy * dy) / self.c_sigma ** 2


def build_fitting_inputs(native: NativeImage, lens_centre_rc: tuple[float, float], images: list[PointImage],
                         theta_e_guess_arcsec: float, settings: ReferenceFitSettings) -> dict:
    """lenstronomy inputs (data, PSF, model, constraints, likelihood, params) for the fit."""
    if native.noise is None or native.psf is None:
        raise ReferenceFitError(f"{native.path}: the reference fit needs a noise map and a PSF")
    if len(images) != 4:
        raise ReferenceFitError(f"{native.path}: the PROFILE_SHEAR solver needs 4 images, got {len(images)}")
    extent = max(im.r_arcsec for im in images)
    r0, r1, c0, c1 = crop_bounds(native, lens_centre_rc, extent + settings.crop_margin_arcsec)
    sx, sy = native.pixel_scale.x_arcsec, native.pixel_scale.y_arcsec
    data = native.data[r0:r1, c0:c1]
    mask = native.valid[r0:r1, c0:c1]
    # Masked pixels keep a finite noise value so that lenstronomy's bookkeeping stays finite; the
    # likelihood mask removes them from the fit.
    noise = np.where(mask, native.noise[r0:r1, c0:c1], 1.0)
    kwargs_data = {"image_data": data, "noise_map": noise,
                   "ra_at_xy_0": (c0 - lens_centre_rc[1]) * sx, "dec_at_xy_0": (r0 - lens_centre_rc[0]) * sy,
                   "transform_pix2angle": np.diag([sx, sy])}
    kwargs_psf = {"psf_type": "PIXEL", "kernel_point_source": native.psf}
    if native.psf_variance is not None:
        kwargs_psf["psf_variance_map"] = native.psf_variance
    kwargs_model = {"lens_model_list": ["SIE", "SHEAR"], "lens_light_model_list": ["SERSIC_ELLIPSE"],
                    "source_light_model_list": ["SERSIC_ELLIPSE"], "point_source_model_list": ["LENSED_POSITION"],
                    "additional_images_list": [False], "fixed_magnification_list": [False]}
    kwargs_constraints = {"joint_source_with_point_source": [[0, 0]], "num_point_source_list": [4],
                          "solver_type": settings.solver_type}
    kwargs_likelihood = {"check_bounds": True, "force_no_add_image": False, "source_marg": False,
                         "image_position_uncertainty": 0.004, "source_position_tolerance": 0.001,
                         "check_positive_flux": True, "image_likelihood_mask_list": [mask.astype(int)],
                         "custom_logL_addition": _SolvedLensPrior(settings.ellipticity_max,
                                                                  settings.centre_offset_max_arcsec,
                                                                  settings.centre_prior_sigma_arcsec)}
    xs = np.array([im.x_arcsec for im in images])
    ys = np.array([im.y_arcsec for im in images])
    return {
        "kwargs_data_joint": {"multi_band_list": [[kwargs_data, kwargs_psf, {"supersampling_factor": 1}]],
                              "multi_band_type": "single-band"},
        "kwargs_model": kwargs_model, "kwargs_constraints": kwargs_constraints,
        "kwargs_likelihood": kwargs_likelihood,
        "kwargs_params": _kwargs_params(theta_e_guess_arcsec, xs, ys, settings),
        "crop_rc": (r0, r1, c0, c1), "mask": mask,
    }


def _model_image(fitting_inputs: dict, kwargs_result: dict) -> tuple[np.ndarray, np.ndarray, dict]:
    """Best-fit model image, normalised residuals (data - model) / sigma on the cut-out, and the
    kwargs with the linear amplitudes solved for these non-linear parameters.

    sigma includes lenstronomy's PSF-error variance around the quasar images; residuals are zero
    outside the likelihood mask.  The amplitudes that ``FittingSequence.best_fit`` reports are those
    of an earlier state and must not be stored.
    """
    from lenstronomy.Analysis.image_reconstruction import MultiBandImageReconstruction

    recon = MultiBandImageReconstruction(fitting_inputs["kwargs_data_joint"]["multi_band_list"],
                                         fitting_inputs["kwargs_model"], kwargs_result, multi_band_type="single-band",
                                         kwargs_likelihood=fitting_inputs["kwargs_likelihood"], verbose=False)
    band = recon.model_band_list[0]
    return np.asarray(band.model), np.asarray(band.norm_residuals), band.kwargs_model


def _initial_walkers(fs, n_walkers: int, sigma_scale: float, max_rounds: int = 20) -> np.ndarray:
    """Walkers in a Gaussian ball around the current best fit, all with a valid likelihood.

    lenstronomy's own ball ignores the solver bounds; walkers started where the likelihood is the
    flat -1e18 of :class:`_SolvedLensPrior` never move, so invalid draws are replaced, and the ball
    shrinks when too few draws are valid.
    """
    param = fs.param_class
    manager = fs._updateManager  # lenstronomy exposes the state only through the update manager
    mean = np.array(param.kwargs2args(**manager.parameter_state))
    sigma = np.array(param.kwargs2args(**manager.sigma_kwargs)) * sigma_scale
    lower = np.array(param.kwargs2args(**manager.lower_kwargs))
    upper = np.array(param.kwargs2args(**manager.upper_kwargs))
    like = fs.likelihood_class
    walkers: list[np.ndarray] = []
    for _ in range(max_rounds):
        draws = np.clip(mean + sigma * np.random.standard_normal((2 * n_walkers, mean.size)), lower, upper)
        for d in draws:
            if like.logL(d) > -1e15:
                walkers.append(d)
            if len(walkers) == n_walkers:
                return np.array(walkers)
        sigma = 0.5 * sigma
    raise ReferenceFitError(f"only {len(walkers)} of {n_walkers} MCMC walkers found a valid likelihood near the PSO optimum")


def _run_emcee(fs, n_walkers: int, n_burn: int, n_run: int, sigma_scale: float) -> np.ndarray:
    """emcee on the FittingSequence likelihood; returns the post-burn-in chain (n_run, n_walkers, n_params).

    The FittingSequence's own MCMC step is not used because its initial ball cannot be made to
    respect the solver bounds (see :func:`_initial_walkers`).
    """
    import emcee

    start = _initial_walkers(fs, n_walkers, sigma_scale)
    like = fs.likelihood_class
    sampler = emcee.EnsembleSampler(n_walkers, start.shape[1], like.logL)
    sampler.run_mcmc(start, n_burn + n_run, progress=False)
    chain = sampler.get_chain(discard=n_burn)
    best = np.unravel_index(np.argmax(sampler.get_log_prob(discard=n_burn)), chain.shape[:2])
    current = like.logL(np.array(fs.param_class.kwargs2args(**fs._updateManager.parameter_state)))
    if sampler.get_log_prob(discard=n_burn)[best] > current:
        fs._update_state(chain[best])  # the best sample beats the PSO optimum: make it the best fit
    return chain


def _fit_progress(fs, name: str, s: ReferenceFitSettings, run_mcmc: bool) -> Progress:
    """Progress of the fit in likelihood evaluations (a line every 30 s with ETA in a job's log).

    The PSO evaluates every particle once per iteration (plus the start), emcee every walker once per
    step; the fit's cost is almost all in these evaluations, so their count measures how far it is.
    """
    n_params = fs.param_class.num_param()[0]
    total = 1 + s.n_particles * (s.n_iterations + 1)
    if run_mcmc:
        total += s.mcmc_walker_ratio * n_params * (s.mcmc_n_burn + s.mcmc_n_run + 1)
    return Progress(total, f"reference fit {Path(name).name}", unit="likelihood evaluations")


def _counting_fitting_sequence(base):
    """A ``FittingSequence`` whose likelihood objects call ``on_likelihood_call`` on every evaluation.

    ``FittingSequence.likelihood_class`` builds a new likelihood object on every access (PSO and the
    emcee set-up each take one), so the count wraps each object's ``logL`` as it is handed out.
    """

    class CountingFittingSequence(base):
        on_likelihood_call = None

        @property
        def likelihood_class(self):
            like = super().likelihood_class
            callback = self.on_likelihood_call
            if callback is not None:
                log_l = like.logL

                def counted(*args, **kwargs):
                    callback()
                    return log_l(*args, **kwargs)

                like.logL = counted
            return like

    return CountingFittingSequence


def fit_reference(native: NativeImage, lens_centre_rc: tuple[float, float], images: list[PointImage],
                  theta_e_guess_arcsec: float, settings: ReferenceFitSettings | None = None,
                  run_mcmc: bool = True) -> ReferenceFitResult:
    """Run the fit described in the module docstring and return the best fit with theta_E's uncertainty.

    lenstronomy's PSO and emcee draw from numpy's global random state; it is seeded with
    ``settings.seed`` for the duration of the fit and restored afterwards, so results repeat and the
    caller's random stream is untouched.
    """
    from lenstronomy.Workflow.fitting_sequence import FittingSequence

    s = settings or ReferenceFitSettings()
    t_start = time.perf_counter()
    cpu_start = time.process_time()
    inputs = build_fitting_inputs(native, lens_centre_rc, images, theta_e_guess_arcsec, s)
    saved_state = np.random.get_state()
    np.random.seed(s.seed)
    runtime: dict[str, float] = {}
    progress = None
    try:
        fs = _counting_fitting_sequence(FittingSequence)(
            inputs["kwargs_data_joint"], inputs["kwargs_model"], inputs["kwargs_constraints"],
            inputs["kwargs_likelihood"], inputs["kwargs_params"], verbose=False)
        progress = _fit_progress(fs, native.path, s, run_mcmc)
        fs.on_likelihood_call = progress.update
        t0 = time.perf_counter()
        fs.fit_sequence([["PSO", {"sigma_scale": 1.0, "n_particles": s.n_particles,
                                  "n_iterations": s.n_iterations}]])
        runtime["pso"] = time.perf_counter() - t0
        n_params = fs.param_class.num_param()[0]
        method = f"PSO ({s.n_particles} particles x {s.n_iterations} iterations)"
        theta_samples = theta_eff_samples = np.array([])
        acceptance = None
        if run_mcmc:
            # Fixed chain lengths (no wall-clock adaptation) keep the result a function of the seed only.
            n_walkers = s.mcmc_walker_ratio * n_params
            n_burn, n_run = s.mcmc_n_burn, s.mcmc_n_run
            t0 = time.perf_counter()
            chain = _run_emcee(fs, n_walkers, n_burn, n_run, s.mcmc_sigma_scale)
            runtime["mcmc"] = time.perf_counter() - t0
            method += f" + emcee ({n_walkers} walkers x {n_burn} burn-in + {n_run} steps)"
            samples = chain.reshape(-1, chain.shape[-1])
            t0 = time.perf_counter()
            rng = np.random.default_rng(s.seed)
            pick = rng.choice(len(samples), size=min(s.n_theta_samples, len(samples)), replace=False)
            lens_samples = [fs.param_class.args2kwargs(samples[i])["kwargs_lens"] for i in pick]
            theta_samples = np.array([kl[0]["theta_E"] for kl in lens_samples])
            theta_eff_samples = np.array([effective_einstein_radius_arcsec(kl) for kl in lens_samples])
            runtime["theta_samples"] = time.perf_counter() - t0
            # Fraction of steps on which a walker moved: emcee's acceptance rate.
            acceptance = float(np.mean(np.any(np.diff(chain, axis=0) != 0, axis=2)))
        kwargs_result = fs.best_fit()
        log_l = float(fs.best_fit_likelihood())
    finally:
        np.random.set_state(saved_state)
        if progress is not None:
            progress.close()

    model, norm_res, kwargs_linear = _model_image(inputs, kwargs_result)
    for key in ("kwargs_lens_light", "kwargs_source", "kwargs_ps"):
        kwargs_result[key] = kwargs_linear[key]
    r0, r1, c0, c1 = inputs["crop_rc"]
    data = native.data[r0:r1, c0:c1]
    mask = inputs["mask"]
    chi2 = float(np.sum(norm_res[mask] ** 2))
    n_pix = int(mask.sum())
    theta_best = float(kwargs_result["kwargs_lens"][0]["theta_E"])
    if theta_samples.size >= 10:
        p16, p50, p84 = np.percentile(theta_samples, [16, 50, 84])
        err = 0.5 * (p84 - p16)
        e16, e50, e84 = np.percentile(theta_eff_samples, [16, 50, 84])
    else:
        p16 = p50 = p84 = err = e16 = e50 = e84 = float("nan")
    runtime["total"] = time.perf_counter() - t_start
    # Wall time depends on other load on the machine; the process CPU time is the cost on one core.
    runtime["cpu_total"] = time.process_time() - cpu_start
    return ReferenceFitResult(
        theta_e_arcsec=theta_best, theta_e_err_arcsec=float(err), theta_e_median_arcsec=float(p50),
        theta_e_p16_arcsec=float(p16), theta_e_p84_arcsec=float(p84),
        # With chi2/dof >> 1 the likelihood is too sharp; scaling by sqrt(chi2/dof) is the usual remedy.
        theta_e_err_scaled_arcsec=float(err * np.sqrt(max(1.0, chi2 / max(n_pix - n_params, 1)))),
        theta_e_eff_arcsec=effective_einstein_radius_arcsec(kwargs_result["kwargs_lens"]),
        theta_e_eff_err_arcsec=float(0.5 * (e84 - e16)), theta_e_eff_median_arcsec=float(e50),
        kwargs_lens=kwargs_result["kwargs_lens"], kwargs_lens_light=kwargs_result["kwargs_lens_light"],
        kwargs_source=kwargs_result["kwargs_source"], kwargs_ps=kwargs_result["kwargs_ps"],
        chi2_reduced=chi2 / max(n_pix - n_params, 1), n_pixels=n_pix, n_sampled_params=int(n_params),
        log_likelihood=log_l, method=method, mcmc_acceptance=acceptance, crop_rc=inputs["crop_rc"],
        pixel_scale_xy_arcsec=(native.pixel_scale.x_arcsec, native.pixel_scale.y_arcsec),
        lens_centre_rc_native=(float(lens_centre_rc[0]), float(lens_centre_rc[1])),
        runtime_s=runtime, settings=asdict(s),
        images_used=[{"row": im.row, "col": im.col, "x_arcsec": im.x_arcsec, "y_arcsec": im.y_arcsec,
                      "peak": im.peak} for im in images],
        model_image=model, data_image=data, normalised_residual=norm_res, likelihood_mask=mask,
    )


def reference_params_normalised(reference: dict, npix: int, pixel_scale_arcsec: float,
                                lens_centre_arcsec: tuple[float, float] = (0.0, 0.0)) -> dict[str, float]:
    """The nine normalised model parameters of a reference fit (``reference_fit.json`` payload).

    The fit's origin is the lens-light centre; ``lens_centre_arcsec`` is where that centre lies on
    the model cut-out (``ModelInput.lens_centre_arcsec``: within half a native pixel of the cut-out
    centre).  The fit has no NFW halo (kappa_s = 0, r_s = NaN).
    """
    from astrorim.params import lenstronomy_kwargs_to_normalised

    if reference.get("status") != "ok":
        raise ValueError(f"reference fit of {reference.get('name')!r} has status {reference.get('status')!r}")
    sie = dict(reference["kwargs_lens"][0])
    sie["center_x"] = sie["center_x"] + lens_centre_arcsec[0]
    sie["center_y"] = sie["center_y"] + lens_centre_arcsec[1]
    return lenstronomy_kwargs_to_normalised(sie, reference["kwargs_lens"][1], None, npix, pixel_scale_arcsec)
