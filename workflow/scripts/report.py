"""Rule script: plots and the self-contained HTML report."""

from dpfair.logs import log_to_file

log_to_file(snakemake.log[0])

from dpfair.report import render_report  # noqa: E402

render_report(
    metrics=snakemake.input.metrics,
    subgroups=snakemake.input.subgroups,
    dataset_meta=snakemake.input.meta,
    benchmark=snakemake.params.benchmark,
    output=snakemake.output.html,
    privacy_cards=snakemake.input.cards,
    gap_changes=snakemake.input.gap_changes,
    reliability=snakemake.input.reliability,
)
