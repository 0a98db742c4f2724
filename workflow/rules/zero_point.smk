# Parallax zero-point: Lindegren et al. (2021) for 5/6-parameter solutions plus the paper's term.


rule zero_point:
    input:
        R("gaia/gaia_source.h5"),
    output:
        R("gaia/parallax.h5"),
    params:
        settings=as_json(config["zero_point"]),
    log:
        R("logs/zero_point.log"),
    benchmark:
        R("benchmarks/zero_point.tsv")
    conda:
        "../envs/data.yaml"
    shell:
        "python -m starfm zero-point --gaia-source {input} --settings {params.settings}"
        " --out {output} --log {log}"
