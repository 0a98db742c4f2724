# Catalogue at scale (not in `all`): one job per XP file, then one merged catalogue.
#   snakemake predict_catalogue --config predict='{xp_files: ["XpContinuousMeanSpectrum_*.csv.gz"]}'


rule predict_file:
    input:
        unpack(predict_side_inputs),
        xp=lambda wildcards: predict_xp_files()[wildcards.name],
        model=predict_model(),
    output:
        R("predict/parts/{name}.h5"),
    params:
        side=predict_side_args,
        settings=predict_settings(),
    log:
        R("logs/predict/{name}.log"),
    benchmark:
        R("benchmarks/predict/{name}.tsv")
    conda:
        "../envs/predict.yaml"
    shell:
        "python -m starfm predict --model {input.model} --xp {input.xp} {params.side}"
        " --out {output} --settings {params.settings} --log {log}"


rule predict_catalogue:
    input:
        lambda wildcards: expand(R("predict/parts/{name}.h5"), name=predict_xp_files()),
    output:
        R(config["predict"]["catalogue"]),
    log:
        R("logs/predict/merge.log"),
    conda:
        "../envs/predict.yaml"
    shell:
        "python -m starfm predict-merge --parts {input} --out {output} --log {log}"
