rule prepare_dataset:
    input:
        # editing a dataset module re-prepares that dataset and everything downstream (its params
        # are a rerun trigger as params of this rule)
        module=get_dataset_module_file,
    output:
        data=f"{PREPARED_DIR}/data.pt",
        samples=f"{PREPARED_DIR}/samples.csv",
        meta=f"{PREPARED_DIR}/dataset.json",
    log:
        "results/logs/prepare_dataset/{dataset}.log",
    benchmark:
        "results/benchmarks/prepare_dataset/{dataset}.tsv"
    conda:
        "../../environment.yml"
    params:
        settings=get_prepare_settings,
    script:
        "../scripts/prepare_dataset.py"
