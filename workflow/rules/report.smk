def get_optional_summary(name):
    """A summary table some rule of this workflow writes (e.g. the audit's), else nothing.

    An input function, so it looks at every rule once all .smk files are read, whatever their order.
    """

    def tables(wildcards):
        path = f"results/summary/{name}"
        return [path] if any(path in map(str, r.output) for r in workflow.rules) else []

    return tables


rule report:
    input:
        metrics=rules.aggregate.output.metrics,
        subgroups=rules.aggregate.output.subgroups,
        gaps=rules.aggregate.output.gaps,
        gap_changes=rules.aggregate.output.gap_changes,
        reliability=rules.aggregate.output.reliability,
        compute_cost=rules.aggregate.output.compute_cost,
        compute_ratios=rules.aggregate.output.compute_ratios,
        audit=get_optional_summary("audit.csv"),
        speed=get_speed_table(),
        meta=get_dataset_meta(),
        cards=get_run_outputs("privacy_card.json"),
    output:
        html="report/index.html",
    params:
        benchmark=get_report_settings(),
        # the whole validated definition: the methods section prints it with its sha256
        definition=BENCHMARK.config,
    log:
        "results/logs/report.log",
    benchmark:
        "results/benchmarks/report.tsv"
    script:
        "../scripts/report.py"
