# Train the transformer foundation model (CUDA + mixed precision when present).


rule train:
    input:
        R("dataset.h5"),
    output:
        model=R("model/model.pt"),
        loss=report(R("model/training_log.csv"), category="Training"),
    params:
        settings=as_json(train_settings()),
        # kept across failed attempts (not an output): a retried job resumes from it
        checkpoint=lambda wildcards, output: os.path.join(os.path.dirname(output.model), "checkpoint.pt"),
    log:
        R("logs/train.log"),
    benchmark:
        R("benchmarks/train.tsv")
    conda:
        "../envs/ml.yaml"
    threads: config["train"]["threads"]
    resources:
        mem_mb=8000,
        runtime=2880,
    shell:
        "python -m starfm train --dataset {input} --settings {params.settings}"
        " --checkpoint {params.checkpoint} --loss-log {output.loss} --out {output.model} --log {log}"
