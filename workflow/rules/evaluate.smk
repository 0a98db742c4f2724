# Metrics of both models on the held-out test split (and against truth where known), per input
# setting of starfm.input_settings (settings.<name> in metrics.json, settings/<name> in predictions.h5).


rule evaluate:
    input:
        dataset=R("dataset.h5"),
        model=R("model/model.pt"),
        baseline=R("baseline/xgboost.json"),
    output:
        metrics=report(R("metrics.json"), category="Evaluation"),
        predictions=R("evaluation/predictions.h5"),
    params:
        settings=as_json(config["evaluate"]),
    log:
        R("logs/evaluate.log"),
    benchmark:
        R("benchmarks/evaluate.tsv")
    conda:
        "../envs/ml.yaml"
    shell:
        "python -m starfm evaluate --dataset {input.dataset} --model {input.model}"
        " --baseline {input.baseline} --out {output.metrics}"
        " --predictions {output.predictions} --settings {params.settings} --log {log}"
