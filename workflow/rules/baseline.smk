# XGBoost baseline: one regressor per label for each XGBoost input setting of starfm.input_settings
# (standard = bp0-29, rp0-29, J-H, J-K, BP-RP; + pseudo-luminosity; + ln E(B-V)), all in one file.


rule baseline:
    input:
        R("dataset.h5"),
    output:
        R("baseline/xgboost.json"),
    params:
        settings=as_json(config["baseline"]),
    log:
        R("logs/baseline.log"),
    benchmark:
        R("benchmarks/baseline.tsv")
    conda:
        "../envs/ml.yaml"
    threads: 2
    shell:
        "python -m starfm baseline --dataset {input} --settings {params.settings}"
        " --threads {threads} --out {output} --log {log}"
