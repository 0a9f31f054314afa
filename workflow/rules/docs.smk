# The documentation's rule graph (docs/architecture.md): Snakemake's --rulegraph of `all` (config/config.yaml) joined
# with that of `studies` (config/cpu_small.yaml), drawn by Graphviz (scripts/rulegraph.py).  Run it after adding or renaming a rule, and commit both files:
#   snakemake --cores 1 rulegraph        # -> docs/rulegraph.dot, docs/rulegraph.png (tests/test_workflow.py checks)


rule rulegraph:
    input:
        snakefile="Snakefile",
        rules=sorted(glob.glob("workflow/rules/*.smk")),
    output:
        dot="docs/rulegraph.dot",
        png="docs/rulegraph.png",
    log:
        f"{LOGS}/docs/rulegraph.log",
    benchmark:
        f"{TIMINGS}/docs/rulegraph.tsv"
    conda:
        "../../envs/docs.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../../scripts/rulegraph.py"
