# Train the transformer foundation model (CUDA + mixed precision when present).


rule train:
    input:
        R("dataset.h5"),
    output:
        model=R("model/model.pt"),
        loss=report(R("model/training_log.csv"), category="Training"),
    params:
        size=config["model"]["size"],
        epochs=config["train"]["epochs"],
        batch=config["train"]["batch_size"],
        lr=config["train"]["lr"],
        seed=config["train"]["seed"],
        device=config["train"]["device"],
        warmup=config["train"]["warmup_epochs"],
        clip=config["train"]["grad_clip"],
        spectra=config["train"]["spectra_context_fraction"],
        checkpoint=R("model/checkpoint.pt"),
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
        "{STARFM} train --dataset {input} --size {params.size} --epochs {params.epochs}"
        " --batch-size {params.batch} --lr {params.lr} --seed {params.seed} --device {params.device}"
        " --warmup-epochs {params.warmup} --grad-clip {params.clip}"
        " --spectra-context-fraction {params.spectra}"
        " --threads {threads} --checkpoint {params.checkpoint} --loss-log {output.loss} --out {output.model} --log {log}"
