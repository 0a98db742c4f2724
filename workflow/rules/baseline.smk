# XGBoost baseline: bp0-29, rp0-29, J-H, J-K, BP-RP -> one regressor per label.


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
