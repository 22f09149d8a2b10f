"""Rule script: each fairness mitigation against dpsgd at the same epsilon (dpfair.tables.method_comparison)."""

from dpfair.logs import log_to_file

log_to_file(snakemake.log[0])

from dpfair.tables.method_comparison import compare_methods  # noqa: E402
from dpfair.tables.summary import concat_csvs, read_summary  # noqa: E402

settings = snakemake.params.evaluation
table, groups = compare_methods(
    records=list(snakemake.input.records),
    scores=list(snakemake.input.scores),
    gaps=read_summary(snakemake.input.gaps),
    replicates=concat_csvs(snakemake.input.replicates),
    attributes=snakemake.params.attributes,
    n_boot=settings.get("n_bootstrap", 1000),
    bootstrap_seed=settings.get("bootstrap_seed", 0),
    min_group_size=settings.get("min_group_size", 30),
    level=settings.get("ci_level", 0.95),
    margin=settings.get("equivalence_margin", 0.03),
)
table.to_csv(snakemake.output.table, index=False)
groups.to_csv(snakemake.output.groups, index=False)
