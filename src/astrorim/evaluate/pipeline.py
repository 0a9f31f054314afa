"""The evaluation stage: a trained checkpoint and three classical methods on the held-out test shards.

``run_evaluation`` is what the Snakemake rule calls:

1. refuse the checkpoint if its recorded training/validation streams overlap the test shards
   (:mod:`astrorim.evaluate.leakage`);
2. AstroRIM: each observation is divided by the model's own per-example scale
   (``astrorim.model.normalisation.observation_scale``), reconstructed with the shard's noise level in
   the same units, and the reconstruction multiplied back by that scale, so it is in ADU like the truth;
3. classical methods (a) encoder-Theta back-projection, (b) true-Theta back-projection, (c) true-Theta/PSF
   Tikhonov CG with lam tuned per version on validation shards (:mod:`astrorim.evaluate.classical`);
4. metrics per (method, example) (:mod:`astrorim.evaluate.metrics`), Table 2 and its comparison with the
   paper (:mod:`astrorim.evaluate.tables`), parameter recovery (:mod:`astrorim.evaluate.recovery`),
   figures (:mod:`astrorim.evaluate.figures`), seconds per lens of every method.

Every output file is written atomically.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from astrorim import __version__
from astrorim.evaluate import classical, figures, leakage, recovery, tables
from astrorim.evaluate.metrics import batch_metrics
from astrorim.io.shards import ShardError, read_shard
from astrorim.params import PARAMETER_NAMES

METHOD_LABELS = {
    "astrorim": "AstroRIM",
    "backprojection_encoder": "(a) $x_0 = F^T y$, encoder $\\Theta$",
    "backprojection_true": "(b) $x_0 = F^T y$, true $\\Theta$, PSF",
    "tikhonov_true": "(c) Tikhonov CG, true $\\Theta$, PSF",
}
METHODS = tuple(METHOD_LABELS)
ID_COLUMNS = ("version", "seed", "phase", "split", "index")


@dataclass
class EvaluationSettings:
    """Knobs of the evaluation (all have defaults; the rule may override them from the config)."""

    batch_size: int = 16
    figure_rows_per_version: int = 3
    n_failures: int = 10
    n_tune_per_version: int = 8
    lambda_grid: tuple[float, ...] = classical.DEFAULT_LAMBDA_GRID
    cg_max_iter: int = 400
    cg_tol: float = 1e-5
    tikhonov_lambda: dict[str, float] | None = None  # fixed lam per version: skips tuning (tests)
    threads: int | None = None
    # AstroRIM and classical method (a) only: auto | cpu | cuda[:N] (cuda without a GPU is an error); the other
    # classical methods are CPU code (scipy CG, numpy), and every metric is scikit-image's, on the CPU.
    device: str = "cpu"


@dataclass
class ExampleSet:
    """Examples of several shards, stacked in a stable order (version, phase, split, index)."""

    observed: np.ndarray
    source: np.ndarray
    psf: np.ndarray
    noise_sigma: np.ndarray
    lens_light: np.ndarray | None
    truth: pd.DataFrame
    npix: int
    paths: list[Path] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.observed)

    def subset(self, mask: np.ndarray) -> "ExampleSet":
        idx = np.flatnonzero(mask)
        return ExampleSet(self.observed[idx], self.source[idx], self.psf[idx], self.noise_sigma[idx],
                          None if self.lens_light is None else self.lens_light[idx],
                          self.truth.iloc[idx].reset_index(drop=True), self.npix, self.paths)


def load_examples(paths: Sequence[str | os.PathLike], limit_per_version: int | None = None) -> ExampleSet:
    """Read shards (with diagnostics when stored); ``limit_per_version`` keeps the first n of each version."""
    if not paths:
        raise ValueError("no shard files given")
    shards = [read_shard(p, diagnostics=True) for p in paths]
    shards.sort(key=lambda s: (str(s.attrs["version"]), str(s.attrs["phase"]), str(s.attrs["split"]),
                               int(s.attrs["seed"]), int(s.attrs["start_index"])))
    npix = {int(s.attrs["npix"]) for s in shards}
    if len(npix) != 1:
        raise ShardError(f"shards have different npix {sorted(npix)}: {[str(s.path) for s in shards]}")
    have_diag = all("noiseless" in s.diagnostics and "lensed_source_noiseless" in s.diagnostics for s in shards)
    parts: dict[str, list] = {k: [] for k in ("observed", "source", "psf", "noise_sigma", "lens_light", "truth")}
    taken: dict[str, int] = {}
    for s in shards:
        version = str(s.attrs["version"])
        n = len(s)
        if limit_per_version is not None:
            n = max(0, min(n, limit_per_version - taken.get(version, 0)))
        if n == 0:
            continue
        taken[version] = taken.get(version, 0) + n
        for name in ("observed", "source", "psf", "noise_sigma"):
            parts[name].append(s.arrays[name][:n])
        if have_diag:
            parts["lens_light"].append(classical.lens_light({k: v[:n] for k, v in s.diagnostics.items()}))
        truth = s.truth.iloc[:n].copy()
        for key in ("version", "seed", "phase", "split"):
            truth[key] = s.attrs[key]
        if "index" not in truth.columns:
            truth["index"] = np.arange(int(s.attrs["start_index"]), int(s.attrs["start_index"]) + n)
        expected = np.arange(int(s.attrs["start_index"]), int(s.attrs["start_index"]) + n)
        if not np.array_equal(truth["index"].to_numpy(dtype=np.int64), expected):
            raise ShardError(f"{s.path}: truth column 'index' does not match start_index={s.attrs['start_index']}")
        truth["shard"] = str(s.path)
        parts["truth"].append(truth)
    return ExampleSet(
        observed=np.concatenate(parts["observed"]).astype(np.float32),
        source=np.concatenate(parts["source"]).astype(np.float32),
        psf=np.concatenate(parts["psf"]).astype(np.float32),
        noise_sigma=np.concatenate(parts["noise_sigma"]).astype(np.float32),
        lens_light=np.concatenate(parts["lens_light"]).astype(np.float32) if have_diag else None,
        truth=pd.concat(parts["truth"], ignore_index=True),
        npix=npix.pop(),
        paths=[s.path for s in shards],
    )


class Timer:
    """Accumulates wall-clock (perf_counter) and process CPU time (all threads) over ``with`` blocks."""

    def __init__(self):
        self.wall = 0.0
        self.cpu = 0.0

    def __enter__(self):
        self._w, self._c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall += time.perf_counter() - self._w
        self.cpu += time.process_time() - self._c
        return False

    def per(self, n: int) -> dict[str, float]:
        n = max(int(n), 1)
        return {"wall": self.wall / n, "cpu": self.cpu / n}


def _batches(n: int, size: int):
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def _bar(iterable, desc: str, total: int | None = None):
    return tqdm(iterable, desc=desc, total=total, disable=None, leave=False)


# --------------------------------------------------------------------------------------------- methods
def run_model(model, ex: ExampleSet, batch_size: int, device: str = "cpu") -> dict:
    """AstroRIM and classical method (a) on every example: reconstructions [ADU], encoder parameters, timings.

    AstroRIM runs through the project's inference API (``astrorim.inference.reconstruct``: per-example
    robust-max normalisation, reconstruction, flux scale undone) with the shard's true noise level.
    (a) is timed separately: normalisation + encoder + operator + x0 only.  Both run on ``device`` (its
    per-lens times then include the copies to and from it); the model is returned to the CPU afterwards.
    """
    from astrorim.train.step import resolve_device
    from astrorim.inference import reconstruct
    from astrorim.model.normalisation import denormalise, normalise, observation_scale
    from astrorim.model.rim import RIM

    recon, x0, params = [], [], []
    t_model, t_a = Timer(), Timer()
    device = resolve_device(device, key="evaluation.device")
    model.eval().to(device)
    for sl in _bar(_batches(len(ex), batch_size), "AstroRIM", total=-(-len(ex) // batch_size)):
        with t_model:
            out = reconstruct(ex.observed[sl], model, noise_sigma=ex.noise_sigma[sl].astype(np.float64),
                              batch_size=batch_size, device=device)
        recon.append(np.asarray(out.source, dtype=np.float32))
        params.append(out.params)
        with t_a, torch.inference_mode():
            y = torch.from_numpy(ex.observed[sl]).to(device)
            s = observation_scale(y)
            yn = normalise(y, s)
            op = model.forward_operator.bind(model.encoder(yn))
            xa = denormalise(RIM.initial_source(yn, op).float(), s).cpu()
        x0.append(xa.numpy())
    model.to("cpu")
    table = pd.concat(params, ignore_index=True)
    return {"astrorim": np.concatenate(recon), "backprojection_encoder": np.concatenate(x0),
            "params": {k: table[k].to_numpy(np.float64) for k in PARAMETER_NAMES},
            "timing": {"astrorim": t_model.per(len(ex)), "backprojection_encoder": t_a.per(len(ex))}}


def run_true_backprojection(ex: ExampleSet, batch_size: int) -> tuple[np.ndarray, dict[str, float]]:
    """Baseline (b) on every example; returns (estimates [ADU], {wall, cpu} seconds per lens)."""
    out, timer = [], Timer()
    for sl in _bar(_batches(len(ex), batch_size), "(b) true-Theta F^T y", total=-(-len(ex) // batch_size)):
        with timer:
            op = classical.true_operator(ex.truth.iloc[sl], ex.psf[sl], ex.npix)
            out.append(classical.backprojection(op, torch.from_numpy(ex.observed[sl])).float().numpy())
    return np.concatenate(out), timer.per(len(ex))


def _tikhonov_data(ex: ExampleSet, sl: slice) -> np.ndarray:
    y = ex.observed[sl].astype(np.float32)
    return y if ex.lens_light is None else y - ex.lens_light[sl]


def tune_tikhonov(val: ExampleSet, settings: EvaluationSettings) -> tuple[dict[str, float], pd.DataFrame]:
    """lam per version maximising the mean paper SSIM on the validation examples."""
    chosen, scans = {}, []
    versions = sorted(val.truth["version"].unique())
    for version in _bar(versions, "(c) tune lam"):
        sub = val.subset((val.truth["version"] == version).to_numpy())
        batches = []
        for sl in _batches(len(sub), settings.batch_size):
            op = classical.true_operator(sub.truth.iloc[sl], sub.psf[sl], sub.npix)
            batches.append((op, _tikhonov_data(sub, sl), sub.source[sl]))
        lam, scan = classical.tune_lambda(batches, settings.lambda_grid, settings.cg_max_iter, settings.cg_tol)
        chosen[version] = lam
        if lam in (min(settings.lambda_grid), max(settings.lambda_grid)):
            print(f"warning: Tikhonov lam for {version} is at the edge of the grid ({lam:g}); widen "
                  f"evaluation.lambda_grid", flush=True)
        scan.insert(0, "version", version)
        scan["chosen"] = np.isclose(scan["lam"], lam)
        scans.append(scan)
    return chosen, pd.concat(scans, ignore_index=True)


def run_tikhonov(ex: ExampleSet, lam_by_version: dict[str, float], settings: EvaluationSettings
                 ) -> tuple[np.ndarray, dict[str, float], pd.DataFrame]:
    """Baseline (c) with each version's lam; returns (estimates [ADU], {wall, cpu} s per lens, CG diagnostics)."""
    out = np.zeros_like(ex.source)
    diag = []
    timer = Timer()
    versions = ex.truth["version"].to_numpy()
    for version in _bar(sorted(set(versions)), "(c) Tikhonov CG"):
        if version not in lam_by_version:
            raise KeyError(f"no Tikhonov lam for version {version!r} (have {sorted(lam_by_version)})")
        idx = np.flatnonzero(versions == version)
        for start in range(0, len(idx), settings.batch_size):
            rows = idx[start:start + settings.batch_size]
            sl = slice(rows[0], rows[-1] + 1)  # rows of one version are contiguous (sorted load)
            if not np.array_equal(np.arange(sl.start, sl.stop), rows):
                raise AssertionError("examples of one version are not contiguous")
            with timer:
                op = classical.true_operator(ex.truth.iloc[sl], ex.psf[sl], ex.npix)
                res = classical.tikhonov(op, torch.from_numpy(_tikhonov_data(ex, sl)), lam_by_version[version],
                                         max_iter=settings.cg_max_iter, tol=settings.cg_tol)
            out[sl] = res.x.float().numpy()
            diag.append(pd.DataFrame({"version": version, "index": ex.truth["index"].iloc[sl].to_numpy(),
                                      "cg_iterations": res.iterations,
                                      "cg_relative_residual": res.relative_residual.double().numpy()}))
    return out, timer.per(len(ex)), pd.concat(diag, ignore_index=True)


