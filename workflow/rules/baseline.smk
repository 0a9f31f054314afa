# The paper-003 baseline (VAE source prior + EPL lens in Pyro; MAP and NUTS), driven by config["baseline"].
#   snakemake --cores 2 baseline_all --configfile config/quick.yaml      # the miniature version (< 4 min)
# Outputs under {RESULTS}/baseline/, the VAE data file under {DATA}/baseline/.  Needs common.smk.
from astrorim.plan import shard_plan  # noqa: E402

BASELINE = f"{RESULTS}/baseline"
BL_CONFIG = config.get("baseline", {})
BL_SYSTEMS = list(BL_CONFIG.get("systems", {}))
BL_NOISES = ["low", "med", "high"][
    : len(BL_CONFIG.get("noise_levels", [0.333, 0.1, 0.0333]))
]
BL_VAE = f"{BASELINE}/vae/vae.pt"
# baseline.vae.device other than cpu may put the VAE training on the GPU, so that job holds the gpu resource.
BL_VAE_GPUS = 0 if BL_CONFIG.get("vae", {}).get("device", "cpu") == "cpu" else 1


# Simulation shards whose sources train (initial/train), validate (initial/val) and test the VAE, and the
# held-out test shards on which the comparison runs both methods.
BL_SIM_VERSIONS = set(BL_CONFIG.get("vae_data", {}).get("sim_versions", []))
BL_SIM_SHARDS = {
    split: [
        f"{DATA}/{s.relative_path()}"
        for s in shard_plan(config)
        if (s.phase, s.split)
        == (("test", "test") if split == "test" else ("initial", split))
        and s.version in BL_SIM_VERSIONS
    ]
    for split in ("train", "val", "test")
}
BL_COMPARE_SHARDS = [
    f"{DATA}/{s.relative_path()}"
    for s in shard_plan(config)
    if s.phase == "test"
    and s.version in set(BL_CONFIG.get("compare", {}).get("versions", ["v1"]))
]


rule baseline_vae_data:
    input:
        train=BL_SIM_SHARDS["train"],
        val=BL_SIM_SHARDS["val"],
        test=BL_SIM_SHARDS["test"],
    output:
        f"{DATA}/baseline/vae_data.h5",
    log:
        f"{LOGS}/baseline/vae_data.log",
    benchmark:
        f"{TIMINGS}/baseline/vae_data.tsv"
    conda:
        "../../envs/pyro.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        settings={k: BL_CONFIG.get(k) for k in ("seed", "vae_data")},
    script:
        "../../scripts/baseline_vae_data.py"


rule baseline_train_vae:
    input:
        data=rules.baseline_vae_data.output[0],
    output:
        model=BL_VAE,
        history=f"{BASELINE}/vae/training.json",
        fig_elbo=report(
            f"{BASELINE}/vae/elbo.png",
            caption="../report/baseline_elbo.rst",
            category="Baseline",
            subcategory="VAE source prior",
        ),
        fig_recon=report(
            f"{BASELINE}/fig2_reconstructions.png",
            caption="../report/baseline_reconstructions.rst",
            category="Baseline",
            subcategory="VAE source prior",
        ),
        fig_rotation=report(
            f"{BASELINE}/fig3_rotation.png",
            caption="../report/baseline_rotation.rst",
            category="Baseline",
            subcategory="VAE source prior",
        ),
    log:
        f"{LOGS}/baseline/train_vae.log",
    benchmark:
        f"{TIMINGS}/baseline/train_vae.tsv"
    conda:
        "../../envs/pyro.yaml"
    threads: 2
    resources:
        gpu=BL_VAE_GPUS,
        mem_mb=8000,
        runtime=lambda wildcards, attempt: 24 * 60 * attempt,
    params:
        settings={k: BL_CONFIG.get(k) for k in ("seed", "vae")},
    script:
        "../../scripts/baseline_train_vae.py"


rule baseline_mocks:
    input:
        data=rules.baseline_vae_data.output[0],
    output:
        mocks=expand(f"{BASELINE}/mocks/{{system}}.npz", system=BL_SYSTEMS),
        table1=report(
            f"{BASELINE}/table1_snr.csv",
            caption="../report/baseline_table1_snr.rst",
            category="Baseline",
            subcategory="mocks",
        ),
    log:
        f"{LOGS}/baseline/mocks.log",
    benchmark:
        f"{TIMINGS}/baseline/mocks.tsv"
    conda:
        "../../envs/pyro.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        settings={
            k: BL_CONFIG.get(k) for k in ("seed", "lens", "noise_levels", "systems")
        },
    script:
        "../../scripts/baseline_mocks.py"


rule baseline_map:
    input:
        model=BL_VAE,
        mock=f"{BASELINE}/mocks/{{system}}.npz",
    output:
        npz=f"{BASELINE}/map/{{system}}_{{noise}}.npz",
        json=f"{BASELINE}/map/{{system}}_{{noise}}.json",
    log:
        f"{LOGS}/baseline/map/{{system}}_{{noise}}.log",
    benchmark:
        f"{TIMINGS}/baseline/map/{{system}}_{{noise}}.tsv"
    wildcard_constraints:
        system="[A-Za-z0-9]+",
        noise="low|med|high",
    conda:
        "../../envs/pyro.yaml"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=lambda wildcards, attempt: 120 * attempt,
    params:
        settings={k: BL_CONFIG.get(k) for k in ("seed", "map")},
    script:
        "../../scripts/baseline_map.py"


