"""What each cell of the grid cost to train: wall time and peak memory of its train jobs, and DP vs non-private.

The job numbers are Snakemake's ``benchmark:`` records of the train rule, so they cover the whole job (process
start-up and imports included); ``train_seconds`` from the run record covers the optimisation loop alone.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from dpfair.errors import DpfairError

KEYS = ["dataset", "model", "method", "epsilon"]
CELL_COLUMNS = [
    *KEYS,
    "n_seeds",
    "job_seconds_mean",
    "job_seconds_min",
    "job_seconds_max",
    "train_seconds_mean",
    "max_rss_mb_max",
    "clipping_backend",
    "device",
]
#: ratio column -> the cell column it divides (private cell / the same (dataset, model) at ε = ∞)
RATIOS = {
    "job_seconds_ratio": "job_seconds_mean",
    "train_seconds_ratio": "train_seconds_mean",
    "max_rss_ratio": "max_rss_mb_max",
}
RATIO_COLUMNS = [*KEYS, *RATIOS]
RUN_COLUMNS = [*KEYS, "seed", "job_seconds", "max_rss_mb", "train_seconds", "clipping_backend", "device"]


def read_benchmark(path) -> dict:
    r"""Wall seconds and peak RSS (MB) of one job from its Snakemake benchmark TSV.

    Snakemake writes ``NA`` for memory when the job ended before it was sampled; that stays NaN. A record
    with several rows (``repeat()``) gives the mean time and the largest peak.

    Example:
        >>> import io
        >>> read_benchmark(io.StringIO("s\th:m:s\tmax_rss\tmax_vms\n7.05\t0:00:07\t586.49\t991.99\n"))
        {'job_seconds': 7.05, 'max_rss_mb': 586.49}
        >>> read_benchmark(io.StringIO("s\th:m:s\tmax_rss\n0.01\t0:00:00\tNA\n"))
        {'job_seconds': 0.01, 'max_rss_mb': nan}
    """
    table = pd.read_csv(path, sep="\t")
    missing = {"s", "max_rss"} - set(table.columns)
    if missing or table.empty:
        raise DpfairError(
            f"{path}: not a Snakemake benchmark record (needs a row under columns 's' and 'max_rss'; "
            f"missing {sorted(missing)}, {len(table)} rows). Delete it and rerun the job to rewrite it."
        )
    rss = pd.to_numeric(table["max_rss"], errors="coerce")
    return {"job_seconds": float(table["s"].mean()), "max_rss_mb": float(rss.max()) if rss.notna().any() else math.nan}


def _run_id(path: Path) -> tuple[str, ...]:
    # <dataset>/<model>/<method>/eps-<e>/seed-<s>: the run folder of run.json and the name of its benchmark record alike
    return path.parts[-5:]


def compute_cost(*, benchmarks: Iterable, records: Iterable) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-cell cost table and DP/non-private ratios from train benchmark records and run records.

    ``benchmarks`` are ``…/train/<dataset>/<model>/<method>/eps-<e>/seed-<s>.tsv``; ``records`` the runs' ``run.json``
    (``…/<dataset>/<model>/<method>/eps-<e>/seed-<s>/run.json``), which give each run's keys and ``train_seconds``.
    Each record must have its benchmark and the other way round. Returns ``(cells, ratios)``: see
    :func:`cost_tables`.
    """
    by_run = {_run_id(Path(p).parent): json.loads(Path(p).read_text()) for p in records}
    rows, seen = [], set()
    for path in benchmarks:
        run_id = _run_id(Path(path).with_suffix(""))
        if run_id not in by_run:
            raise DpfairError(
                f"{path}: no run.json of run {'/'.join(run_id)} among the {len(by_run)} run records given"
            )
        seen.add(run_id)
        record = by_run[run_id]
        rows.append(
            {
                "dataset": record["dataset"],
                "model": record["model"],
                "method": record.get("method", "dpsgd"),
                "epsilon": float(record["epsilon"]),
                "seed": int(record["seed"]),
                **read_benchmark(path),
                # null where the run wrote NaN (jsonio), absent in records older than the key
                "train_seconds": math.nan if record.get("train_seconds") is None else float(record["train_seconds"]),
                "clipping_backend": record.get("clipping_backend"),
                "device": record.get("device"),
            }
        )
    if unmatched := sorted("/".join(r) for r in set(by_run) - seen):
        raise DpfairError(f"no benchmark record for runs {unmatched}; expected results/benchmarks/train/<run>.tsv")
    return cost_tables(pd.DataFrame(rows, columns=RUN_COLUMNS))


def _distinct(values: pd.Series) -> str:
    return ", ".join(sorted(set(values.dropna().astype(str))))


def cost_tables(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Aggregate one row per run into ``cells`` (per dataset, model, ε) and ``ratios`` (each private ε vs ε = ∞).

    Ratios are ratios of the cell means (of the peaks for memory). They are NaN where the (dataset, model)
    has no ε = ∞ cell or its value is missing or zero (a job too short for Snakemake to sample).

    Example:
        >>> runs = pd.DataFrame({"dataset": "d", "model": "mlp", "method": "dpsgd", "epsilon": [1.0, 1.0, float("inf")], "seed": [0, 1, 0],
        ...                      "job_seconds": [8.0, 10.0, 6.0], "max_rss_mb": [620.0, 630.0, 600.0],
        ...                      "train_seconds": [1.5, 1.7, 0.4], "clipping_backend": None, "device": "cpu"})
        >>> cells, ratios = cost_tables(runs)
        >>> cells["epsilon"].tolist(), cells["n_seeds"].tolist()
        ([1.0, inf], [2, 1])
        >>> cells[["job_seconds_mean", "max_rss_mb_max"]].values.tolist()
        [[9.0, 630.0], [6.0, 600.0]]
        >>> ratios[["epsilon", "job_seconds_ratio", "train_seconds_ratio", "max_rss_ratio"]].round(2).to_dict("records")
        [{'epsilon': 1.0, 'job_seconds_ratio': 1.5, 'train_seconds_ratio': 4.0, 'max_rss_ratio': 1.05}]
    """
    if runs.empty:
        return pd.DataFrame(columns=CELL_COLUMNS), pd.DataFrame(columns=RATIO_COLUMNS)
    cells = (
        runs.groupby(KEYS, sort=True)
        .agg(
            n_seeds=("seed", "nunique"),
            job_seconds_mean=("job_seconds", "mean"),
            job_seconds_min=("job_seconds", "min"),
            job_seconds_max=("job_seconds", "max"),
            train_seconds_mean=("train_seconds", "mean"),
            max_rss_mb_max=("max_rss_mb", "max"),
            clipping_backend=("clipping_backend", _distinct),
            device=("device", _distinct),
        )
        .reset_index()[CELL_COLUMNS]
    )
    nonprivate = np.isinf(cells["epsilon"])
    reference = cells[nonprivate][["dataset", "model", "method", *RATIOS.values()]]
    ratios = cells[~nonprivate].merge(reference, on=["dataset", "model", "method"], how="left", suffixes=("", "_ref"))
    for ratio, value in RATIOS.items():
        ref = ratios[f"{value}_ref"]
        ratios[ratio] = ratios[value] / ref.where(ref > 0)
    return cells, ratios[RATIO_COLUMNS].reset_index(drop=True)