# --------------------------------------------------------------------------------------------- metrics
def per_example_metrics(ex: ExampleSet, estimates: dict[str, np.ndarray]) -> pd.DataFrame:
    """Long frame: one row per (method, example) with ID_COLUMNS, shard and the metric columns."""
    labels = [f"{t.shard}#{t.index} ({t.version})" for t in ex.truth[["shard", "index", "version"]].itertuples()]
    parts = []
    for method, est in estimates.items():
        if est.shape != ex.source.shape:
            raise ValueError(f"{method}: estimates have shape {est.shape}, truth {ex.source.shape}")
        classical.finite_or_raise(est, method)
        rows = batch_metrics(ex.source, est, ex.observed, labels=labels)
        frame = pd.DataFrame(rows)
        ids = ex.truth[list(ID_COLUMNS) + ["shard"]].reset_index(drop=True)
        frame = pd.concat([ids, frame], axis=1)
        frame.insert(0, "method", method)
        parts.append(frame)
    return pd.concat(parts, ignore_index=True)


@dataclass
class EvaluationResult:
    per_example: pd.DataFrame
    parameters: pd.DataFrame | None
    timing: dict[str, dict[str, float]]
    lambda_by_version: dict[str, float]
    lambda_scan: pd.DataFrame | None
    cg_diagnostics: pd.DataFrame
    estimates: dict[str, np.ndarray]
    examples: ExampleSet
    provenance: dict


