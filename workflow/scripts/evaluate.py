"""Rule script: test-set utility, fairness with intervals, and the membership-inference audit of one run."""

from dpfair.logs import log_to_file

log_to_file(snakemake.log[0])

from dpfair.pipeline.runner import evaluate_run  # noqa: E402

evaluate_run(
    scores=snakemake.input.scores,
    record=snakemake.input.record,
    meta=snakemake.input.meta,
    settings=snakemake.params.evaluation,
    outputs={name: snakemake.output[name] for name in ("metrics", "subgroups", "gaps", "replicates", "reliability")},
)
