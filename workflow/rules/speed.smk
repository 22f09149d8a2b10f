rule speed:
    input:
        data=expand(f"{PREPARED_DIR}/data.pt", dataset=BENCHMARK.datasets),
        meta=get_dataset_meta(),
    output:
        table=report("results/speed.csv", caption="../report/speed.rst", category="Speed of DP-SGD"),
    log:
        "results/logs/speed.log",
    benchmark:
        "results/benchmarks/speed.tsv"
    conda:
        "../../environment.yml"
    threads: get_speed_threads()
    resources:
        gpu=get_train_gpus,
    params:
        cells=get_speed_cells(),
        speed=config["speed"],
        device=config["device"],
    script:
        "../scripts/speed.py"
