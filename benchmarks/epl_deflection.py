"""Seconds for one EPL deflection and its gradient on the paper-003 grid, optionally against another revision's code.

    python benchmarks/epl_deflection.py --threads 1 --compare-rev 56886b1 --out results/benchmarks/epl_deflection.json

The baseline's MAP and NUTS steps evaluate :func:`astrorim.physics.epl.deflection` and its gradient once per step
on 256 x 256 pixels (float32, lens parameters of shape (B, 1, 1) for B starts or systems).  For each axis ratio
``--q`` (the Tessore-Metcalf series needs more terms as q falls) and batch size ``--batch`` this times, as the
median of ``--repeats`` calls after two warm-up calls:

* the deflection alone (no autograd graph), and
* the deflection plus the backward pass of a fixed weighted sum of it to all six lens parameters (what a fit pays).

``--map-steps N`` (with ``--compare-rev``) also times whole MAP steps of the baseline -- Pyro model, VAE decoder of
width ``--map-width`` (untrained, as in ``benchmarks/baseline.py``'s timing case: the weights do not change the
cost), lensing, PSF, likelihood, Adam -- with the lens model's EPL module swapped between the two codes, N Adam
steps per code per round, codes alternating over ``--map-rounds`` rounds; the median of the rounds' CPU seconds
per step is reported.  Timings on a shared machine drift by tens of per cent over minutes, so only codes timed
in alternation are compared.

``--compare-rev REV`` loads ``src/astrorim/physics/epl.py`` as it was at git revision REV (``git show``; its
imports are the current ones) and times it beside the current code, case by case, on the same inputs; it also
records the largest difference between the two codes' deflections and gradients, relative to the largest
value.  Results go to ``--out``, written atomically, with the machine, thread count and load average.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from astrorim.baseline.io import save_json  # noqa: E402
from astrorim.baseline.lens_model import ImageGrid, ellipticity  # noqa: E402
from astrorim.physics import epl  # noqa: E402

import baseline as speed  # noqa: E402  benchmarks/baseline.py: its lens, model and mock
from _machine import torch_machine  # noqa: E402

PARAM_NAMES = ("theta_E", "gamma", "e1", "e2", "center_x", "center_y")


def epl_at_revision(revision: str):
    """The module src/astrorim/physics/epl.py of git revision ``revision``, imported under a private name."""
    try:
        source = subprocess.run(["git", "show", f"{revision}:src/astrorim/physics/epl.py"], cwd=ROOT,
                                check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or exc
        raise SystemExit(f"--compare-rev {revision}: cannot read src/astrorim/physics/epl.py there: {detail}")
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as handle:
        handle.write(source)
    spec = importlib.util.spec_from_file_location(f"epl_at_{revision}", handle.name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    Path(handle.name).unlink()
    return module


def lens_parameters(q: float, batch: int) -> dict[str, torch.Tensor]:
    """The speed benchmark's lens (system 1's), with axis ratio q, repeated over ``batch`` (B, 1, 1) float32."""
    lens = speed.SYSTEM1_TRUTH
    e1, e2 = ellipticity(torch.tensor(q, dtype=torch.float64), torch.tensor(lens["phi"], dtype=torch.float64))
    values = {"theta_E": lens["r_ein"], "gamma": lens["slope"], "e1": float(e1), "e2": float(e2),
              "center_x": lens["x_lens"], "center_y": lens["y_lens"]}
    return {k: torch.full((batch, 1, 1), v, dtype=torch.float32) for k, v in values.items()}


def deflection_and_gradient(module, x, y, weight_x, weight_y, values):
    params = {k: v.clone().requires_grad_() for k, v in values.items()}
    ax, ay = module.deflection(x, y, **params)
    (ax * weight_x + ay * weight_y).sum().backward()
    return ax.detach(), ay.detach(), torch.cat([params[k].grad.flatten() for k in PARAM_NAMES])


def median_seconds(call, repeats: int) -> float:
    for _ in range(2):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_case(modules: dict, q: float, batch: int, repeats: int) -> dict:
    x, y = ImageGrid(256, 10.0).coordinates(torch.float32)
    weight_x, weight_y = torch.cos(2.0 * x), torch.sin(y)
    values = lens_parameters(q, batch)
    row = {"q": q, "batch": batch, "series_terms": epl.n_series_terms((1.0 - q) / (1.0 + q), torch.float32)}
    outputs = {}
    for label, module in modules.items():
        with torch.no_grad():
            row[f"{label}_forward_s"] = median_seconds(lambda: module.deflection(x, y, **values), repeats)
        row[f"{label}_forward_backward_s"] = median_seconds(
            lambda: deflection_and_gradient(module, x, y, weight_x, weight_y, values), repeats)
        outputs[label] = deflection_and_gradient(module, x, y, weight_x, weight_y, values)
    if len(outputs) == 2:
        (ax, ay, grad), (ax_ref, ay_ref, grad_ref) = outputs.values()
        scale = max(ax_ref.abs().max(), ay_ref.abs().max())
        row["max_deflection_difference_rel"] = float(max((ax - ax_ref).abs().max(), (ay - ay_ref).abs().max()) / scale)
        row["max_gradient_difference_rel"] = float((grad - grad_ref).abs().max() / grad_ref.abs().max())
        label, reference = modules
        row["speedup_forward_backward"] = row[f"{reference}_forward_backward_s"] / row[f"{label}_forward_backward_s"]
    return row


def time_map_steps(modules: dict, width: int, steps: int, starts: int, rounds: int) -> dict:
    """Median CPU seconds per baseline MAP step with each code's EPL in the lens model, codes alternating."""
    from astrorim.baseline import lens_model
    from astrorim.baseline.map_fit import MapConfig, run_map

    model, observation, _ = speed.timing_model(*speed.untrained_vae(width, 0), 0)
    per_step = {label: [] for label in modules}
    current = lens_model.epl
    try:
        for _ in range(rounds):
            for label, module in modules.items():
                lens_model.epl = module
                run_map(model, observation, MapConfig(steps=3, n_starts=starts, record_every=0), progress=False)
                fit = run_map(model, observation, MapConfig(steps=steps, n_starts=starts, record_every=0),
                              progress=False)
                per_step[label].append(fit.cpu_s / steps)
    finally:
        lens_model.epl = current
    row = {"vae_width": width, "starts": starts, "steps_per_round": steps, "rounds": rounds}
    for label, values in per_step.items():
        row[f"{label}_cpu_s_per_step"] = statistics.median(values)
        row[f"{label}_cpu_s_per_step_rounds"] = values
    label, reference = modules
    row["speedup"] = row[f"{reference}_cpu_s_per_step"] / row[f"{label}_cpu_s_per_step"]
    return row


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--q", type=float, nargs="+", default=[0.75, 0.6, 0.5, 0.3])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--compare-rev", default=None, help="git revision whose epl.py is timed beside the current")
    parser.add_argument("--map-steps", type=int, default=0, help="Adam steps per code per round (0 = no MAP timing)")
    parser.add_argument("--map-width", type=int, nargs="+", default=[16, 64], help="VAE widths for the MAP timing")
    parser.add_argument("--map-starts", type=int, default=1)
    parser.add_argument("--map-rounds", type=int, default=3)
    parser.add_argument("--out", default="results/benchmarks/epl_deflection.json")
    args = parser.parse_args(argv)
    if args.repeats < 1 or any(b < 1 for b in args.batch) or any(not 0.05 <= q <= 1.0 for q in args.q):
        parser.error("--repeats and --batch must be >= 1 and every --q in [0.05, 1]")
    if args.map_steps < 0 or args.map_starts < 1 or args.map_rounds < 1 or any(w < 1 for w in args.map_width):
        parser.error("--map-steps must be >= 0 and --map-starts, --map-rounds, --map-width >= 1")
    if args.map_steps and not args.compare_rev:
        parser.error("--map-steps compares two codes: give --compare-rev")
    torch.set_num_threads(args.threads)
    modules = {"current": epl}
    if args.compare_rev:
        modules[f"rev_{args.compare_rev}"] = epl_at_revision(args.compare_rev)
    rows = []
    for q in args.q:
        for batch in args.batch:
            row = time_case(modules, q, batch, args.repeats)
            rows.append(row)
            times = ", ".join(f"{label} {row[f'{label}_forward_s'] * 1e3:.1f} / "
                              f"{row[f'{label}_forward_backward_s'] * 1e3:.1f} ms" for label in modules)
            print(f"q {q} batch {batch} ({row['series_terms']} terms), forward / forward+backward: {times}")
    map_rows = []
    for width in args.map_width if args.map_steps else []:
        row = time_map_steps(modules, width, args.map_steps, args.map_starts, args.map_rounds)
        map_rows.append(row)
        print(f"MAP step, VAE width {width}: " + ", ".join(
            f"{label} {row[f'{label}_cpu_s_per_step'] * 1e3:.1f} ms" for label in modules) + " (CPU, median of rounds)")
    result = {"machine": torch_machine(), "grid": "256 x 256 over 10 arcsec, float32", "repeats": args.repeats,
              "compare_rev": args.compare_rev, "cases": rows, "map_steps": map_rows}
    save_json(args.out, result)
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
