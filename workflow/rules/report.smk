rule report:
    input:
        metrics=rules.aggregate.output.metrics,
        subgroups=rules.aggregate.output.subgroups,
        gap_changes=rules.aggregate.output.gap_changes,
        reliability=rules.aggregate.output.reliability,
        meta=get_dataset_meta(),
        cards=get_run_outputs("privacy_card.json"),
    output:
        html="report/index.html",
    params:
        benchmark=get_report_settings(),
    log:
        "results/logs/report.log",
    benchmark:
        "results/benchmarks/report.tsv"
    script:
        "../scripts/report.py"