def evaluate_examples(ex: ExampleSet, model=None, val: ExampleSet | None = None,
                      settings: EvaluationSettings | None = None, provenance: dict | None = None
                      ) -> EvaluationResult:
    """Run every available method on ``ex`` and score it.  Without a model only (b) and (c) run."""
    settings = settings or EvaluationSettings()
    if settings.threads:
        torch.set_num_threads(int(settings.threads))
    estimates: dict[str, np.ndarray] = {}
    timing: dict[str, dict[str, float]] = {}  # method -> {"wall", "cpu"} seconds per lens
    stages: dict[str, float] = {}  # stage -> wall seconds in total
    parameters = None

    def stage(name, started):
        stages[name] = time.perf_counter() - started
        print(f"{name}: {stages[name]:.1f} s wall ({len(ex)} test examples)", flush=True)

    if model is not None:
        t0 = time.perf_counter()
        res = run_model(model, ex, settings.batch_size, settings.device)
        stage("astrorim_and_backprojection_encoder", t0)
        estimates["astrorim"] = res["astrorim"]
        estimates["backprojection_encoder"] = res["backprojection_encoder"]
        timing.update(res["timing"])
        parameters = recovery.parameter_frame(ex.truth, res["params"], ex.npix)
        parameters = pd.concat([ex.truth[list(ID_COLUMNS)].reset_index(drop=True), parameters.reset_index(drop=True)],
                               axis=1)
    t0 = time.perf_counter()
    estimates["backprojection_true"], timing["backprojection_true"] = run_true_backprojection(ex, settings.batch_size)
    stage("backprojection_true", t0)
    scan = None
    if settings.tikhonov_lambda is not None:
        lam = dict(settings.tikhonov_lambda)
    else:
        if val is None or len(val) == 0:
            raise ValueError("Tikhonov lam must be tuned on validation examples (val) or given (tikhonov_lambda)")
        if (val.lens_light is None) != (ex.lens_light is None):
            raise ValueError("validation and test shards must both store diagnostics, or both not: the "
                             "Tikhonov inversion would be tuned on differently prepared data")
        t0 = time.perf_counter()
        lam, scan = tune_tikhonov(val, settings)
        stage("tikhonov_tuning", t0)
    t0 = time.perf_counter()
    estimates["tikhonov_true"], timing["tikhonov_true"], cg = run_tikhonov(ex, lam, settings)
    stage("tikhonov_true", t0)
    not_converged = int((cg["cg_relative_residual"] > settings.cg_tol).sum())
    if not_converged:
        print(f"warning: CG stopped at cg_max_iter={settings.cg_max_iter} before the relative residual "
              f"{settings.cg_tol:g} for {not_converged} of {len(cg)} test examples", flush=True)
    t0 = time.perf_counter()
    per_example = per_example_metrics(ex, estimates)
    stage("metrics", t0)
    prov = dict(provenance or {})
    prov.update({"astrorim_version": __version__, "torch_threads": torch.get_num_threads(),
                 "n_test": len(ex), "tikhonov_lens_light": "true lens light subtracted (shard diagnostics)"
                 if ex.lens_light is not None else "none subtracted (shards lack diagnostics)",
                 "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(settings).items()},
                 "stage_wall_seconds": stages,
                 "tikhonov_cg": {"max_iterations": int(cg["cg_iterations"].max()), "not_converged": not_converged,
                                 "max_relative_residual": float(cg["cg_relative_residual"].max())}})
    return EvaluationResult(per_example, parameters, timing, lam, scan, cg, estimates, ex, prov)


