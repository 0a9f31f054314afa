# "AstroRIM + fit" (issue 22; docs/fit.md): the network's lens estimate refined by the exact fit through the
# forward operator, beside the network's own, on the first `evaluation.fit.max_per_version` test examples of each
# version (one job per test shard, so Snakemake spreads them), then Table 2, the paper comparison, parameter
# recovery, the before/after figure and the calibration of the Laplace errors on those examples.
# Needs common.smk, evaluate.smk (evaluation_checkpoint, EVAL_TABLES/FIGURES/METRICS) and real_lenses.smk.
#   snakemake evaluate_fit --configfile config/quick.yaml
from astrorim.evaluate.fit_rows import FitSettings, examples_to_fit  # noqa: E402
from astrorim.plan import shard_plan  # noqa: E402

FIT_SETTINGS = FitSettings.from_config(config.get("evaluation", {}).get("fit"))
# test shard ("<version>/shard-NNNNN") -> how many of its examples are fitted (only shards with some)
FIT_SHARDS = {
    f"{s.version}/shard-{s.shard_label}": n
    for s in shard_plan(config)
    if s.phase == "test"
    for n in [examples_to_fit(s.start_index, s.n, FIT_SETTINGS.max_per_version)]
    if n > 0
}
FIT_ROWS = f"{RESULTS}/fit/test"


rule fit_shard:
    input:
        shard=f"{DATA}/sims/test/{{version}}/test/shard-{{shard}}.h5",
        checkpoint=evaluation_checkpoint,
    output:
        rows=f"{FIT_ROWS}/{{version}}/shard-{{shard}}.csv",
    log:
        f"{LOGS}/fit/{{version}}/shard-{{shard}}.log",
    benchmark:
        f"{TIMINGS}/fit/{{version}}/shard-{{shard}}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: FIT_SETTINGS.threads
    resources:
        mem_mb=3000,
        # ~6.5 s per lens on one thread (docs/fit.md), with room for a loaded machine
        runtime=lambda wildcards, attempt: attempt
        * (10 + FIT_SHARDS[f"{wildcards.version}/shard-{wildcards.shard}"] // 3),
    params:
        n_examples=lambda wildcards: FIT_SHARDS[
            f"{wildcards.version}/shard-{wildcards.shard}"
        ],
        npix=config["npix"],
    script:
        "../../scripts/fit_shard.py"


rule evaluate_fit:
    input:
        rows=expand(f"{FIT_ROWS}/{{key}}.csv", key=sorted(FIT_SHARDS)),
        paper_table="resources/paper_table2.csv",
    output:
        per_example=f"{EVAL_METRICS}/fit_per_example.csv",
        table2=report(
            f"{EVAL_TABLES}/table2_fit.csv",
            caption="../report/table2_fit.rst",
            category="Evaluation",
            subcategory="AstroRIM + fit",
        ),
        table2_tex=f"{EVAL_TABLES}/table2_fit.tex",
        vs_paper=report(
            f"{EVAL_TABLES}/table2_fit_vs_paper.csv",
            caption="../report/table2_fit_vs_paper.rst",
            category="Evaluation",
            subcategory="AstroRIM + fit",
        ),
        recovery=report(
            f"{EVAL_TABLES}/parameter_recovery_fit.csv",
            caption="../report/parameter_recovery_fit.rst",
            category="Evaluation",
            subcategory="AstroRIM + fit",
        ),
        recovery_tex=f"{EVAL_TABLES}/parameter_recovery_fit.tex",
        summary=report(
            f"{EVAL_TABLES}/fit_summary.csv",
            caption="../report/fit_summary.rst",
            category="Evaluation",
            subcategory="AstroRIM + fit",
        ),
        summary_tex=f"{EVAL_TABLES}/fit_summary.tex",
        calibration=report(
            f"{EVAL_TABLES}/fit_calibration.csv",
            caption="../report/fit_calibration_table.rst",
            category="Evaluation",
            subcategory="AstroRIM + fit",
        ),
        recovery_figure=report(
            f"{EVAL_FIGURES}/fit_recovery.png",
            caption="../report/fit_recovery.rst",
            category="Evaluation",
            subcategory="AstroRIM + fit",
        ),
        calibration_figure=report(
            f"{EVAL_FIGURES}/fit_calibration.png",
            caption="../report/fit_calibration.rst",
            category="Evaluation",
            subcategory="AstroRIM + fit",
        ),
        metrics=f"{EVAL_METRICS}/fit.json",
    log:
        f"{LOGS}/fit/evaluate_fit.log",
    benchmark:
        f"{TIMINGS}/fit/evaluate_fit.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../../scripts/fit_report.py"


# Real lenses: the same fit on each catalogue lens (its cut-out PSF and noise map, the quasar images masked), and
# Table 1 with the fit's columns beside AstroRIM's and the lenstronomy reference's.  Needs real_lenses.smk.
#   snakemake table1_fit --configfile config/quick.yaml
rule real_lens_fit:
    input:
        catalogue=REAL_CATALOGUE,
        checkpoint=real_lens_checkpoint,
        reference=rules.real_lens_reference.output.json,
    output:
        json=f"{REAL}/{{lens}}/fit.json",
    log:
        f"{LOGS}/real_lenses/{{lens}}/fit.log",
    benchmark:
        f"{TIMINGS}/real_lenses/{{lens}}/fit.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=lambda wildcards, attempt: 10 * attempt,
    script:
        "../../scripts/real_lens_fit.py"


rule table1_fit:
    input:
        table1=rules.table1.output.csv,
        fits=expand(f"{REAL}/{{lens}}/fit.json", lens=config["real_lenses"]["lenses"]),
    output:
        csv=report(
            f"{RESULTS}/tables/table1_fit.csv",
            caption="../report/table1_fit.rst",
            category="Real lenses",
            subcategory="Table 1",
        ),
        tex=f"{RESULTS}/tables/table1_fit.tex",
    log:
        f"{LOGS}/real_lenses/table1_fit.log",
    benchmark:
        f"{TIMINGS}/real_lenses/table1_fit.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../../scripts/real_table1_fit.py"
