# Real lenses (paper §4.1, Appendix B–C, Tables 1, 3–5, Figs 4–6): for each catalogue lens with data, a
# classical lenstronomy reference fit and the trained model's diagnostics; then Table 1 over all of them.
#   snakemake table1 --configfile config/quick.yaml
# The model is config `real_lenses.checkpoint` when set (e.g. the committed models/cpu-small/model.pt), else the
# run's finetuned best checkpoint.
REAL = f"{RESULTS}/real_lenses"
REAL_CATALOGUE = config["real_lenses"]["catalogue"]

real_lens_checkpoint = lambda wildcards: (
    config["real_lenses"].get("checkpoint") or f"{RESULTS}/models/finetune/best.pt"
)


rule real_lens_reference:
    input:
        catalogue=REAL_CATALOGUE,
    output:
        json=f"{REAL}/{{lens}}/reference_fit.json",
        png=report(
            f"{REAL}/{{lens}}/reference_fit.png",
            caption="../report/reference_fit.rst",
            category="Real lenses",
            subcategory="{lens}",
        ),
    log:
        f"{LOGS}/real_lenses/{{lens}}/reference.log",
    benchmark:
        f"{TIMINGS}/real_lenses/{{lens}}/reference.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=lambda wildcards, attempt: 20 * attempt,
    script:
        "../../scripts/real_reference.py"


rule real_lens_model:
    input:
        catalogue=REAL_CATALOGUE,
        checkpoint=real_lens_checkpoint,
        reference=rules.real_lens_reference.output.json,
    output:
        json=f"{REAL}/{{lens}}/diagnostics.json",
        table=report(
            f"{REAL}/{{lens}}/lens_table.csv",
            caption="../report/lens_table.rst",
            category="Real lenses",
            subcategory="{lens}",
        ),
        table_tex=f"{REAL}/{{lens}}/lens_table.tex",
        arrays=f"{REAL}/{{lens}}/arrays.npz",
        figure=report(
            f"{RESULTS}/figures/real_lenses/{{lens}}.png",
            caption="../report/real_lens.rst",
            category="Real lenses",
            subcategory="{lens}",
        ),
    log:
        f"{LOGS}/real_lenses/{{lens}}/model.log",
    benchmark:
        f"{TIMINGS}/real_lenses/{{lens}}/model.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=10,
    script:
        "../../scripts/real_lens.py"


rule table1:
    input:
        catalogue=REAL_CATALOGUE,
        diagnostics=expand(
            f"{REAL}/{{lens}}/diagnostics.json", lens=config["real_lenses"]["lenses"]
        ),
    output:
        csv=report(
            f"{RESULTS}/tables/table1.csv",
            caption="../report/table1.rst",
            category="Real lenses",
            subcategory="Table 1",
        ),
        tex=f"{RESULTS}/tables/table1.tex",
    log:
        f"{LOGS}/real_lenses/table1.log",
    benchmark:
        f"{TIMINGS}/real_lenses/table1.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../../scripts/real_table1.py"
