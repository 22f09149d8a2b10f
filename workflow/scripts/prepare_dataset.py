"""Rule script: prepare one dataset (load, validate, split, encode) into the artifact training reads."""

from dpfair.logs import log_to_file, to_terminal

log_to_file(snakemake.log[0])

from dpfair.data.prepare import prepare_dataset, save_prepared  # noqa: E402

prepared = prepare_dataset(name=snakemake.wildcards.dataset, **snakemake.params.settings)
save_prepared(prepared, data=snakemake.output.data, samples=snakemake.output.samples, meta=snakemake.output.meta)
# leak, coding and group-size warnings: in the log already, and on the terminal, where they are seen
for warning in prepared.meta["warnings"]:
    to_terminal(f"warning: {warning}")
