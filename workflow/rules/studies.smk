# The paper-003 research studies (docs/baseline-findings.md): why the baseline's MAP misses phi at high S/N.
# Each committed file under results/studies/ is the target of one rule here, made by a program in studies/ with
# the arguments recorded below, on the VAE and the mocks of the configuration the table files it under:
#   snakemake --cores 2 results/studies/baseline_map_phi_starts_system1.json --configfile config/cpu_small.yaml
#   snakemake --cores 1 study_phi_bias_summary          # any configuration: reads the committed fits only
#   snakemake --cores 2 studies --configfile config/cpu_small_vae16_450.yaml   # every study of one configuration
# The fits take minutes to an hour each on one CPU thread (the prior studies over an hour), and a VAE trained
# again by this code is not bit-identical to the one a committed file used (docs/baseline-findings.md says which
# digits move); the phi-bias summary is a pure function of the committed fits.  Needs common.smk and baseline.smk.
import os

RUN = config["run_name"]
STUDIES = "results/studies"
STUDY_SCRIPTS = "../../studies"
# The configuration file this run was given, as the programs record it (relative to the repository).
STUDY_CONFIG = (
    os.path.relpath(workflow.overwrite_configfiles[0], workflow.basedir)
    if workflow.overwrite_configfiles
    else "config/config.yaml"
)
TRUTH_START = "--schedule 3000:0.05 --truth-start 1500:0.02"


# studies/baseline_map_convergence.py, one high-S/N MAP per file: name -> arguments, per configuration.
MAP_CONVERGENCE = {
    "cpu_small": {
        "baseline_map_convergence_vae150": f"--system system1 {TRUTH_START}",
        "baseline_map_convergence_vae150_polish": f"--system system1 {TRUTH_START} --polish 500 --truth-polish 500",
        "baseline_map_convergence_vae150_control": f"--system system1 {TRUTH_START} --well-specified",
        "baseline_map_convergence_vae150_control_polish": f"--system system1 {TRUTH_START} --well-specified "
        "--polish 200 --truth-polish 200",
        **{
            f"baseline_map_phi_starts_{s}": f"--system {s} {TRUTH_START} --truth-polish 500 "
            + " ".join(
                f"--phi-start {phi}" for phi in (-1.2, -0.8, -0.4, 0.4, 0.8, 1.2)
            )
            for s in ("system1", "system2")
        },
        **{
            f"baseline_map_seen_source_{s}": f"--system {s} {TRUTH_START} --truth-polish 500 --seen-source"
            for s in ("system1", "system2")
        },
        # the misfit scan ran on cpu_small's VAE trained again (test ELBO 10,529; its training.json is copied
        # beside the fits by study_misfit_vae_training)
        **{
            f"baseline_map_misfit/{s}_f{f}": f"--system {s} {TRUTH_START} --polish 200 --truth-polish 500 "
            f"--misfit-fraction {f}"
            for s in ("system1", "system2")
            for f in ("0", "0.25", "0.5", "0.75", "1")
        },
    },
    "cpu_small_vae16_450": {
        **{
            f"baseline_map_convergence_vae16_450_{s}": f"--system {s} {TRUTH_START} --truth-polish 500"
            for s in ("system1", "system2")
        },
        **{
            f"baseline_map_convergence_vae16_450_rerun_{s}": f"--system {s} {TRUTH_START} --only prior-centre"
            for s in ("system1", "system2")
        },
        **{
            f"baseline_map_convergence_vae16_450_pinned_shear_{s}": f"--system {s} {TRUTH_START} "
            "--truth-polish 500 --pin-shear"
            for s in ("system1", "system2")
        },
    },
    "cpu_small_vae32_long": {
        f"baseline_map_convergence_vae32_long_{s}": f"--system {s} {TRUTH_START} --truth-polish 500"
        for s in ("system1", "system2")
    },
    "cpu_small_vae64": {
        f"baseline_map_convergence_vae64_124ep_pinned_shear_{s}": f"--system {s} {TRUTH_START} "
        "--truth-polish 500 --pin-shear"
        for s in ("system1", "system2")
    },
}.get(RUN, {})

