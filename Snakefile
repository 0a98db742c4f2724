# starfm: Gaia XP + APOGEE + DistMass -> transformer foundation model for red giants.
# The whole pipeline reads top to bottom in workflow/rules/*.smk; every rule calls one
# stage of the package (`python -m starfm <stage>`), so each stage runs without Snakemake.

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/sources.smk"
include: "workflow/rules/labels.smk"
include: "workflow/rules/gaia.smk"
include: "workflow/rules/zero_point.smk"
include: "workflow/rules/dust.smk"
include: "workflow/rules/assemble.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/baseline.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/figures.smk"


rule all:
    input:
        R("dataset.h5"),
        R("metrics.json"),
        FIGURES,
        R("report/summary.html"),
    default_target: True
