"""Accuracy tables: MAP estimates and posterior bias/width against the truth.

For every parameter: truth, estimate(s), bias = estimate - truth, relative bias [%] = 100 bias / |truth|
(blank when the truth is 0), and for posteriors the mean, sd, 16/50/84 % quantiles, bias / sd ("pull"),
relative width [%] = 100 sd / |truth|, whether the truth lies in the central 68 % interval, and the
effective sample size when available.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from astrorim.baseline.priors import LENS_PARAMS, PRIORS, SOURCE_PARAMS

PARAMS = LENS_PARAMS + SOURCE_PARAMS


def _rel(value: float, truth: float) -> float:
    return 100.0 * value / abs(truth) if truth != 0 else float("nan")


def map_rows(system: str, noise: str, sigma: float, truth: dict[str, float], estimate: dict[str, float],
             wall_s: float, steps: int) -> list[dict]:
    rows = []
    for p in PARAMS:
        bias = estimate[p] - truth[p]
        rows.append({"system": system, "noise": noise, "sigma_noise": sigma, "param": p, "unit": PRIORS[p].unit,
                     "truth": truth[p], "map": estimate[p], "bias": bias, "rel_bias_pct": _rel(bias, truth[p]),
                     "map_steps": steps, "map_wall_s": wall_s})
    return rows


def posterior_rows(system: str, noise: str, sigma: float, truth: dict[str, float], samples: dict[str, np.ndarray],
                   ess: dict[str, float] | None = None) -> list[dict]:
    rows = []
    for p in PARAMS:
        x = np.asarray(samples[p], dtype=np.float64).ravel()
        mean, sd = float(x.mean()), float(x.std(ddof=1)) if len(x) > 1 else float("nan")
        q16, q50, q84 = (float(v) for v in np.percentile(x, [16, 50, 84]))
        bias = mean - truth[p]
        rows.append({"system": system, "noise": noise, "sigma_noise": sigma, "param": p, "unit": PRIORS[p].unit,
                     "truth": truth[p], "mean": mean, "sd": sd, "q16": q16, "q50": q50, "q84": q84,
                     "bias": bias, "pull": bias / sd if sd > 0 else float("nan"),
                     "rel_bias_pct": _rel(bias, truth[p]), "rel_width_pct": _rel(sd, truth[p]),
                     "truth_in_68": bool(q16 <= truth[p] <= q84), "n_samples": len(x),
                     "ess": float((ess or {}).get(p, float("nan")))})
    return rows


def to_frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows)
