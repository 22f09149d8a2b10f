rule report:
    input:
        metrics=rules.aggregate.output.metrics,
        subgroups=rules.aggregate.output.subgroups,
        gaps=rules.aggregate.output.gaps,
        gap_changes=rules.aggregate.output.gap_changes,
        auroc_changes=rules.aggregate.output.auroc_changes,
        reliability=rules.aggregate.output.reliability,
        compute_cost=rules.aggregate.output.compute_cost,
        compute_ratios=rules.aggregate.output.compute_ratios,
        speed=get_speed_table(),
        meta=get_dataset_meta(),
        cards=get_run_outputs("privacy_card.json"),
        method_comparison=rules.compare_methods.output.table,
        method_comparison_groups=rules.compare_methods.output.groups,
        audit=rules.aggregate_audit.output.table,
        audit_roc=rules.aggregate_audit.output.roc,
        synthesis_fidelity=get_synthesis_fidelity(),
        findings=get_findings_table(),
    output:
        html=report("report/index.html", caption="../report/index.rst", category="dpfair report"),
    log:
        "results/logs/report.log",
    benchmark:
        "results/benchmarks/report.tsv"
    conda:
        "../../environment.yml"
    params:
        benchmark=get_report_settings(),
        # the whole validated definition: the methods section prints it with its sha256
        definition=BENCHMARK.config,
        runs=get_run_entries(),
    script:
        "../scripts/report.py"
