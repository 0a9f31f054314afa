"""Assemble and run one training phase from a workflow configuration (used by the rule scripts and the CLI).

    python -m astrorim.train --config config/quick.yaml --phase initial
    python -m astrorim.train --config config/quick.yaml --phase finetune \\
        --init results/quick/models/initial/best.pt

The model architecture comes from the configuration's ``model`` section (``npix`` from the top level);
finetuning takes it from the initial checkpoint and refuses a configuration that disagrees.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import torch
import yaml

from astrorim.model import AstroRIM, AstroRIMConfig
from astrorim.model.checkpoint import CheckpointError, read_checkpoint
from astrorim.train.config import TrainingConfig, hashed_training_config
from astrorim.train.data import ShardDataset, shards_from_manifest
from astrorim.train.loop import PhaseRun, StopFlag, TrainingInterrupted, install_signal_handlers
from astrorim.train.rules import RULE_OUTPUTS

log = logging.getLogger("astrorim.train")


def model_config_from(config: dict) -> AstroRIMConfig:
    section = dict(config.get("model") or {})
    if "npix" in section and int(section["npix"]) != int(config["npix"]):
        raise ValueError(f"model.npix={section['npix']} differs from npix={config['npix']}")
    section["npix"] = int(config["npix"])
    return AstroRIMConfig.from_dict(section)


def default_manifest(config: dict, phase: str) -> Path:
    return Path(config["data_dir"]) / "sims" / phase / "manifest.csv"


def default_out_dir(config: dict, phase: str) -> Path:
    return Path(config["results_dir"]) / "models" / phase


ENCODER_CONFIG_KEYS = ("npix", "encoder_channels", "encoder_pool", "encoder_hidden", "encoder_heads",
                       "encoder_initial_values")


def load_pretrained_encoder(model: AstroRIM, path: str | os.PathLike) -> dict:
    """Copy the encoder weights (EMA) of a pre-training checkpoint (rule pretrain_encoder) into ``model``.

    The checkpoint's encoder settings must equal the model's; returns the provenance recorded in the
    training configuration hash.
    """
    ck = read_checkpoint(path)
    saved = AstroRIMConfig.from_dict(ck["model_config"])
    diff = [k for k in ENCODER_CONFIG_KEYS if getattr(saved, k) != getattr(model.config, k)]
    if diff:
        raise CheckpointError(f"{path}: its encoder settings {diff} differ from this configuration's model section")
    state = dict(ck["model_state"])
    state.update(ck.get("ema_state") or {})
    encoder_state = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
    model.encoder.load_state_dict(encoder_state, strict=True)
    meta = ck.get("meta") or {}
    log.info("encoder initialised from %s (phase %s, step %s)", path, meta.get("phase"), meta.get("global_step"))
    return {"config_hash": meta.get("config_hash"), "global_step": meta.get("global_step")}


def load_warm_start(model: AstroRIM, path: str | os.PathLike) -> dict:
    """Copy every non-encoder weight (PSF, background, RIM; EMA) of a model checkpoint into ``model``.

    For continuing from an earlier model whose encoder is replaced (training.warm_start); the checkpoint's RIM
    and forward-operator settings must equal the model's.  Returns the provenance (file hash).
    """
    from astrorim.model.checkpoint import sha256_file

    ck = read_checkpoint(path)
    saved = AstroRIMConfig.from_dict(ck["model_config"]).to_dict()
    current = model.config.to_dict()
    diff = [k for k in current if k not in ENCODER_CONFIG_KEYS and saved.get(k) != current[k]]
    if diff:
        raise CheckpointError(f"{path}: training.warm_start needs the same non-encoder model settings; "
                              f"{', '.join(f'{k}={saved.get(k)!r} (this run {current[k]!r})' for k in diff)}")
    state = dict(ck["model_state"])
    state.update(ck.get("ema_state") or {})
    rest = {k: v for k, v in state.items() if not k.startswith("encoder.")}
    missing, unexpected = model.load_state_dict(rest, strict=False)
    missing = [k for k in missing if not k.startswith("encoder.")]
    if missing or unexpected:
        raise CheckpointError(f"{path}: warm start weights do not fit (missing {missing[:3]}, unexpected "
                              f"{unexpected[:3]})")
    log.info("PSF, background and RIM initialised from %s (training.warm_start)", path)
    return {"sha256": sha256_file(path)}


def train_phase(config: dict, phase: str, *, out_dir: str | os.PathLike | None = None,
                manifest: str | os.PathLike | None = None, init_checkpoint: str | os.PathLike | None = None,
                encoder_checkpoint: str | os.PathLike | None = None,
                resume: bool = True, stop_flag: StopFlag | None = None, on_step=None,
                progress: bool | None = None) -> dict:
    """Train one phase ('initial' or 'finetune') to completion (or resume it); returns its summary.

    The initial phase starts from the pre-trained encoder ``encoder_checkpoint`` (rule pretrain_encoder) when
    given, and from the PSF/RIM weights of ``training.warm_start`` when set.
    """
    training = TrainingConfig.from_dict(config.get("training"))
    training.phase(phase)
    manifest = Path(manifest) if manifest is not None else default_manifest(config, phase)
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir(config, phase)
    train_ds = ShardDataset(shards_from_manifest(manifest, "train", phase=phase))
    val_ds = ShardDataset(shards_from_manifest(manifest, "val", phase=phase))
    npix = int(config["npix"])
    for name, ds in (("training", train_ds), ("validation", val_ds)):
        if ds.npix != npix:
            raise ValueError(f"{manifest}: {name} shards have npix={ds.npix}, configuration npix={npix}")

    model_config = model_config_from(config)
    init, prior_streams = None, []
    if phase == "finetune":
        if init_checkpoint is None:
            raise ValueError("finetuning needs init_checkpoint (the best initial checkpoint)")
        ck = read_checkpoint(init_checkpoint)
        saved = AstroRIMConfig.from_dict(ck["model_config"])
        if saved != model_config:
            raise CheckpointError(f"{init_checkpoint}: its model_config differs from this configuration's "
                                  f"model section ({saved} vs {model_config})")
        ck_meta = ck.get("meta") or {}
        if ck_meta.get("phase") != "initial":
            raise CheckpointError(f"{init_checkpoint}: expected an initial-phase checkpoint, got phase "
                                  f"{ck_meta.get('phase')!r}")
        init = {"config_hash": ck.get("config_hash"), "epoch": ck.get("epoch")}
        prior_streams = list(ck_meta.get("training_data") or [])
    elif init_checkpoint is not None:
        raise ValueError("init_checkpoint is only used by the finetune phase")
    if phase == "finetune" and encoder_checkpoint is not None:
        raise ValueError("encoder_checkpoint is only used by the initial phase")

    streams = train_ds.streams("train") + val_ds.streams("val")
    torch.manual_seed(training.seed)
    model = AstroRIM(model_config)
    if phase == "initial":
        starts = {}
        if encoder_checkpoint is not None:
            starts["encoder"] = load_pretrained_encoder(model, encoder_checkpoint)
        if training.warm_start:
            starts["warm_start"] = load_warm_start(model, training.warm_start)
        init = starts or None
    hashed = hashed_training_config(model_config.to_dict(), training, phase, streams, npix, init)
    meta = {"run_name": config.get("run_name"), "training_data": prior_streams + streams,
            "phases": sorted({s["phase"] for s in prior_streams + streams}),
            "init_checkpoint": None if init_checkpoint is None else str(init_checkpoint),
            "encoder_checkpoint": None if encoder_checkpoint is None else str(encoder_checkpoint),
            "warm_start": training.warm_start or None,
            "n_train": len(train_ds), "n_val": len(val_ds), "manifest": str(manifest)}
    run = PhaseRun(model=model, training=training, phase=phase, train_data=train_ds, val_data=val_ds,
                   out_dir=out_dir, hashed_config=hashed, meta=meta,
                   init_checkpoint=None if init_checkpoint is None else Path(init_checkpoint), resume=resume,
                   stop_flag=stop_flag or StopFlag(), on_step=on_step, progress=progress)
    return run.run()


def configure_logging(stream=None) -> None:
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    logger = logging.getLogger("astrorim.train")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False


def run_snakemake_job(smk, phase: str) -> dict:
    """Body of the train/finetune rule scripts: outputs best, last, metrics, summary in one directory."""
    configure_logging()
    training = TrainingConfig.from_dict(smk.config.get("training"))
    threads = training.torch_threads or max(1, int(smk.threads))
    torch.set_num_threads(threads)
    outputs = {key: Path(smk.output[key]) for key in RULE_OUTPUTS}
    out_dir = outputs["last"].parent
    for key, name in RULE_OUTPUTS.items():
        if outputs[key] != out_dir / name:
            raise ValueError(f"rule output {key!r} must be {out_dir / name}, got {outputs[key]}")
    flag = StopFlag()
    install_signal_handlers(flag)
    init = smk.input.get("init") if phase == "finetune" else None
    encoder = smk.input.get("encoder") if phase == "initial" else None
    log.info("rule %s: %d torch threads (rule threads %d), outputs in %s (resumable state in %s/resume)", phase,
             threads, smk.threads, out_dir, out_dir)
    summary = train_phase(smk.config, phase, out_dir=out_dir, manifest=smk.input["manifest"],
                          init_checkpoint=init, encoder_checkpoint=encoder, stop_flag=flag)
    log.info("done: best epoch %s, val MSE %.4g, SSIM %.4f (adjoint back-projection MSE %.4g)", summary["best_epoch"],
             summary["val"]["mse"], summary["val"]["ssim"], summary["val"]["adjoint_mse"])
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m astrorim.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="workflow configuration YAML")
    parser.add_argument("--phase", choices=("initial", "finetune"), required=True)
    parser.add_argument("--out", help="output directory (default <results_dir>/models/<phase>)")
    parser.add_argument("--manifest", help="phase manifest (default <data_dir>/sims/<phase>/manifest.csv)")
    parser.add_argument("--init", help="initial checkpoint to finetune (finetune phase)")
    parser.add_argument("--encoder", help="pre-trained encoder checkpoint to start from (initial phase; "
                                          "rule pretrain_encoder's encoder.pt)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (0: training.torch_threads, else torch's default)")
    parser.add_argument("--no-validate", action="store_true",
                        help="skip the workflow schema check (the training section is still validated)")
    args = parser.parse_args(argv)
    configure_logging()
    config = yaml.safe_load(Path(args.config).read_text(encoding="utf-8"))
    if not args.no_validate:
        from astrorim.config import validate_config

        validate_config(config, source=args.config)
    threads = args.threads or TrainingConfig.from_dict(config.get("training")).torch_threads
    if threads:
        torch.set_num_threads(threads)
    flag = StopFlag()
    install_signal_handlers(flag)
    init = args.init
    if args.phase == "finetune" and init is None:
        init = default_out_dir(config, "initial") / "best.pt"
    try:
        summary = train_phase(config, args.phase, out_dir=args.out, manifest=args.manifest, init_checkpoint=init,
                              encoder_checkpoint=args.encoder, stop_flag=flag)
    except TrainingInterrupted as exc:
        log.warning("%s", exc)
        return 130
    log.info("done: best epoch %s, val MSE %.4g, SSIM %.4f", summary["best_epoch"], summary["val"]["mse"],
             summary["val"]["ssim"])
    return 0
