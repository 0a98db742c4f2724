# Gaia archive queries for every APOGEE source_id, in batches cached on disk: a rerun
# resumes where the last one stopped. Read only the allStar ids, never a cut.


rule gaia_source:
    input:
        unpack(lambda wildcards: archive_inputs()),
        allstar=allstar_file(),
    output:
        R("gaia/gaia_source.h5"),
    params:
        archive=archive_args,
        cache=cache_dir("gaia_source"),
        settings=as_json(config["gaia"]),
    log:
        R("logs/gaia_source.log"),
    benchmark:
        R("benchmarks/gaia_source.tsv")
    conda:
        "../envs/data.yaml"
    resources:
        runtime=600,
    shell:
        "python -m starfm gaia-source --allstar {input.allstar} {params.archive}"
        " --settings {params.settings} --cache-dir {params.cache} --out {output} --log {log}"


rule gaia_xp:
    input:
        unpack(lambda wildcards: archive_inputs()),
        allstar=allstar_file(),
    output:
        xp=R("gaia/xp_continuous.h5"),
        missing=R("gaia/xp_missing_source_ids.txt"),
    params:
        archive=archive_args,
        cache=cache_dir("xp_continuous"),
        settings=as_json(config["gaia"]),
    log:
        R("logs/gaia_xp.log"),
    benchmark:
        R("benchmarks/gaia_xp.tsv")
    conda:
        "../envs/data.yaml"
    resources:
        runtime=1440,
    shell:
        "python -m starfm gaia-xp --allstar {input.allstar} {params.archive}"
        " --settings {params.settings} --cache-dir {params.cache} --out {output.xp}"
        " --missing {output.missing} --log {log}"
