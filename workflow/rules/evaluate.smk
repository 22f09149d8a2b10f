rule evaluate:
    input:
        scores=rules.train.output.scores,
        record=rules.train.output.record,
        meta=rules.prepare_dataset.output.meta,
    output:
        metrics=RUN_DIR + "/metrics.csv",
        subgroups=RUN_DIR + "/subgroups.csv",
        gaps=RUN_DIR + "/gaps.csv",
        replicates=RUN_DIR + "/gap_replicates.csv.gz",
        reliability=RUN_DIR + "/reliability.csv",
    params:
        evaluation=config["evaluation"],
    log:
        "results/logs/evaluate/" + RUN_STEM + ".log",
    benchmark:
        "results/benchmarks/evaluate/" + RUN_STEM + ".tsv"
    script:
        "../scripts/evaluate.py"


rule aggregate:
    input:
        metrics=get_run_outputs("metrics.csv"),
        subgroups=get_run_outputs("subgroups.csv"),
        gaps=get_run_outputs("gaps.csv"),
        replicates=get_run_outputs("gap_replicates.csv.gz"),
        reliability=get_run_outputs("reliability.csv"),
        records=get_run_outputs("run.json"),
        train_benchmarks=get_run_benchmarks(),
    output:
        metrics="results/summary/metrics.csv",
        subgroups="results/summary/subgroups.csv",
        gaps="results/summary/gaps.csv",
        gap_changes="results/summary/gap_changes.csv",
        reliability="results/summary/reliability.csv",
        compute_cost="results/summary/compute_cost.csv",
        compute_ratios="results/summary/compute_ratios.csv",
    params:
        level=config["evaluation"]["ci_level"],
    log:
        "results/logs/aggregate.log",
    benchmark:
        "results/benchmarks/aggregate.tsv"
    script:
        "../scripts/aggregate.py"


rule compare_methods:
    input:
        records=get_run_outputs("run.json"),
        scores=get_run_outputs("scores.csv"),
        gaps=rules.aggregate.output.gaps,
        replicates=get_run_outputs("gap_replicates.csv.gz"),
    output:
        table="results/summary/method_comparison.csv",
        groups="results/summary/method_comparison_groups.csv",
    params:
        attributes=get_mitigation_attributes(),
        evaluation=config["evaluation"],
    log:
        "results/logs/compare_methods.log",
    benchmark:
        "results/benchmarks/compare_methods.tsv"
    script:
        "../scripts/compare_methods.py"
