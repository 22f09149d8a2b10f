"""Rule script: the speed benchmark of every (dataset, model) cell, one process, all cores."""

from dpfair.logs import log_to_file

log_to_file(snakemake.log[0])

import torch  # noqa: E402
from dpfair.training.speed import benchmark_cells  # noqa: E402

torch.set_num_threads(snakemake.threads)
benchmark_cells(
    cells=snakemake.params.cells,
    data=snakemake.input.data,
    meta=snakemake.input.meta,
    settings=snakemake.params.speed,
    device=snakemake.params.device,
    output=snakemake.output.table,
)
