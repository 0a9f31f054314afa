# Headline numbers of each stage (a handful of flat keys per file) for `dvc metrics show` (dvc.yaml): the
# stages' own metrics files hold hundreds of numbers.  Needs common.smk.
#   snakemake results/quick/metrics/headline_evaluation.json --configfile config/quick.yaml
HEADLINE = f"{RESULTS}/metrics"


rule headline_evaluation:
    input:
        f"{RESULTS}/metrics/evaluate.json",
    output:
        f"{HEADLINE}/headline_evaluation.json",
    log:
        f"{LOGS}/headline/evaluation.log",
    benchmark:
        f"{TIMINGS}/headline/evaluation.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    params:
        kind="evaluation",
    script:
        "../../scripts/headline.py"


rule headline_fit:
    input:
        f"{RESULTS}/metrics/fit.json",
    output:
        f"{HEADLINE}/headline_fit.json",
    log:
        f"{LOGS}/headline/fit.log",
    benchmark:
        f"{TIMINGS}/headline/fit.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    params:
        kind="fit",
    script:
        "../../scripts/headline.py"


rule headline_real_lenses:
    input:
        f"{RESULTS}/tables/table1.csv",
    output:
        f"{HEADLINE}/headline_real_lenses.json",
    log:
        f"{LOGS}/headline/real_lenses.log",
    benchmark:
        f"{TIMINGS}/headline/real_lenses.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    params:
        kind="real_lenses",
    script:
        "../../scripts/headline.py"


rule headline_vae:
    input:
        f"{RESULTS}/baseline/vae/training.json",
    output:
        f"{HEADLINE}/headline_vae.json",
    log:
        f"{LOGS}/headline/vae.log",
    benchmark:
        f"{TIMINGS}/headline/vae.tsv"
    conda:
        "../../envs/pyro.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    params:
        kind="vae",
    script:
        "../../scripts/headline.py"


rule headline_comparison:
    input:
        f"{RESULTS}/baseline/comparison_summary.csv",
    output:
        f"{HEADLINE}/headline_comparison.json",
    log:
        f"{LOGS}/headline/comparison.log",
    benchmark:
        f"{TIMINGS}/headline/comparison.tsv"
    conda:
        "../../envs/pyro.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    params:
        kind="comparison",
    script:
        "../../scripts/headline.py"
