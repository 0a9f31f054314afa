"""How strongly the supervised term pulls on the encoder in joint training, per unit weight.

For a configuration, a pre-trained encoder and (optionally) the warm-start checkpoint, over a few training
batches: the gradient norm, over the encoder's weights only, of the unsupervised objective (reconstruction +
forward + PSF + parameter penalty, with the configured weights) and of the supervised component NLL.  The
ratio says which lambda_supervised makes the two pull equally; docs/training.md records the measurement.
With ``--steps N --lambdas 0 1000 ...`` it also runs N joint-training steps from the same start for each weight
(same batches) and reports the encoder's validation scores after them (theta_E, |de|, coverage: how much of the
pre-training each weight keeps).

    python benchmarks/supervised_weight.py --config config/cpu_pretrain.yaml \\
        --encoder results/cpu_pretrain/models/pretrain/encoder.pt --batches 4 --out results/benchmarks/sup_weight.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
import yaml

from astrorim.model import AstroRIM
from astrorim.train.config import TrainingConfig
from astrorim.train.data import EpochSampler, ShardDataset, make_loader, shards_from_manifest
from astrorim.train.loss import compute_loss
from astrorim.train.run import default_manifest, load_pretrained_encoder, load_warm_start, model_config_from
from astrorim.train.step import prepare_batch


def grad_norm(loss: torch.Tensor, params: list) -> float:
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return float(torch.sqrt(sum((g.float() ** 2).sum() for g in grads if g is not None)))


def short_runs(args, config: dict, training: TrainingConfig, ds) -> list[dict]:
    """N joint steps per weight from the same start, then the encoder's validation scores."""
    from torch.utils.data import Subset

    from astrorim.train.optim import make_optimizer
    from astrorim.train.pretrain import evaluate_encoder
    from astrorim.train.step import resolve_precision, train_step

    val = ShardDataset(shards_from_manifest(default_manifest(config, "initial"), "val", phase="initial"))
    idx = np.linspace(0, len(val) - 1, min(args.val_limit, len(val))).astype(int)
    val_loader = torch.utils.data.DataLoader(Subset(val, idx.tolist()), batch_size=100)
    cpu = torch.device("cpu")
    out = []
    for lam in [None] + list(args.lambdas):
        torch.manual_seed(training.seed)
        model = AstroRIM(model_config_from(config))
        load_pretrained_encoder(model, args.encoder)
        if training.warm_start:
            load_warm_start(model, training.warm_start)
        row = {"lambda_supervised": lam, "steps": 0 if lam is None else args.steps}
        if lam is not None:
            phase = training.initial
            opt = make_optimizer(model, phase.lr_rim, phase.lr_forward, training.weight_decay)
            loss_cfg = dataclasses.replace(training.loss, lambda_supervised=lam)
            sampler = EpochSampler(len(ds), training.seed, flip_prob=0.5, rot90_prob=0.5)
            loader = make_loader(ds, training.batch_size, sampler=sampler, drop_last=True)
            scaler = torch.amp.GradScaler("cpu", enabled=False)
            for i, batch in enumerate(loader):
                if i >= args.steps:
                    break
                r = train_step(model, batch, opt, scaler, resolve_precision(cpu, "off"), loss_cfg=loss_cfg,
                               grad_clip=training.grad_clip, n_iter=None, noise="truth", device=cpu)
            row.update(last_recon=r["recon"], last_sup=r["sup"])
        row.update({f"val_{k}": v for k, v in evaluate_encoder(model.encoder, val_loader, cpu).items()})
        print(row, flush=True)
        out.append(row)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--encoder", required=True)
    p.add_argument("--batches", type=int, default=4)
    p.add_argument("--steps", type=int, default=0, help="joint steps per weight in the short comparison")
    p.add_argument("--lambdas", type=float, nargs="*", default=[])
    p.add_argument("--val-limit", type=int, default=600, help="validation pairs scored after the short runs")
    p.add_argument("--out")
    args = p.parse_args()
    torch.set_num_threads(1)
    config = yaml.safe_load(Path(args.config).read_text())
    training = TrainingConfig.from_dict(config.get("training"))
    torch.manual_seed(training.seed)
    model = AstroRIM(model_config_from(config))
    load_pretrained_encoder(model, args.encoder)
    if training.warm_start:
        load_warm_start(model, training.warm_start)
    model.train()
    ds = ShardDataset(shards_from_manifest(default_manifest(config, "initial"), "train", phase="initial"))
    sampler = EpochSampler(len(ds), training.seed, flip_prob=0.5, rot90_prob=0.5)
    loader = make_loader(ds, training.batch_size, sampler=sampler, drop_last=True)
    loss_cfg = dataclasses.replace(training.loss, lambda_supervised=1.0)
    enc = [q for q in model.encoder.parameters()]
    rest = [q for n, q in model.named_parameters() if not n.startswith("encoder.")]
    rows = []
    for i, batch in enumerate(loader):
        if i >= args.batches:
            break
        y, target, sigma, truth = prepare_batch(batch, torch.device("cpu"))
        out = model(y, sigma)
        t = compute_loss(model, out, y, target, truth, loss_cfg)
        unsup = t["total"] - t["sup"]
        rows.append({"unsupervised": grad_norm(unsup, enc), "supervised": grad_norm(t["sup"], enc),
                     "unsupervised_rim_psf": grad_norm(unsup, rest),
                     "recon": float(t["recon"]), "sup": float(t["sup"])})
        print(rows[-1], flush=True)
    g_u = float(np.median([r["unsupervised"] for r in rows]))
    g_s = float(np.median([r["supervised"] for r in rows]))
    g_r = float(np.median([r["unsupervised_rim_psf"] for r in rows]))
    result = {"median_grad_norm_unsupervised_rim_psf_background": g_r, "grad_clip": training.grad_clip,
              "config": args.config, "encoder": args.encoder, "batches": len(rows), "batch_size": training.batch_size,
              "median_encoder_grad_norm_unsupervised": g_u, "median_encoder_grad_norm_supervised_per_unit_weight": g_s,
              "lambda_for_equal_pull": g_u / g_s, "rows": rows}
    if args.steps and args.lambdas:
        result["short_runs"] = short_runs(args, config, training, ds)
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=2))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
