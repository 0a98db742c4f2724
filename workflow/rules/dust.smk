# Dust Monte Carlo: ln E(B-V) median and spread over parallax samples, Combined19 map.


rule dust:
    input:
        allstar=allstar_file(),
        gaia_source=R("gaia/gaia_source.h5"),
        parallax=R("gaia/parallax.h5"),
        dust_map=dust_map_inputs(),
    output:
        R("dust/extinction.h5"),
    params:
        dust_dir=dust_dir(),
        n=config["dust"]["n_samples"],
        seed=config["dust"]["seed"],
        far=config["dust"]["negative_parallax_distance_kpc"],
        ruwe=config["dust"]["good_ruwe_max"],
        plx_err=config["dust"]["good_parallax_error_max"],
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
        "{STARFM} dust --allstar {input.allstar} --gaia-source {input.gaia_source}"
        " --parallax {input.parallax} --dust-dir {params.dust_dir} --n-samples {params.n}"
        " --seed {params.seed} --negative-parallax-distance {params.far}"
        " --good-ruwe-max {params.ruwe} --good-parallax-error-max {params.plx_err}"
        " --out {output} --log {log}"
