# One train job per (dataset, model, method) and seed group (execution.epsilons_per_job, seeds_per_job; by
# default every ε and seed of it): it loads the data once, pays the imports once and each ε's noise calibration
# once, and writes the same per-run folders as one job per run would (dpfair.pipeline.runner.train_runs).
for job in JOB_GROUPS:

    rule:
        name:
            job.rule_name("train")
        input:
            data=rules.prepare_dataset.output.data,
            samples=rules.prepare_dataset.output.samples,
            meta=rules.prepare_dataset.output.meta,
            # a synthesis method's runs train on their DP synthetic releases (synthesis.smk); others on the real rows
            synthetic=get_synthetic_inputs(job),
            # training.init_weights: new public weights retrain the runs that start from them
            public_weights=get_public_weights,
        output:
            **group_outputs(job, RUN_DIR, TRAIN_FILES),
        log:
            job_log("train", job.label, stem=METHOD_STEM),
        benchmark:
            job_benchmark("train", job.label, stem=METHOD_STEM)
        wildcard_constraints:
            **job.epsilons.constraints(),
        conda:
            "../../environment.yml"
        threads: 1
        resources:
            gpu=get_train_gpus,
            gpu_mem_mb=get_train_gpu_mem_mb,
        params:
            training=get_training_config,
            device=config["device"],
            epsilons=job.epsilons_of,
            seeds=job.seeds_of,
            park=f"results/partial/train/{METHOD_STEM}",
        script:
            "../scripts/train.py"
