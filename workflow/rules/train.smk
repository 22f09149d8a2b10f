rule train:
    input:
        data=rules.prepare_dataset.output.data,
        samples=rules.prepare_dataset.output.samples,
        meta=rules.prepare_dataset.output.meta,
    output:
        model=RUN_DIR + "/model.pt",
        scores=RUN_DIR + "/scores.csv",
        record=RUN_DIR + "/run.json",
        card=RUN_DIR + "/privacy_card.json",
    params:
        training=get_training_config,
        device=config["device"],
    threads: 1
    resources:
        gpu=get_train_gpus,
    log:
        "results/logs/train/" + RUN_STEM + ".log",
    benchmark:
        "results/benchmarks/train/" + RUN_STEM + ".tsv"
    script:
        "../scripts/train.py"
