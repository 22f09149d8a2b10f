"""Rule script: test-set metrics of one run (AUROC with CI, per-subgroup AUROC, gaps)."""

from dpfair.logs import log_to_file

log_to_file(snakemake.log[0])

from dpfair.runner import evaluate_run  # noqa: E402

evaluate_run(
    scores=snakemake.input.scores,
    record=snakemake.input.record,
    meta=snakemake.input.meta,
    settings=snakemake.params.evaluation,
    metrics_out=snakemake.output.metrics,
    subgroups_out=snakemake.output.subgroups,
)
