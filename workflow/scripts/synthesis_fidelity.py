"""Rule script: the synthetic releases' marginals and group shares against the real training rows."""

from dpfair.logs import log_to_file

log_to_file(snakemake.log[0])

import functools  # noqa: E402

import numpy as np  # noqa: E402
from dpfair.synthesis.fidelity import fidelity_rows, fidelity_table  # noqa: E402
from dpfair.synthesis.release import SYNTH_DIR, read_plan, release_files  # noqa: E402


@functools.cache
def real(dataset):
    folder = SYNTH_DIR.format(dataset=dataset)
    return read_plan(f"{folder}/plan.json")["domain"], np.load(f"{folder}/train_codes.npz")["codes"]


rows = []
for run in snakemake.params.runs:
    domain, codes = real(run["dataset"])
    synthetic = np.load(release_files(**run)["codes"])["codes"]
    rows += [{**run, **row} for row in fidelity_rows(domain, codes, synthetic)]
fidelity_table(rows).to_csv(snakemake.output.table, index=False)
