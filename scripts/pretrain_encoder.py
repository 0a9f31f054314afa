"""Snakemake script: supervised pre-training of the encoder (rule pretrain_encoder); also a CLI:

    python scripts/pretrain_encoder.py --config config/cpu_pretrain.yaml --out results/cpu_pretrain/models/pretrain

The resumable state lives in ``<out>/resume/`` (undeclared, never deleted by Snakemake): a rerun continues.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _rule import redirect_to_log  # noqa: E402


def _run(config: dict, out_dir: Path, manifests: dict, threads: int, device: str | None = None) -> int:
    import torch

    from astrorim.train.loop import StopFlag, install_signal_handlers
    from astrorim.train.pretrain import PretrainInterrupted, pretrain_encoder
    from astrorim.train.run import configure_logging

    configure_logging()
    torch.set_num_threads(max(1, threads))
    flag = StopFlag()
    install_signal_handlers(flag)
    try:
        summary = pretrain_encoder(config, out_dir=out_dir, manifests=manifests, stop_flag=flag, device=device)
    except PretrainInterrupted as exc:
        print(exc)
        return 130
    print(f"pretrain_encoder: {summary['stop_reason']} at step {summary['global_step']}/{summary['total_steps']}; "
          f"val {summary['val']}")
    return 0


if "snakemake" in globals():
    smk = snakemake  # noqa: F821
    with redirect_to_log(smk):
        manifests = {p: Path(m) for p, m in zip(smk.params.phases, smk.input.manifests)}
        rc = _run(smk.config, Path(smk.output.encoder).parent, manifests, int(smk.threads))
        if rc:
            raise SystemExit(rc)
else:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--out", required=True, help="output directory (encoder.pt, metrics.csv, summary.json)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default=None, help="cpu, cuda[:N] (default: training.device)")
    parser.add_argument("--deadline-s", type=float, default=None, help="override pretrain.deadline_s")
    args = parser.parse_args()
    import yaml

    config = yaml.safe_load(Path(args.config).read_text(encoding="utf-8"))
    if args.deadline_s is not None:
        config.setdefault("pretrain", {})["deadline_s"] = args.deadline_s
    sys.exit(_run(config, Path(args.out), {}, args.threads, args.device))
