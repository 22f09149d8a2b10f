# The speed benchmark (dpfair.training.speed): in a benchmark's grid only when it asks for it (speed.enabled,
# default off: the report's input, get_speed_table); `make bench` asks for results/speed.csv by name.
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
