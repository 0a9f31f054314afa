# Training: supervised pre-training of the encoder (issue 23, rule pretrain_encoder), then (paper §3.3) joint initial training on the initial phase's shards, then finetuning from its best
# checkpoint on the finetune phase's shards, and the training-curves figure.  Needs common.smk.
#   snakemake train_all --configfile config/quick.yaml            # both phases + figure (quick: < 6 min, 2 CPUs)
#
# Interruption: every epoch (and every training.checkpoint_every_s seconds mid-epoch) the run writes
# {MODELS}/<phase>/resume/last.pt, an undeclared path that Snakemake never deletes.  When a job is killed,
# Snakemake deletes the job's declared outputs on the rerun (profiles/default sets rerun-incomplete: true),
# the rerun finds resume/last.pt and continues from there.  A SIGTERM/SIGINT (SLURM time limit, Ctrl-C)
# writes a checkpoint first; SIGKILL loses at most the work since the last checkpoint.  docs/training.md.
from astrorim.train.rules import (  # noqa: E402
    pretrain_outputs,
    pretrain_params,
    pretrain_phases,
    rule_outputs,
    rule_params,
)

MODELS = f"{RESULTS}/models"


rule pretrain_encoder:
    input:
        manifests=[
            f"{DATA}/sims/{phase}/manifest.csv" for phase in pretrain_phases(config)
        ],
    output:
        **pretrain_outputs(MODELS),
    log:
        f"{LOGS}/train/pretrain_encoder.log",
    benchmark:
        f"{TIMINGS}/train/pretrain_encoder.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 8
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=lambda wildcards, attempt: 720 * attempt,
    params:
        phases=pretrain_phases(config),
        model=config.get("model", {}),
        pretrain=pretrain_params(config),
    script:
        "../../scripts/pretrain_encoder.py"


rule train:
    input:
        manifest=f"{DATA}/sims/initial/manifest.csv",
        encoder=rules.pretrain_encoder.output.encoder,
    output:
        **rule_outputs(MODELS, "initial")
        | {
            "metrics": report(
                rule_outputs(MODELS, "initial")["metrics"],
                caption="../report/training_metrics.rst",
                category="Training",
                subcategory="initial",
            )
        },
    log:
        f"{LOGS}/train/initial.log",
    benchmark:
        f"{TIMINGS}/train/initial.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 8
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=lambda wildcards, attempt: 1440 * attempt,
    params:
        model=config.get("model", {}),
        training=rule_params(config),
    script:
        "../../scripts/train.py"


rule finetune:
    input:
        manifest=f"{DATA}/sims/finetune/manifest.csv",
        init=rules.train.output.best,
    output:
        **rule_outputs(MODELS, "finetune")
        | {
            "metrics": report(
                rule_outputs(MODELS, "finetune")["metrics"],
                caption="../report/training_metrics.rst",
                category="Training",
                subcategory="finetune",
            )
        },
    log:
        f"{LOGS}/train/finetune.log",
    benchmark:
        f"{TIMINGS}/train/finetune.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 8
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=lambda wildcards, attempt: 720 * attempt,
    params:
        model=config.get("model", {}),
        training=rule_params(config),
    script:
        "../../scripts/finetune.py"


rule training_curves:
    input:
        initial=rules.train.output.metrics,
        finetune=rules.finetune.output.metrics,
    output:
        report(
            f"{RESULTS}/figures/training_curves.png",
            caption="../report/training_curves.rst",
            category="Training",
            subcategory="curves",
        ),
    log:
        f"{LOGS}/train/training_curves.log",
    benchmark:
        f"{TIMINGS}/train/training_curves.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        title=f"AstroRIM training ({config['run_name']})",
    script:
        "../../scripts/training_curves.py"


rule train_all:
    input:
        rules.finetune.output.best,
        rules.training_curves.output,
