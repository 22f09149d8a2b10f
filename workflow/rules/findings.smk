# The review's findings across datasets (docs/findings.md): on when the benchmark says findings: {enabled: true}.
if FINDINGS:

    rule findings:
        input:
            auroc_changes=rules.aggregate.output.auroc_changes,
            gap_changes=rules.aggregate.output.gap_changes,
            metrics=rules.aggregate.output.metrics,
            meta=get_dataset_meta(),
            # the epsilon = inf runs' validation rows orient finding 3's gap changes
            scores=get_reference_scores(),
        output:
            table="results/summary/findings.csv",
            claims="results/summary/leaderboard_claims.yaml",
        log:
            "results/logs/findings.log",
        benchmark:
            "results/benchmarks/findings.tsv"
        conda:
            "../../environment.yml"
        params:
            settings=FINDINGS,
            evaluation=config["evaluation"],
            benchmark=config["name"],
        script:
            "../scripts/findings.py"
