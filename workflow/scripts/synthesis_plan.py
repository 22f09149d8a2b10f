"""Rule script: a dataset's training rows as codes of its public domain, and each ε's synthesis budget."""

from dpfair.logs import log_to_file

log_to_file(snakemake.log[0])

from dpfair.data.prepare import load_prepared  # noqa: E402
from dpfair.synthesis.release import plan_synthesis  # noqa: E402

prepared = load_prepared(data=snakemake.input.data, samples=snakemake.input.samples, meta=snakemake.input.meta)
plan_synthesis(
    prepared,
    epsilons=snakemake.params.epsilons,
    n_bins=snakemake.params.n_bins,
    table=snakemake.output.table,
    plan=snakemake.output.plan,
)
