# Parallax zero-point: Lindegren et al. (2021) for 5/6-parameter solutions plus the paper's term.


rule zero_point:
    input:
        R("gaia/gaia_source.h5"),
    output:
        R("gaia/parallax.h5"),
    params:
        extra=config["zero_point"]["extra_term_mas"],
    log:
        R("logs/zero_point.log"),
    benchmark:
        R("benchmarks/zero_point.tsv")
    conda:
        "../envs/data.yaml"
    shell:
        "{STARFM} zero-point --gaia-source {input} --extra-term {params.extra} --out {output} --log {log}"
