# starfm: Gaia XP + APOGEE + DistMass -> transformer foundation model for red giants.
# The whole pipeline reads top to bottom in workflow/rules/*.smk; every rule calls one
# stage of the package (`python -m starfm <stage>`), so each stage runs without Snakemake.

import os

from snakemake.utils import min_version, validate

min_version("9.0")

# Every job runs this checkout's package (`python -m starfm`), in the pip-installed environment
# or a per-rule conda one alike: jobs inherit the environment, local and on Slurm.
os.environ.update(
    PYTHONPATH=os.pathsep.join(p for p in (f"{workflow.basedir}/src", os.environ.get("PYTHONPATH")) if p)
)


# The shipped defaults, always; --configfile FILE merges FILE over them key by key
# (e.g. .test/config.yaml holds only what the tiny test run changes).
configfile: os.path.join(workflow.basedir, "config.yaml")


validate(config, "src/starfm/config.schema.yaml")


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
include: "workflow/rules/predict.smk"


rule all:
    input:
        R("dataset.h5"),
        R("metrics.json"),
        FIGURES,
        R("report/summary.html"),
    default_target: True