# --------------------------------------------------------------------------------------------- outputs
@dataclass(frozen=True)
class OutputDirs:
    tables: Path
    figures: Path
    metrics: Path

    @classmethod
    def under(cls, results_dir: str | os.PathLike) -> "OutputDirs":
        r = Path(results_dir)
        return cls(r / "tables", r / "figures", r / "metrics")


def output_files(dirs: OutputDirs, with_model: bool = True) -> list[Path]:
    """Every file ``write_outputs`` writes (the rule's outputs)."""
    files = [dirs.tables / "methods.csv", dirs.tables / "methods.tex", dirs.tables / "tikhonov_lambda.csv",
             dirs.metrics / "evaluate.json", dirs.metrics / "per_example.csv",
             dirs.figures / "metric_distributions.png"]
    if with_model:
        files += [dirs.tables / "table2.csv", dirs.tables / "table2.tex", dirs.tables / "table2_vs_paper.csv",
                  dirs.tables / "table2_vs_paper.tex", dirs.tables / "parameter_recovery.csv",
                  dirs.tables / "parameter_recovery.tex", dirs.metrics / "parameters.csv",
                  dirs.figures / "figure7.png", dirs.figures / "failure_gallery.png",
                  dirs.figures / "parameter_recovery.png"]
    return files


