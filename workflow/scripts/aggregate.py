"""Rule script: stack every run's tables into the summary tables and derive the gap changes."""

from dpfair.logs import log_to_file

log_to_file(snakemake.log[0])

from dpfair.summary import summarise  # noqa: E402

summarise(
    inputs={name: list(snakemake.input[name]) for name in ("metrics", "subgroups", "gaps", "replicates", "reliability")},
    outputs={name: snakemake.output[name] for name in ("metrics", "subgroups", "gaps", "gap_changes", "reliability")},
    level=snakemake.params.level,
)
