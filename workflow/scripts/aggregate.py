"""Rule script: stack every run's metrics and subgroup rows into the summary tables."""

from dpfair.logs import log_to_file

log_to_file(snakemake.log[0])

from dpfair.summary import concat_csvs  # noqa: E402

concat_csvs(snakemake.input.metrics, snakemake.output.metrics)
concat_csvs(snakemake.input.subgroups, snakemake.output.subgroups)
