"""Rule script: pool the datasets' contrasts into findings.csv and export the leaderboard claims."""

from dpfair.logs import log_to_file

log_to_file(snakemake.log[0])

from dpfair.findings.stage import write_findings  # noqa: E402

write_findings(
    auroc_changes=snakemake.input.auroc_changes,
    gap_changes=snakemake.input.gap_changes,
    metrics=snakemake.input.metrics,
    metas=list(snakemake.input.meta),
    scores=list(snakemake.input.scores),
    settings=dict(snakemake.params.settings),
    evaluation=dict(snakemake.params.evaluation),
    benchmark=snakemake.params.benchmark,
    table=snakemake.output.table,
    claims=snakemake.output.claims,
)
