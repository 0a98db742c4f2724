# allStar + DistMass -> one row per Gaia source_id with its labels (no cuts here).


rule labels:
    input:
        allstar=allstar_file(),
        distmass=distmass_file(),
    output:
        R("catalogue/labels.h5"),
    params:
        settings=as_json(config["apogee"]),
    log:
        R("logs/labels.log"),
    benchmark:
        R("benchmarks/labels.tsv")
    conda:
        "../envs/data.yaml"
    shell:
        "python -m starfm labels --allstar {input.allstar} --distmass {input.distmass}"
        " --settings {params.settings} --out {output} --log {log}"
