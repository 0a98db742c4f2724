# The paper's figures (Zhang et al. 2026 numbering), each with a caption in the report.

FIGURE_NAMES = ["fig01_training_set", "fig02_mass_age_mh", "fig04_spectra_to_labels",
                "fig06_physical_validation", "fig12_bp_rp_inpainting",
                "fig14_mass_age_self_consistency", "fig16_extinction_curve"]
FIGURES = [R(f"figures/{name}.png") for name in FIGURE_NAMES]


rule figures:
    input:
        dataset=R("dataset.h5"),
        model=R("model/model.pt"),
        predictions=R("evaluation/predictions.h5"),
    output:
        [report(f, category="Figures", caption=f"../report/{os.path.basename(f)[:-4]}.rst") for f in FIGURES],
    params:
        out_dir=lambda wildcards, output: os.path.dirname(output[0]),
    log:
        R("logs/figures.log"),
    benchmark:
        R("benchmarks/figures.tsv")
    conda:
        "../envs/plots.yaml"
    shell:
        "python -m starfm figures --dataset {input.dataset} --model {input.model}"
        " --predictions {input.predictions} --out-dir {params.out_dir} --log {log}"
