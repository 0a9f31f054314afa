# Headline numbers of each stage (a handful of flat keys per file) for `dvc metrics show` (dvc.yaml): the
# stages' own metrics files hold hundreds of numbers.  Needs common.smk.
#   snakemake results/quick/metrics/headline_evaluation.json --configfile config/quick.yaml
HEADLINE = f"{RESULTS}/metrics"


rule headline_evaluation:
    input:
        f"{RESULTS}/metrics/evaluate.json",
    output:
        f"{HEADLINE}/headline_evaluation.json",
    params:
        kind="evaluation",
    log:
        f"{LOGS}/headline/evaluation.log",
    benchmark:
        f"{BENCH}/headline/evaluation.tsv"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    conda:
        "../../envs/torch.yaml"
    script:
        "../../scripts/headline.py"


rule headline_real_lenses:
    input:
        f"{RESULTS}/tables/table1.csv",
    output:
        f"{HEADLINE}/headline_real_lenses.json",
    params:
        kind="real_lenses",
    log:
        f"{LOGS}/headline/real_lenses.log",
    benchmark:
        f"{BENCH}/headline/real_lenses.tsv"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    conda:
        "../../envs/torch.yaml"
    script:
        "../../scripts/headline.py"


rule headline_vae:
    input:
        f"{RESULTS}/baseline/vae/training.json",
    output:
        f"{HEADLINE}/headline_vae.json",
    params:
        kind="vae",
    log:
        f"{LOGS}/headline/vae.log",
    benchmark:
        f"{BENCH}/headline/vae.tsv"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    conda:
        "../../envs/pyro.yaml"
    script:
        "../../scripts/headline.py"


rule headline_comparison:
    input:
        f"{RESULTS}/baseline/comparison_summary.csv",
    output:
        f"{HEADLINE}/headline_comparison.json",
    params:
        kind="comparison",
    log:
        f"{LOGS}/headline/comparison.log",
    benchmark:
        f"{BENCH}/headline/comparison.tsv"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    conda:
        "../../envs/pyro.yaml"
    script:
        "../../scripts/headline.py"