def write_outputs(result: EvaluationResult, dirs: OutputDirs, paper_table: str | os.PathLike | None) -> list[Path]:
    """Tables (CSV + LaTeX), metrics JSON, per-example CSVs and figures; returns the files written."""
    pe = result.per_example
    with_model = "astrorim" in set(pe["method"])
    written = []

    def put_csv(frame, path, index=False):
        tables.write_csv(frame, path, index=index)
        written.append(Path(path))

    def put_text(text, path):
        from astrorim.io.atomic import write_text_atomic
        write_text_atomic(path, text)
        written.append(Path(path))

    methods = tables.methods_table(pe, {m: t["wall"] for m, t in result.timing.items()},
                                   {m: t["cpu"] for m, t in result.timing.items()})
    put_csv(methods, dirs.tables / "methods.csv")
    put_text(tables.methods_latex(methods, METHOD_LABELS,
                                  "All methods on the same test examples: SSIM mean (paper settings) / median MSE "
                                  "per subset, on per-example [0, 1]-normalised images; seconds per lens on CPU."),
             dirs.tables / "methods.tex")
    lam = pd.DataFrame({"version": list(result.lambda_by_version), "lam": list(result.lambda_by_version.values())})
    if result.lambda_scan is not None:
        lam = result.lambda_scan
    put_csv(lam, dirs.tables / "tikhonov_lambda.csv")
    put_csv(pe, dirs.metrics / "per_example.csv")

    per_method = {m: tables.table2(pe, m) for m in pe["method"].drop_duplicates()}
    extra = {"provenance": result.provenance, "tikhonov_lambda": result.lambda_by_version,
             "cpu_seconds_per_lens": {m: t["cpu"] for m, t in result.timing.items()}}
    if with_model:
        t2 = per_method["astrorim"]
        put_csv(t2, dirs.tables / "table2.csv", index=True)
        put_text(tables.table2_latex(
            t2, "AstroRIM reconstruction metrics on the held-out simulated test set, on per-example normalised "
                "images (truth and reconstruction divided by the truth's peak, no clipping). SSIM: 11x11 Gaussian "
                "window, $\\sigma = 1.5$ (Wang et al. 2004); last column: scikit-image default SSIM (7x7 uniform) "
                "as the published code computed it. Mean $\\pm$ std and median [P10, P90]."),
            dirs.tables / "table2.tex")
        if paper_table is not None:
            paper = tables.load_paper_table(paper_table)
            cmp = tables.compare_with_paper(t2, paper, tables.published_protocol_view(pe, "astrorim"))
            put_csv(cmp, dirs.tables / "table2_vs_paper.csv")
            put_text(tables.comparison_latex(
                cmp, "Our Table 2 against the paper's (ours / paper, difference). Last column: our SSIM mean "
                     "under the published code's protocol (max(observed, truth) normalisation, clipped "
                     "reconstruction, 7x7 uniform SSIM)."), dirs.tables / "table2_vs_paper.tex")
            extra["paper_comparison"] = {f"{r.subset}.{r.statistic}": {"paper": r.paper, "ours": r.ours,
                                                                        "difference": r.difference}
                                         for r in cmp.itertuples()}
        params = result.parameters
        put_csv(params, dirs.metrics / "parameters.csv")
        rec = recovery.summarise_recovery(params)
        put_csv(rec, dirs.tables / "parameter_recovery.csv")
        put_text(recovery.recovery_latex(rec, "Encoder parameter recovery on the test set: median absolute error "
                                              "(bias = mean signed error). Angles by periodic difference (period "
                                              "$\\pi$); $r_s$ only where a halo exists."),
                 dirs.tables / "parameter_recovery.tex")
        extra["parameter_recovery"] = {f"{r.subset}.{r.parameter}": {"median_abs_error": r.median_abs_error,
                                                                      "bias": r.bias, "n": r.n}
                                       for r in rec.itertuples() if r.subset == "All"}
        written += figures.figure7(result, dirs.figures / "figure7.png")
        written += figures.failure_gallery(result, dirs.figures / "failure_gallery.png")
        written += figures.parameter_scatter(params, dirs.figures / "parameter_recovery.png")
    written += figures.metric_distributions(pe, METHOD_LABELS, dirs.figures / "metric_distributions.png")
    tables.write_json(tables.metrics_json(per_method, {m: t["wall"] for m, t in result.timing.items()}, extra),
                      dirs.metrics / "evaluate.json")
    written.append(dirs.metrics / "evaluate.json")
    return written


