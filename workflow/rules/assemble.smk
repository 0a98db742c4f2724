# Assembly: the only rule that reads the cuts. Changing a cut reruns this and what follows.


rule assemble:
    input:
        unpack(truth_inputs),
        labels=R("catalogue/labels.h5"),
        gaia_source=R("gaia/gaia_source.h5"),
        xp=R("gaia/xp_continuous.h5"),
        parallax=R("gaia/parallax.h5"),
        extinction=R("dust/extinction.h5"),
    output:
        R("dataset.h5"),
    params:
        settings=as_json({"cuts": config["cuts"], "split": config["split"]}),
        truth=truth_arg,
        require=require_labels_arg,
    log:
        R("logs/assemble.log"),
    benchmark:
        R("benchmarks/assemble.tsv")
    conda:
        "../envs/data.yaml"
    shell:
        "python -m starfm assemble --labels {input.labels} --gaia-source {input.gaia_source}"
        " --xp {input.xp} --parallax {input.parallax} --extinction {input.extinction}"
        " {params.truth} {params.require} --settings {params.settings} --out {output} --log {log}"