# studies/baseline_prior_study.py: the width-64 prior trained within a time budget (the paper's 450 epochs take
# ~7 h of this CPU), then fitted; it trains into <results>/baseline/vae/ as baseline_train_vae would.
PRIOR_STUDIES = {
    "cpu_small_vae64": {
        "prior_study_vae64_cpu": "--deadline-s 4500",  # 43 epochs on the 2-core machine
        "prior_study_vae64_cpu_124ep": "--deadline-s 8100",  # 124 epochs
    },
}.get(RUN, {})
# Fits of a prior-study VAE: they need that study's training, not baseline_train_vae's 450 epochs.
VAE_FROM_PRIOR_STUDY = {
    f"baseline_map_convergence_vae64_124ep_pinned_shear_{s}": f"{STUDIES}/prior_study_vae64_cpu_124ep"
    for s in ("system1", "system2")
}

# studies/baseline_source_prior_fidelity.py: how well each VAE draws the mock sources.  A VAE of another
# configuration (LABEL=results/<run>/...) is read as it is: make it first with that configuration.
SOURCE_PRIOR_FIDELITY = {
    "cpu_small": {
        "baseline_map_misfit/source_prior_fidelity": f"--vae w16_150ep_retrained={BL_VAE}",
    },
    "cpu_small_vae16_450": {
        "baseline_source_prior_fidelity_vae16_450": "--config config/cpu_small.yaml "
        f"--vae w16_150ep=results/cpu_small/baseline/vae/vae.pt --vae w16_450ep={BL_VAE}",
    },
    "cpu_small_vae32_long": {
        "baseline_source_prior_fidelity_vae32_long": "--config config/cpu_small.yaml "
        f"--vae w16_150ep=results/cpu_small/baseline/vae/vae.pt --vae w32_120ep={BL_VAE}",
    },
}.get(RUN, {})

# studies/baseline_nuts_chain.py: 500-sample chains at high S/N from the workflow's MAP point, per configuration
# (the file-name tag of its results).
NUTS_CHAIN_TAG = {"cpu_small": "", "cpu_small_vae16_450": "_vae16_450"}


if MAP_CONVERGENCE:

    rule study_map_convergence:
        input:
            vae=lambda wildcards: VAE_FROM_PRIOR_STUDY.get(wildcards.study, BL_VAE),
            mocks=expand(f"{BASELINE}/mocks/{{system}}.npz", system=BL_SYSTEMS),
        output:
            f"{STUDIES}/{{study}}.json",
        log:
            f"{LOGS}/studies/{{study}}.log",
        benchmark:
            f"{TIMINGS}/studies/{{study}}.tsv"
        wildcard_constraints:
            study=study_names(MAP_CONVERGENCE),
        conda:
            "../../envs/pyro.yaml"
        threads: 1
        resources:
            mem_mb=3000,
            runtime=lambda wildcards, attempt: 180 * attempt,
        params:
            script=f"{STUDY_SCRIPTS}/baseline_map_convergence.py",
            config=STUDY_CONFIG,
            args=lambda wildcards: MAP_CONVERGENCE[wildcards.study],
        shell:
            "python {params.script} --config {params.config} {params.args} --threads {threads} "
            "--out {output} > {log} 2>&1"


if SOURCE_PRIOR_FIDELITY:

    rule study_source_prior_fidelity:
        input:
            vae=BL_VAE,
            mocks=expand(f"{BASELINE}/mocks/{{system}}.npz", system=BL_SYSTEMS),
        output:
            f"{STUDIES}/{{study}}.json",
        log:
            f"{LOGS}/studies/{{study}}.log",
        benchmark:
            f"{TIMINGS}/studies/{{study}}.tsv"
        wildcard_constraints:
            study=study_names(SOURCE_PRIOR_FIDELITY),
        conda:
            "../../envs/pyro.yaml"
        threads: 2
        resources:
            mem_mb=3000,
            runtime=lambda wildcards, attempt: 60 * attempt,
        params:
            script=f"{STUDY_SCRIPTS}/baseline_source_prior_fidelity.py",
            config=STUDY_CONFIG,
            # --config first: an entry's own --config (the mocks it names) comes later and wins
            args=lambda wildcards: SOURCE_PRIOR_FIDELITY[wildcards.study],
        shell:
            "python {params.script} --config {params.config} {params.args} --threads {threads} "
            "--out {output} > {log} 2>&1"


if RUN == "cpu_small":

    rule study_misfit_vae_training:
        input:
            f"{BASELINE}/vae/training.json",
        output:
            f"{STUDIES}/baseline_map_misfit/vae_training.json",
        log:
            f"{LOGS}/studies/baseline_map_misfit/vae_training.log",
        benchmark:
            f"{TIMINGS}/studies/baseline_map_misfit/vae_training.tsv"
        conda:
            "../../envs/pyro.yaml"
        threads: 1
        resources:
            mem_mb=200,
            runtime=5,
        shell:
            "cp {input} {output} 2> {log}"


