# One train job per seed group of a (dataset, model, method, epsilon) cell (execution.seeds_per_job; by
# default every seed of the cell): it loads the data once, pays the imports and the noise calibration once,
# and writes the same per-seed run folders as one job per seed would (dpfair.pipeline.runner.train_runs).
for group in SEED_GROUPS:

    rule:
        name:
            group.rule_name("train")
        input:
            data=rules.prepare_dataset.output.data,
            samples=rules.prepare_dataset.output.samples,
            meta=rules.prepare_dataset.output.meta,
        output:
            **group_outputs(group, RUN_DIR, TRAIN_FILES),
        log:
            job_log("train", group.label),
        benchmark:
            job_benchmark("train", group.label)
        conda:
            "../../environment.yml"
        threads: 1
        resources:
            gpu=get_train_gpus,
            gpu_mem_mb=get_train_gpu_mem_mb,
        params:
            training=get_training_config,
            device=config["device"],
            seeds=group.seeds_of,
            park=f"results/partial/train/{CELL_STEM}",
        script:
            "../scripts/train.py"
