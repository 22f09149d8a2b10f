rule evaluate:
    input:
        scores=rules.train.output.scores,
        record=rules.train.output.record,
        meta=rules.prepare_dataset.output.meta,
    output:
        metrics=RUN_DIR + "/metrics.csv",
        subgroups=RUN_DIR + "/subgroups.csv",
    params:
        evaluation=config["evaluation"],
    log:
        "results/logs/evaluate/{dataset}/{model}/eps-{epsilon}/seed-{seed}.log",
    benchmark:
        "results/benchmarks/evaluate/{dataset}/{model}/eps-{epsilon}/seed-{seed}.tsv"
    script:
        "../scripts/evaluate.py"


rule aggregate:
    input:
        metrics=get_run_outputs("metrics.csv"),
        subgroups=get_run_outputs("subgroups.csv"),
    output:
        metrics="results/summary/metrics.csv",
        subgroups="results/summary/subgroups.csv",
    log:
        "results/logs/aggregate.log",
    benchmark:
        "results/benchmarks/aggregate.tsv"
    script:
        "../scripts/aggregate.py"