if RUN in NUTS_CHAIN_TAG:

    rule study_nuts_chain:
        input:
            vae=BL_VAE,
            mock=f"{BASELINE}/mocks/{{system}}.npz",
            map=f"{BASELINE}/map/{{system}}_high.npz",
        output:
            json=f"{STUDIES}/baseline_nuts_chain{NUTS_CHAIN_TAG[RUN]}_{{system}}.json",
            samples=f"{BASELINE}/nuts_chain/{{system}}_high.npz",
        log:
            f"{LOGS}/studies/nuts_chain_{{system}}.log",
        benchmark:
            f"{TIMINGS}/studies/nuts_chain_{{system}}.tsv"
        wildcard_constraints:
            system="[A-Za-z0-9]+",
        conda:
            "../../envs/pyro.yaml"
        threads: 1
        resources:
            mem_mb=3000,
            runtime=lambda wildcards, attempt: 120 * attempt,
        params:
            script=f"{STUDY_SCRIPTS}/baseline_nuts_chain.py",
            config=STUDY_CONFIG,
        shell:
            "python {params.script} --config {params.config} --system {wildcards.system} --noise high "
            "--warmup 100 --samples 500 --max-tree-depth 6 --threads {threads} --out {output.json} "
            "--samples-out {output.samples} > {log} 2>&1"


if PRIOR_STUDIES:

    rule study_prior_study:
        input:
            data=f"{DATA}/baseline/vae_data.h5",
            mocks=expand(f"{BASELINE}/mocks/{{system}}.npz", system=BL_SYSTEMS),
        output:
            directory(f"{STUDIES}/{{study}}"),
        log:
            f"{LOGS}/studies/{{study}}.log",
        benchmark:
            f"{TIMINGS}/studies/{{study}}.tsv"
        wildcard_constraints:
            study=study_names(PRIOR_STUDIES),
        conda:
            "../../envs/pyro.yaml"
        threads: 2
        resources:
            mem_mb=8000,
            runtime=lambda wildcards, attempt: 180 * attempt,
        params:
            script=f"{STUDY_SCRIPTS}/baseline_prior_study.py",
            config=STUDY_CONFIG,
            mocks=lambda wildcards, input: os.path.dirname(input.mocks[0]),
            args=lambda wildcards: PRIOR_STUDIES[wildcards.study],
        shell:
            "python {params.script} run --config {params.config} --data {input.data} "
            "--mocks-from {params.mocks} --threads 1 --train-threads {threads} --fit-device cpu "
            "{params.args} --resumable --quiet --out-dir {output} > {log} 2>&1"


# The phi error of every source prior in one table and two figures: reads the committed fits (the script's
# MEASUREMENTS and MISFIT_SCAN) and their configurations, fits nothing; seconds.
rule study_phi_bias_summary:
    input:
        script=PHI_BIAS_SCRIPT,
        fits=phi_bias_fits,
    output:
        csv=f"{STUDIES}/baseline_phi_bias.csv",
        png=f"{STUDIES}/baseline_phi_bias.png",
        misfit_png=f"{STUDIES}/baseline_phi_bias_misfit.png",
    log:
        f"{LOGS}/studies/phi_bias_summary.log",
    benchmark:
        f"{TIMINGS}/studies/phi_bias_summary.tsv"
    conda:
        "../../envs/pyro.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    shell:
        "python {input.script} --out-csv {output.csv} --out-png {output.png} "
        "--out-misfit-png {output.misfit_png} > {log} 2>&1"


# Every study of this configuration (none for most).
rule studies:
    input:
        expand(
            f"{STUDIES}/{{study}}.json",
            study=[*MAP_CONVERGENCE, *SOURCE_PRIOR_FIDELITY],
        ),
        expand(f"{STUDIES}/{{study}}", study=PRIOR_STUDIES),
        expand(
            f"{STUDIES}/baseline_nuts_chain{NUTS_CHAIN_TAG.get(RUN, '')}_{{system}}.json",
            system=BL_SYSTEMS if RUN in NUTS_CHAIN_TAG else [],
        ),
        [f"{STUDIES}/baseline_map_misfit/vae_training.json"]
        if RUN == "cpu_small"
        else [],
        rules.study_phi_bias_summary.output,
