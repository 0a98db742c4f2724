# Dust Monte Carlo: ln E(B-V) median and spread over parallax samples, Combined19 map.


rule dust:
    input:
        unpack(lambda wildcards: dust_map_inputs()),
        allstar=allstar_file(),
        gaia_source=R("gaia/gaia_source.h5"),
        parallax=R("gaia/parallax.h5"),
    output:
        R("dust/extinction.h5"),
    params:
        dust_map=dust_map_arg,
        settings=as_json(config["dust"]),
    log:
        R("logs/dust.log"),
    benchmark:
        R("benchmarks/dust.tsv")
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=8000,
        runtime=120,
    shell:
        "python -m starfm dust --allstar {input.allstar} --gaia-source {input.gaia_source}"
        " --parallax {input.parallax} {params.dust_map} --settings {params.settings}"
        " --out {output} --log {log}"
