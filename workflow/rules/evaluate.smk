# Held-out evaluation (paper §3.5, §4.2, Table 2, Figure 7): the finetuned EMA checkpoint and three classical
# methods on the test shards, Table 2 and its comparison with the paper, parameter recovery, figures.
# Needs common.smk (DATA, RESULTS, LOGS, TIMINGS) and the finetune rule's output (train.smk).
#   snakemake evaluate --configfile config/quick.yaml        # quick: <= 2 min on 2 CPUs once the model exists
# The model evaluated is config `evaluation.checkpoint` when set (e.g. a small model committed under models/),
# else the finetuned best checkpoint.  The rule refuses a checkpoint whose recorded training/validation streams
# overlap the test shards (docs/evaluation.md).
EVAL_TABLES = f"{RESULTS}/tables"
EVAL_FIGURES = f"{RESULTS}/figures"
EVAL_METRICS = f"{RESULTS}/metrics"


# The checkpoint to evaluate (an input function, so that it can be switched to a committed model through the
# config key evaluation.checkpoint without editing the rule); the finetuned best (EMA) checkpoint otherwise.
# A lambda, not a named function: `snakemake --lint` objects to functions next to rules.
evaluation_checkpoint = lambda wildcards: (
    config.get("evaluation", {}).get("checkpoint")
    or f"{RESULTS}/models/finetune/best.pt"
)
# Evaluation knobs (astrorim.evaluate.pipeline.EvaluationSettings) from the config, the checkpoint key and the
# fit's section (fit.smk) excluded.
EVALUATION_SETTINGS = {
    k: v
    for k, v in config.get("evaluation", {}).items()
    if k not in ("checkpoint", "fit")
}


rule evaluate:
    input:
        test_manifest=f"{DATA}/sims/test/manifest.csv",
        val_manifest=f"{DATA}/sims/finetune/manifest.csv",
        checkpoint=evaluation_checkpoint,
        paper_table="resources/paper_table2.csv",
    output:
        table2=report(
            f"{EVAL_TABLES}/table2.csv",
            caption="../report/table2.rst",
            category="Evaluation",
            subcategory="tables",
        ),
        table2_tex=f"{EVAL_TABLES}/table2.tex",
        vs_paper=report(
            f"{EVAL_TABLES}/table2_vs_paper.csv",
            caption="../report/table2_vs_paper.rst",
            category="Evaluation",
            subcategory="tables",
        ),
        vs_paper_tex=f"{EVAL_TABLES}/table2_vs_paper.tex",
        methods=report(
            f"{EVAL_TABLES}/methods.csv",
            caption="../report/methods.rst",
            category="Evaluation",
            subcategory="tables",
        ),
        methods_tex=f"{EVAL_TABLES}/methods.tex",
        recovery=report(
            f"{EVAL_TABLES}/parameter_recovery.csv",
            caption="../report/parameter_recovery.rst",
            category="Evaluation",
            subcategory="tables",
        ),
        recovery_tex=f"{EVAL_TABLES}/parameter_recovery.tex",
        tikhonov_lambda=report(
            f"{EVAL_TABLES}/tikhonov_lambda.csv",
            caption="../report/tikhonov_lambda.rst",
            category="Evaluation",
            subcategory="tables",
        ),
        metrics=f"{EVAL_METRICS}/evaluate.json",
        per_example=f"{EVAL_METRICS}/per_example.csv",
        parameters=f"{EVAL_METRICS}/parameters.csv",
        figure7=report(
            f"{EVAL_FIGURES}/figure7.png",
            caption="../report/figure7.rst",
            category="Evaluation",
            subcategory="figures",
        ),
        distributions=report(
            f"{EVAL_FIGURES}/metric_distributions.png",
            caption="../report/metric_distributions.rst",
            category="Evaluation",
            subcategory="figures",
        ),
        failures=report(
            f"{EVAL_FIGURES}/failure_gallery.png",
            caption="../report/failure_gallery.rst",
            category="Evaluation",
            subcategory="figures",
        ),
        recovery_figure=report(
            f"{EVAL_FIGURES}/parameter_recovery.png",
            caption="../report/parameter_recovery_figure.rst",
            category="Evaluation",
            subcategory="figures",
        ),
    log:
        f"{LOGS}/evaluate/evaluate.log",
    benchmark:
        f"{TIMINGS}/evaluate/evaluate.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 2
    resources:
        mem_mb=6000,
        runtime=lambda wildcards, attempt: 60 * attempt,
    params:
        settings=EVALUATION_SETTINGS,
        npix=config["npix"],
    script:
        "../../scripts/evaluate.py"
