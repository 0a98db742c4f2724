# Data sources. Mock mode: one seeded stage writes every file in the real formats.
# Real mode: allStar and DistMass are downloaded from the SAS (unless given as local
# paths); the Gaia archive and the Combined19 map are reached by the stages that use them.

# the mode-specific rules (their run times enter the report through SOURCE_BENCHMARKS)
SOURCE_RULES = {"mock_survey", "download_apogee"}


rule mock_survey:
    output:
        allstar=R(f"mock/apogee/{ALLSTAR_NAME}"),
        distmass=R(f"mock/apogee/{DISTMASS_NAME}"),
        archive=R("mock/gaia_archive/manifest.json"),
        dust_map=R("mock/dust/combined19/combine19.h5"),
        truth=R("mock/truth.h5"),
    params:
        settings=as_json(config["mock"]),
        out_dir=lambda wildcards, output: os.path.dirname(output.truth),
    log:
        R("logs/mock_survey.log"),
    benchmark:
        R("benchmarks/mock_survey.tsv")
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=8000,
        runtime=60,
    shell:
        "python -m starfm mock-survey --settings {params.settings} --out-dir {params.out_dir}"
        " --log {log}"


rule download_apogee:
    output:
        R("download/{name}"),
    wildcard_constraints:
        name=f"{ALLSTAR_NAME}|{DISTMASS_NAME}",
    params:
        url=lambda w: config["apogee"]["allstar_url"] if w.name == ALLSTAR_NAME else config["apogee"]["distmass_url"],
    log:
        R("logs/download_{name}.log"),
    benchmark:
        R("benchmarks/download_{name}.tsv")
    conda:
        "../envs/data.yaml"
    resources:
        runtime=240,
    shell:
        "python -m starfm download-apogee --url {params.url} --out {output} --log {log}"
