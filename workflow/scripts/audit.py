"""Rule script: every configured attack on every run of one (dataset, model, method, epsilon) cell."""

from dpfair.logs import log_to_file

log_to_file(snakemake.log[0])

from pathlib import Path  # noqa: E402

from dpfair.audit.registry import NEEDS  # noqa: E402
from dpfair.audit.stage import audit_cell  # noqa: E402

inputs = snakemake.input
runs = [
    {"scores": s, "record": r, "card": c}
    for s, r, c in zip(inputs["scores.csv"], inputs["run.json"], inputs["privacy_card.json"])
]
# the audit_train files of the reference seeds (folders seed-<k>), by the need each file holds
trained_paths = [Path(p) for p in inputs["trained"]]
trained = {
    name: {int(p.parent.name.removeprefix("seed-")): str(p) for p in trained_paths if p.name == need.file}
    for name, need in NEEDS.items()
}
audit_cell(
    runs=runs,
    meta=inputs.meta,
    settings=snakemake.params.settings,
    intersections=snakemake.params.intersections,
    trained=trained,
    method=snakemake.wildcards.method,
    outputs={"table": snakemake.output.table, "roc": snakemake.output.roc},
)
