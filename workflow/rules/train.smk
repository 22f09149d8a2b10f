rule train:
    input:
        data=rules.prepare_dataset.output.data,
        samples=rules.prepare_dataset.output.samples,
        meta=rules.prepare_dataset.output.meta,
    output:
        model=f"{RUN_DIR}/model.pt",
        scores=f"{RUN_DIR}/scores.csv",
        record=f"{RUN_DIR}/run.json",
        card=f"{RUN_DIR}/privacy_card.json",
    log:
        f"results/logs/train/{RUN_STEM}.log",
    benchmark:
        f"results/benchmarks/train/{RUN_STEM}.tsv"
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        gpu=get_train_gpus,
        gpu_mem_mb=get_train_gpu_mem_mb,
    params:
        training=get_training_config,
        device=config["device"],
    script:
        "../scripts/train.py"
