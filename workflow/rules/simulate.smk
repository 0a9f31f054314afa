# Simulated (source, observation) pairs: one job per shard, then a manifest per phase.


rule simulate:
    output:
        f"{DATA}/sims/{{phase}}/{{version}}/{{split}}/shard-{{shard}}.h5",
    log:
        f"{LOGS}/simulate/{{phase}}/{{version}}/{{split}}/shard-{{shard}}.log",
    benchmark:
        f"{TIMINGS}/simulate/{{phase}}/{{version}}/{{split}}/shard-{{shard}}.tsv"
    conda:
        "../../envs/sim.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=lambda wildcards, attempt: 30 * attempt,
    params:
        spec=shard_spec,
        npix=config["npix"],
        store_diagnostics=store_diagnostics,
    script:
        "../../scripts/simulate_shard.py"


rule manifest:
    input:
        phase_shards,
    output:
        report(
            f"{DATA}/sims/{{phase}}/manifest.csv",
            caption="../report/manifest.rst",
            category="Simulation",
            subcategory="{phase}",
        ),
    log:
        f"{LOGS}/manifest/{{phase}}.log",
    benchmark:
        f"{TIMINGS}/manifest/{{phase}}.tsv"
    conda:
        "../../envs/sim.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../../scripts/manifest.py"
