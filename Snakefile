# astrorim: the AstroRIM study as a Snakemake workflow.
#   snakemake --cores 16 --resources gpu=1                      # paper scale (config/config.yaml)
#   snakemake --cores 2 --configfile config/quick.yaml          # the quick study
#   snakemake --report report.html --configfile config/quick.yaml   # its figures and tables in one HTML file
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

min_version("8.0")


# `--configfile` would be deep-merged into config/config.yaml, silently filling keys a smaller configuration
# leaves out with paper-scale values: read the default only when no configuration is given.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


# astrorim.config's own check first: snakemake's validate() would dump the whole configuration on an error;
# this names the key, the file, and the keys or type allowed there, in at most five lines.
sys.path.insert(0, str(Path(workflow.basedir) / "src"))
from astrorim.config import ConfigError, validate_config  # noqa: E402

try:
    validate_config(
        config,
        source=", ".join(map(str, workflow.overwrite_configfiles))
        or "config/config.yaml",
    )
except ConfigError as exc:
    raise WorkflowError(str(exc)) from None
validate(config, "config/schema.yaml")  # fills the schema's defaults


# `snakemake --report report.html --configfile config/quick.yaml`: every figure and table of the study, with the
# captions in workflow/report/ (rules flag their outputs with report()).
report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"


wildcard_constraints:
    phase="|".join(PHASES),
    version="v[1-6]",
    split="train|val|test",
    shard=r"\d{5}",
    lens=r"[A-Za-z0-9+-]+",


include: "workflow/rules/simulate.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/real_lenses.smk"
include: "workflow/rules/fit.smk"
include: "workflow/rules/baseline.smk"
include: "workflow/rules/headline.smk"
include: "workflow/rules/studies.smk"
include: "workflow/rules/docs.smk"


rule all:
    default_target: True
    input:
        manifest_paths(),
        rules.train_all.input,
        rules.evaluate.output,
        rules.evaluate_fit.output if FIT_SETTINGS.enabled else [],
        rules.table1.output,
        rules.table1_fit.output if FIT_SETTINGS.enabled else [],
        rules.baseline_all.input,
        rules.headline_evaluation.output,
        rules.headline_fit.output if FIT_SETTINGS.enabled else [],
        rules.headline_real_lenses.output,
        rules.headline_vae.output,
        rules.headline_comparison.output,
