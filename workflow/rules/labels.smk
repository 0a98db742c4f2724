# allStar + DistMass -> one row per Gaia source_id with its labels (no cuts here).


rule labels:
    input:
        allstar=allstar_file(),
        distmass=distmass_file(),
    output:
        R("catalogue/labels.h5"),
    params:
        columns=as_json(config["apogee"]["distmass_columns"]),
        age_unit=config["apogee"]["distmass_age_unit"],
    log:
        R("logs/labels.log"),
    benchmark:
        R("benchmarks/labels.tsv")
    conda:
        "../envs/data.yaml"
    shell:
        "{STARFM} labels --allstar {input.allstar} --distmass {input.distmass}"
        " --distmass-columns {params.columns} --age-unit {params.age_unit}"
        " --out {output} --log {log}"
