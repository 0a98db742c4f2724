# The paper's figures (Zhang et al. 2026 numbering): one rule per figure, generated from the one
# list of figures, src/starfm/figures/registry.py (pure data, loaded here by path). Each job
# writes <name>.png/.pdf, a JSON of its numbers and its report caption: the template
# workflow/report/<name>.rst rendered with those numbers (the report shows the rendered one).
# Why: Snakemake 9 renders a caption as Jinja2 with `snakemake` (input, output, params,
# wildcards, config) but cannot read a file's content from it, and a caption path is fixed per
# rule (no wildcards); a caption that is an output of its own job, read when the report is built,
# is what lets it quote the run's numbers.
import importlib.util

_registry_spec = importlib.util.spec_from_file_location(
    "starfm_figure_registry", os.path.join(workflow.basedir, "src", "starfm", "figures", "registry.py"))
FIGURE_REGISTRY = importlib.util.module_from_spec(_registry_spec)
_registry_spec.loader.exec_module(FIGURE_REGISTRY)
FIGURE_NAMES = FIGURE_REGISTRY.FIGURE_NAMES
if MODE == "library":  # real stars without mass, parallax or truth: the figures that apply
    FIGURE_NAMES = [n for n in FIGURE_NAMES if n in FIGURE_REGISTRY.LIBRARY_FIGURES]
FIGURE_INPUT_FILES = {"dataset": R("dataset.h5"), "model": R("model/model.pt"),
                      "predictions": R("evaluation/predictions.h5")}
FIGURES = [R(f"figures/{name}.png") for name in FIGURE_NAMES]


for _name, _entry in FIGURE_REGISTRY.FIGURES.items():
    if _name not in FIGURE_NAMES:
        continue

    rule:
        name:
            f"figure_{_name}"
        input:
            caption_template=os.path.join(workflow.basedir, "workflow", "report", f"{_name}.rst"),
            **{kind: FIGURE_INPUT_FILES[kind] for kind in _entry["inputs"]},
        output:
            png=report(R(f"figures/{_name}.png"), category="Figures",
                       caption=os.path.abspath(R(f"figures/{_name}.rst"))),
            pdf=R(f"figures/{_name}.pdf"),
            numbers=R(f"figures/{_name}.json"),
            caption=R(f"figures/{_name}.rst"),
            extra=[R(path) for path in _entry.get("extra_outputs", [])],
        params:
            figure=_name,
            inputs=lambda w, input: " ".join(f"--{kind} {input[kind]}" for kind in FIGURE_INPUT_FILES
                                             if kind in input.keys()),
            extra=lambda w, output: " ".join(f"--extra-output {p}" for p in output.extra),
            settings=as_json(config.get("figures", {}).get(_name, {})),
        log:
            R(f"logs/figures/{_name}.log"),
        benchmark:
            R(f"benchmarks/figures/{_name}.tsv")
        conda:
            "../envs/plots.yaml"
        shell:
            "python -m starfm figures --figure {params.figure} {params.inputs}"
            " --png {output.png} --pdf {output.pdf} --numbers {output.numbers}"
            " --caption-template {input.caption_template} --caption {output.caption}"
            " {params.extra} --settings {params.settings} --log {log}"


# The report's summary page: metrics of every input setting, the configuration, the run times.
# The run times are those of every rule defined so far that has a benchmark file of its own (no
# wildcards): a new stage's rule joins the table by having a `benchmark:`. The source rules are
# mode-specific and come from SOURCE_BENCHMARKS (common.smk); the figures' are listed per figure.
_FIGURE_RULES = {f"figure_{name}" for name in FIGURE_NAMES}
STAGE_BENCHMARKS = SOURCE_BENCHMARKS + [
    str(_rule.benchmark) for _rule in workflow.rules
    if _rule.benchmark is not None and not _rule.has_wildcards()
    and _rule.name not in SOURCE_RULES | _FIGURE_RULES | TABLE_STAGES_NOT_RUN]


rule report_summary:
    input:
        metrics=R("metrics.json"),
        benchmarks=STAGE_BENCHMARKS + [R(f"benchmarks/figures/{name}.tsv") for name in FIGURE_NAMES],
        numbers=[R(f"figures/{name}.json") for name in FIGURE_NAMES],
    output:
        report(R("report/summary.html"), category="Summary", caption="../report/summary.rst"),
    params:
        config=as_json(config),
    log:
        R("logs/report_summary.log"),
    conda:
        "../envs/plots.yaml"
    shell:
        "python -m starfm report-tables --metrics {input.metrics} --benchmark {input.benchmarks}"
        " --numbers {input.numbers} --out {output} --settings {params.config} --log {log}"
