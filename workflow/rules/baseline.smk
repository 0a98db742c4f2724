# XGBoost baseline: one regressor per label for each XGBoost input setting of starfm.input_settings
# (standard = bp0-29, rp0-29, J-H, J-K, BP-RP; + pseudo-luminosity; + ln E(B-V)), all in one file.


rule baseline:
    input:
        R("dataset.h5"),
    output:
        R("baseline/xgboost.json"),
    params:
        n=config["baseline"]["n_estimators"],
        seed=config["baseline"]["seed"],
    log:
        R("logs/baseline.log"),
    benchmark:
        R("benchmarks/baseline.tsv")
    conda:
        "../envs/ml.yaml"
    threads: 2
    shell:
        "{STARFM} baseline --dataset {input} --n-estimators {params.n} --seed {params.seed}"
        " --threads {threads} --out {output} --log {log}"
