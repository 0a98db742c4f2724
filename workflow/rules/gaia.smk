# Gaia archive queries for every APOGEE source_id, in batches cached on disk: a rerun
# resumes where the last one stopped. Read only the allStar ids, never a cut.

GAIA_ARGS = (
    f"--batch-size {config['gaia']['batch_size']} --max-retries {config['gaia']['max_retries']}"
    f" --backoff {config['gaia']['backoff_seconds']} --timeout {config['gaia']['timeout_seconds']}"
)


rule gaia_source:
    input:
        allstar=allstar_file(),
        archive=archive_inputs(),
    output:
        R("gaia/gaia_source.h5"),
    params:
        archive=archive_args(),
        cache=R("gaia/cache/gaia_source"),
    log:
        R("logs/gaia_source.log"),
    benchmark:
        R("benchmarks/gaia_source.tsv")
    conda:
        "../envs/data.yaml"
    resources:
        runtime=600,
    shell:
        "{STARFM} gaia-source --allstar {input.allstar} {params.archive} {GAIA_ARGS}"
        " --cache-dir {params.cache} --out {output} --log {log}"


rule gaia_xp:
    input:
        allstar=allstar_file(),
        archive=archive_inputs(),
    output:
        xp=R("gaia/xp_continuous.h5"),
        missing=R("gaia/xp_missing_source_ids.txt"),
    params:
        archive=archive_args(),
        cache=R("gaia/cache/xp_continuous"),
    log:
        R("logs/gaia_xp.log"),
    benchmark:
        R("benchmarks/gaia_xp.tsv")
    conda:
        "../envs/data.yaml"
    resources:
        runtime=1440,
    shell:
        "{STARFM} gaia-xp --allstar {input.allstar} {params.archive} {GAIA_ARGS}"
        " --cache-dir {params.cache} --out {output.xp} --missing {output.missing} --log {log}"
