# Evaluation follows the train jobs: one job scores every run its train job trained.
for job in JOB_GROUPS:

    rule:
        name:
            job.rule_name("evaluate")
        input:
            **group_outputs(job, RUN_DIR, {"scores": "scores.csv", "record": "run.json"}),
            meta=rules.prepare_dataset.output.meta,
        output:
            **group_outputs(job, RUN_DIR, EVALUATION_FILES),
        log:
            job_log("evaluate", job.label, stem=METHOD_STEM),
        benchmark:
            job_benchmark("evaluate", job.label, stem=METHOD_STEM)
        wildcard_constraints:
            **job.epsilons.constraints(),
        conda:
            "../../environment.yml"
        params:
            evaluation=config["evaluation"],
            seeds=job.seeds_of,
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
        audit=rules.aggregate_audit.output.table,
    output:
        metrics=report("results/summary/metrics.csv", caption="../report/metrics.rst", category="Summary tables"),
        subgroups="results/summary/subgroups.csv",
        gaps="results/summary/gaps.csv",
        gap_changes=report(
            "results/summary/gap_changes.csv", caption="../report/gap_changes.rst", category="Summary tables"
        ),
        auroc_changes="results/summary/auroc_changes.csv",
        reliability="results/summary/reliability.csv",
        compute_cost="results/summary/compute_cost.csv",
        compute_ratios="results/summary/compute_ratios.csv",
    log:
        "results/logs/aggregate.log",
    benchmark:
        "results/benchmarks/aggregate.tsv"
    conda:
        "../../environment.yml"
    params:
        level=config["evaluation"]["ci_level"],
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
    log:
        "results/logs/compare_methods.log",
    benchmark:
        "results/benchmarks/compare_methods.tsv"
    conda:
        "../../environment.yml"
    params:
        attributes=get_comparison_attributes(),
        evaluation=config["evaluation"],
    script:
        "../scripts/compare_methods.py"
