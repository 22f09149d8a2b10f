"""Rule script: stack every run's tables into the summary tables, derive the gap changes and the compute cost.

metrics.csv's ``mia_*`` columns and subgroups.csv's ``mia_auroc`` come from the audit stage's loss attack.
"""

from dpfair.logs import log_to_file

log_to_file(snakemake.log[0])

from dpfair.tables.compute_cost import compute_cost  # noqa: E402
from dpfair.tables.summary import statistics_options, summarise  # noqa: E402

summarise(
    inputs={
        name: list(snakemake.input[name]) for name in ("metrics", "subgroups", "gaps", "replicates", "reliability")
    },
    outputs={
        name: snakemake.output[name]
        for name in ("metrics", "subgroups", "gaps", "gap_changes", "auroc_changes", "reliability")
    },
    level=snakemake.params.level,
    audit=snakemake.input.audit,
    statistics=statistics_options(snakemake.config),
)
cells, ratios = compute_cost(benchmarks=snakemake.input.train_benchmarks, records=snakemake.input.records)
cells.to_csv(snakemake.output.compute_cost, index=False)
ratios.to_csv(snakemake.output.compute_ratios, index=False)