rule baseline_nuts:
    input:
        model=BL_VAE,
        mock=f"{BASELINE}/mocks/{{system}}.npz",
        map=f"{BASELINE}/map/{{system}}_{{noise}}.npz",
    output:
        npz=f"{BASELINE}/nuts/{{system}}_{{noise}}.npz",
        json=f"{BASELINE}/nuts/{{system}}_{{noise}}.json",
    log:
        f"{LOGS}/baseline/nuts/{{system}}_{{noise}}.log",
    benchmark:
        f"{TIMINGS}/baseline/nuts/{{system}}_{{noise}}.tsv"
    wildcard_constraints:
        system="[A-Za-z0-9]+",
        noise="low|med|high",
    conda:
        "../../envs/pyro.yaml"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=lambda wildcards, attempt: 24 * 60 * attempt,
    params:
        settings={k: BL_CONFIG.get(k) for k in ("seed", "nuts")},
    script:
        "../../scripts/baseline_nuts.py"


rule baseline_report:
    input:
        model=BL_VAE,
        mocks=expand(f"{BASELINE}/mocks/{{system}}.npz", system=BL_SYSTEMS),
        maps=expand(
            f"{BASELINE}/map/{{system}}_{{noise}}.npz",
            system=BL_SYSTEMS,
            noise=BL_NOISES,
        ),
        nuts=expand(
            f"{BASELINE}/nuts/{{system}}_{{noise}}.npz",
            system=BL_SYSTEMS,
            noise=BL_NOISES,
        ),
        nuts_json=expand(
            f"{BASELINE}/nuts/{{system}}_{{noise}}.json",
            system=BL_SYSTEMS,
            noise=BL_NOISES,
        ),
    output:
        fig_map=report(
            expand(f"{BASELINE}/map_{{system}}.png", system=BL_SYSTEMS),
            caption="../report/baseline_map.rst",
            category="Baseline",
            subcategory="MAP and NUTS",
        ),
        fig_post=report(
            expand(f"{BASELINE}/posterior_{{system}}.png", system=BL_SYSTEMS),
            caption="../report/baseline_posterior.rst",
            category="Baseline",
            subcategory="MAP and NUTS",
        ),
        map_csv=report(
            f"{BASELINE}/map_summary.csv",
            caption="../report/baseline_map_summary.rst",
            category="Baseline",
            subcategory="MAP and NUTS",
        ),
        posterior_csv=report(
            f"{BASELINE}/posterior_summary.csv",
            caption="../report/baseline_posterior_summary.rst",
            category="Baseline",
            subcategory="MAP and NUTS",
        ),
    log:
        f"{LOGS}/baseline/report.log",
    benchmark:
        f"{TIMINGS}/baseline/report.tsv"
    conda:
        "../../envs/pyro.yaml"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=20,
    params:
        systems=BL_SYSTEMS,
        noises=BL_NOISES,
    script:
        "../../scripts/baseline_report.py"


rule baseline_compare:
    input:
        model=BL_VAE,
        checkpoint=baseline_astrorim_checkpoint,
        shards=BL_COMPARE_SHARDS,
        mocks=expand(f"{BASELINE}/mocks/{{system}}.npz", system=BL_SYSTEMS),
        maps=expand(
            f"{BASELINE}/map/{{system}}_{{noise}}.npz",
            system=BL_SYSTEMS,
            noise=BL_NOISES,
        ),
        nuts=expand(
            f"{BASELINE}/nuts/{{system}}_{{noise}}.npz",
            system=BL_SYSTEMS,
            noise=BL_NOISES,
        ),
        nuts_json=expand(
            f"{BASELINE}/nuts/{{system}}_{{noise}}.json",
            system=BL_SYSTEMS,
            noise=BL_NOISES,
        ),
    output:
        table=report(
            f"{BASELINE}/comparison.csv",
            caption="../report/baseline_comparison_table.rst",
            category="Baseline",
            subcategory="comparison with AstroRIM",
        ),
        summary=report(
            f"{BASELINE}/comparison_summary.csv",
            caption="../report/baseline_comparison_summary.rst",
            category="Baseline",
            subcategory="comparison with AstroRIM",
        ),
        figure=report(
            f"{BASELINE}/comparison.png",
            caption="../report/baseline_comparison.rst",
            category="Baseline",
            subcategory="comparison with AstroRIM",
        ),
    log:
        f"{LOGS}/baseline/compare.log",
    benchmark:
        f"{TIMINGS}/baseline/compare.tsv"
    conda:
        "../../envs/pyro.yaml"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=lambda wildcards, attempt: 240 * attempt,
    params:
        systems=BL_SYSTEMS,
        noises=BL_NOISES,
        settings={k: BL_CONFIG.get(k) for k in ("seed", "lens", "map", "compare")},
    script:
        "../../scripts/baseline_compare.py"


rule baseline_all:
    input:
        rules.baseline_train_vae.output,
        rules.baseline_mocks.output,
        rules.baseline_report.output,
        rules.baseline_compare.output,
