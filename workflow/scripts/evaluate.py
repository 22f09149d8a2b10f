"""Rule script: test-set utility and fairness with intervals of the runs of one seed group (one process)."""

from dpfair.logs import log_to_file

log_to_file(snakemake.log[0])

from dpfair.pipeline.evaluation import evaluate_runs  # noqa: E402
from dpfair.pipeline.outcome import RUN_TABLES  # noqa: E402

evaluate_runs(
    runs=[
        {
            "scores": snakemake.input[f"scores_{i}"],
            "record": snakemake.input[f"record_{i}"],
            "outputs": {name: snakemake.output[f"{name}_{i}"] for name in RUN_TABLES},
        }
        for i in range(len(snakemake.params.seeds))
    ],
    meta=snakemake.input.meta,
    settings=snakemake.params.evaluation,
)
