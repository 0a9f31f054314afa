"""Held-out scores of model checkpoints on test shards: the encoder's lens parameters and the reconstruction.

For each checkpoint, on the same test pairs (e.g. the paper's 900-pair protocol, data/cpu_medium/sims/test):
theta_E median relative error overall and per version (astrorim.evaluate.recovery), median |de| (lenstronomy
(e1, e2) distance), |dgamma| ((gamma1, gamma2) distance), centre error in pixels, the amortised 68 % coverage of
every component (encoders with sigma heads), and the reconstruction's median whole-image SSIM, MSE and
source-region SSIM (astrorim.evaluate.metrics, the evaluation's protocol).  The model sees the shard's true noise
level, as in the evaluation stage.

    python benchmarks/encoder_heldout.py --test data/cpu_medium/sims/test/manifest.csv \\
        --checkpoint models/cpu-pretrain/model.pt --checkpoint models/cpu-medium/model.pt \\
        --out models/cpu-pretrain/heldout.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from astrorim.evaluate.metrics import batch_metrics
from astrorim.evaluate.pipeline import load_examples
from astrorim.evaluate.recovery import parameter_frame
from astrorim.model.checkpoint import load_model
from astrorim.model.encoder import COMPONENT_NAMES, components_from_nine
from astrorim.model.normalisation import denormalise, normalise, observation_scale
from astrorim.params import PARAMETER_NAMES
from astrorim.train.data import shards_from_manifest

VERSIONS = ("v1", "v2", "v3", "v4", "v5", "v6")
THETA_E_BINS_ARCSEC = (0.0, 0.3, 0.6, 1.0, np.inf)


@torch.no_grad()
def run(checkpoint: str, ex, batch_size: int = 50) -> dict:
    model, meta = load_model(checkpoint)
    params, comps, sigmas, recon = [], [], [], []
    t0 = time.perf_counter()
    for start in range(0, len(ex), batch_size):
        sl = slice(start, start + batch_size)
        y = torch.from_numpy(ex.observed[sl])
        s = observation_scale(y)
        out = model(normalise(y, s), normalise(torch.from_numpy(ex.noise_sigma[sl]).float(), s))
        params.append({k: v.numpy() for k, v in out["params"].items()})
        if "components" in out:
            comps.append({k: v.numpy() for k, v in out["components"].items()})
            sigmas.append({k: v.numpy() for k, v in out["components_sigma"].items()})
        recon.append(denormalise(out["source"], s).numpy())
    seconds = time.perf_counter() - t0
    cat = lambda parts: {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}  # noqa: E731
    pred = cat(params)
    frame = parameter_frame(ex.truth, pred, ex.npix)
    frame["version"] = ex.truth["version"].to_numpy()
    frame["near_caustic"] = ex.truth["near_caustic"].astype(bool).to_numpy()
    truth_t = torch.tensor(ex.truth[[f"norm_{p}" for p in PARAMETER_NAMES]].to_numpy(np.float32))
    truth_c, masks = components_from_nine(truth_t)
    truth_c = {k: v.numpy() for k, v in truth_c.items()}
    pred_c = cat(comps) if comps else {k: v.numpy() for k, v in components_from_nine(
        torch.tensor(np.column_stack([pred[p] for p in PARAMETER_NAMES]), dtype=torch.float32))[0].items()}
    frame["abs_de"] = np.hypot(pred_c["e1"] - truth_c["e1"], pred_c["e2"] - truth_c["e2"])
    frame["abs_dgamma"] = np.hypot(pred_c["gamma1"] - truth_c["gamma1"], pred_c["gamma2"] - truth_c["gamma2"])
    frame["centre_pix"] = 0.5 * ex.npix * np.hypot(frame["err_x0"], frame["err_y0"])
    frame["theta_e_rel"] = np.abs(frame["err_theta_E"]) / frame["true_theta_E"]
    img = pd.DataFrame(batch_metrics(ex.source, np.concatenate(recon), ex.observed))
    frame["ssim"], frame["mse"], frame["ssim_source"] = img["ssim"], img["mse"], img["ssim_source"]
    if sigmas:
        sig = cat(sigmas)
        for k in COMPONENT_NAMES:
            m = masks[k].numpy()
            frame[f"in68_{k}"] = np.where(m, (np.abs(pred_c[k] - truth_c[k]) <= sig[k]).astype(float), np.nan)

    def summary(sub: pd.DataFrame) -> dict:
        out = {"n": int(len(sub)), "theta_e_median_rel_error": float(np.median(sub["theta_e_rel"])),
               "e_median_abs_error": float(np.median(sub["abs_de"])),
               "gamma_median_abs_error": float(np.median(sub["abs_dgamma"])),
               "centre_median_error_pix": float(np.median(sub["centre_pix"])),
               "q_median_abs_error": float(np.median(np.abs(sub["err_q"]))),
               "phi_median_abs_error_rad": float(np.median(np.abs(sub["err_phi"]))),
               "ssim_median": float(np.median(sub["ssim"])), "mse_median": float(np.median(sub["mse"])),
               "ssim_source_median": float(np.nanmedian(sub["ssim_source"]))}
        cov = [c for c in sub.columns if c.startswith("in68_")]
        if cov:
            per = {c[5:]: float(np.nanmean(sub[c])) for c in cov}
            out["coverage68"] = per
            out["coverage68_mean"] = float(np.mean([v for v in per.values() if np.isfinite(v)]))
        return out

    result = {"checkpoint": checkpoint, "encoder_heads": model.config.encoder_heads, "seconds": seconds,
              "all": summary(frame)}
    for v in VERSIONS:
        sub = frame[frame["version"] == v]
        if len(sub):
            result[v] = summary(sub)
    # v4-v6 draw sigma_v, so their theta_E reaches 0.05-0.1": a relative error there says little about a lens
    bins = pd.cut(frame["true_theta_E"], THETA_E_BINS_ARCSEC, right=False)
    result["theta_e_median_rel_error_by_true_theta_e"] = {
        f"[{b.left:g}, {b.right:g})\"": {"n": int(len(g)), "all": float(np.median(g["theta_e_rel"])) if len(g) else None,
                                       **{v: float(np.median(g.loc[g["version"] == v, "theta_e_rel"]))
                                          for v in VERSIONS if (g["version"] == v).any()}}
        for b, g in frame.groupby(bins, observed=False)}
    # a source placed away from the caustic is often singly imaged: the image then says little about theta_E
    result["theta_e_median_rel_error_by_near_caustic"] = {
        key: {"n": int(len(g)), "all": float(np.median(g["theta_e_rel"])),
              **{v: float(np.median(g.loc[g["version"] == v, "theta_e_rel"])) for v in VERSIONS
                 if (g["version"] == v).any()}}
        for key, g in (("near_caustic", frame[frame["near_caustic"]]), ("elsewhere", frame[~frame["near_caustic"]]))
        if len(g)}
    return result, frame


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--test", required=True, help="test manifest (phase test)")
    p.add_argument("--checkpoint", action="append", required=True)
    p.add_argument("--out")
    p.add_argument("--per-example", help="CSV of every test pair's errors, one row per pair and checkpoint")
    args = p.parse_args()
    torch.set_num_threads(1)
    ex = load_examples(shards_from_manifest(args.test, "test", phase="test"))
    runs = [run(c, ex) for c in args.checkpoint]
    results = [r for r, _ in runs]
    if args.per_example:
        frames = [f.assign(checkpoint=c) for c, (_, f) in zip(args.checkpoint, runs)]
        Path(args.per_example).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(args.per_example + ".partial")
        pd.concat(frames).to_csv(tmp, index=False)
        tmp.replace(args.per_example)
    for r in results:
        a = r["all"]
        print(f"{r['checkpoint']}: theta_E {100 * a['theta_e_median_rel_error']:.1f} % | |de| "
              f"{a['e_median_abs_error']:.3f} | |dg| {a['gamma_median_abs_error']:.3f} | centre "
              f"{a['centre_median_error_pix']:.2f} px | coverage68 {a.get('coverage68_mean', float('nan')):.3f} | "
              f"SSIM {a['ssim_median']:.3f} / source {a['ssim_source_median']:.3f} / MSE {a['mse_median']:.3g}")
        print("   per version theta_E: " + ", ".join(f"{v} {100 * r[v]['theta_e_median_rel_error']:.1f} %"
                                                      for v in VERSIONS if v in r))
        print("   by true theta_E: " + ", ".join(f"{k} {100 * b['all']:.1f} % (n {b['n']})"
                                                  for k, b in r["theta_e_median_rel_error_by_true_theta_e"].items()
                                                  if b["all"] is not None))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(args.out + ".partial")
        tmp.write_text(json.dumps({"test_manifest": args.test, "n": len(ex), "results": results}, indent=2) + "\n")
        tmp.replace(args.out)


if __name__ == "__main__":
    main()