# --------------------------------------------------------------------------------------------- entry point
def run_evaluation(checkpoint: str | os.PathLike, test_paths: Sequence[str | os.PathLike],
                   val_paths: Sequence[str | os.PathLike], dirs: OutputDirs,
                   paper_table: str | os.PathLike | None, settings: EvaluationSettings | None = None,
                   expected_npix: int | None = None) -> EvaluationResult:
    """The evaluate rule: leakage check, all methods, all outputs."""
    from astrorim.model.checkpoint import load_model, sha256_file

    settings = settings or EvaluationSettings()
    model, meta = load_model(checkpoint, expected_npix=expected_npix)
    streams = leakage.check_no_leakage(meta, test_paths, source=str(checkpoint))
    print(f"{checkpoint}: {len(streams)} training/validation streams recorded, none overlaps the "
          f"{len(test_paths)} test shards")
    ex = load_examples(test_paths)
    if expected_npix is not None and ex.npix != expected_npix:
        raise ShardError(f"test shards have npix={ex.npix}, the configuration says {expected_npix}")
    val = load_examples(val_paths, settings.n_tune_per_version) if settings.tikhonov_lambda is None else None
    if val is not None:
        leak = [(a, b) for a in leakage.shard_streams(val_paths) for b in leakage.shard_streams(test_paths)
                if a.overlaps(b)]
        if leak:
            raise leakage.LeakageError(f"validation shards used to tune lam overlap the test shards: "
                                       f"{leak[0][0].describe()} / {leak[0][1].describe()}")
    provenance = {"checkpoint": str(checkpoint), "checkpoint_sha256": sha256_file(checkpoint),
                  "test_shards": [str(p) for p in ex.paths],
                  "validation_shards_for_lambda": [str(p) for p in (val.paths if val is not None else [])],
                  "checkpoint_streams": len(streams)}
    result = evaluate_examples(ex, model, val, settings, provenance)
    for path in write_outputs(result, dirs, paper_table):
        print(f"wrote {path}")
    return result
