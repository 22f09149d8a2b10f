"""What each cell of the grid cost to train: wall time and peak memory of its train jobs, and DP vs non-private.

The job numbers are Snakemake's ``benchmark:`` records of the train jobs, so they cover the whole job (process
start-up and imports included); ``train_seconds`` from the run records covers the optimisation loops alone. A
job may train several seeds of a cell (``execution.seeds_per_job``) and several ε of a (dataset, model, method)
(``execution.epsilons_per_job``); its record's folder and name say which. A job of several ε cells is shared out
among them: each cell gets its runs' ``run_seconds`` (each run's own wall time in the job) and, per run, an
equal part of the job's time outside every run (start-up, imports, data loading), and counts that share of
a job.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from dpfair.errors import DpfairError
from dpfair.jobs import label_epsilons, label_seeds

KEYS = ["dataset", "model", "method", "epsilon"]
CELL_COLUMNS = [
    *KEYS,
    "n_seeds",
    "n_jobs",
    "job_share",
    "job_seconds",
    "train_seconds",
    "overhead_share",
    "job_seconds_per_run",
    "train_seconds_mean",
    "max_rss_mb_max",
    "clipping_backend",
    "device",
]
#: ratio column -> the cell column it divides (private cell / the same (dataset, model) at ε = ∞)
RATIOS = {
    "job_seconds_ratio": "job_seconds_per_run",
    "train_seconds_ratio": "train_seconds_mean",
    "max_rss_ratio": "max_rss_mb_max",
}
RATIO_COLUMNS = [*KEYS, *RATIOS]
JOB_COLUMNS = [
    *KEYS,
    "seeds",
    "share",
    "job",
    "job_seconds",
    "max_rss_mb",
    "train_seconds",
    "clipping_backend",
    "device",
]


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


def _job_runs(path: Path) -> list[tuple[str, ...]]:
    # …/train/<dataset>/<model>/<method>/<ε label>/<seed label>.tsv, the labels naming the job's ε and seeds
    # (dpfair.jobs): eps-3/seeds-0-1-2, eps-1_3_inf/seed-4
    method = path.parent.parts[-4:-1]
    try:
        epsilons, seeds = label_epsilons(path.parent.name), label_seeds(path.stem)
    except ValueError as exc:
        raise DpfairError(
            f"{path}: {exc}; expected results/benchmarks/train/<dataset>/<model>/<method>/<eps label>/<seed label>.tsv"
        ) from exc
    return [(*method, f"eps-{e}", f"seed-{s}") for e in epsilons for s in seeds]


def _shares(runs: list[tuple[str, ...]], by_run: dict, job_seconds: float) -> dict[str, float]:
    """Each ε cell's share of its job of ``job_seconds``.

    A cell gets its runs' own ``run_seconds``, plus the job's time outside every run (start-up, imports, data
    loading) in equal parts per run; records without ``run_seconds`` share the whole job equally per run.
    """
    cells = [r[3] for r in runs]
    seconds = [by_run[r].get("run_seconds") for r in runs]
    if any(not isinstance(t, (int, float)) or not math.isfinite(t) for t in seconds) or sum(seconds) <= 0:
        seconds = [0.0] * len(runs)  # records older than the key: all of the job is shared equally
    outside = max(job_seconds - sum(seconds), 0.0) / len(runs)
    parts = [t + outside for t in seconds]
    total = sum(parts) or 1.0
    shares: dict[str, float] = {}
    for cell, t in zip(cells, parts):
        shares[cell] = shares.get(cell, 0.0) + t / total
    return shares


def compute_cost(*, benchmarks: Iterable, records: Iterable) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-cell cost table and DP/non-private ratios from train jobs' benchmark records and the runs' records.

    ``benchmarks`` are ``…/train/<dataset>/<model>/<method>/<ε label>/<seed label>.tsv``, one per train job,
    whose labels (:class:`dpfair.jobs.JobGroup`: ``eps-1_3_inf`` or ``eps-3``; ``seeds-0-1-2`` or ``seed-3``) name
    the runs the job trained; ``records`` the runs' ``run.json``
    (``…/<dataset>/<model>/<method>/eps-<e>/seed-<s>/run.json``), which give each run's keys, ``train_seconds``
    and ``run_seconds``. Every run must be in exactly one job and every job's runs among the
    records. Returns ``(cells, ratios)``: see :func:`cost_tables`.
    """
    by_run = {Path(p).parent.parts[-5:]: json.loads(Path(p).read_text()) for p in records}
    rows, seen = [], set()
    for path in benchmarks:
        runs = _job_runs(Path(path))
        if missing := [r for r in runs if r not in by_run]:
            raise DpfairError(
                f"{path}: no run.json of runs {['/'.join(r) for r in missing]} among the {len(by_run)} run records given"
            )
        if twice := sorted("/".join(r) for r in set(runs) & seen):
            raise DpfairError(f"{path}: runs {twice} are in another job's record too")
        seen.update(runs)
        job = read_benchmark(path)
        for cell, share in _shares(runs, by_run, job["job_seconds"]).items():
            cell_runs = [r for r in runs if r[3] == cell]
            first = by_run[cell_runs[0]]
            # null where a run wrote NaN (jsonio), absent in records older than the key
            loops = [by_run[r].get("train_seconds") for r in cell_runs]
            rows.append(
                {
                    "dataset": first["dataset"],
                    "model": first["model"],
                    "method": first.get("method", "dpsgd"),
                    "epsilon": float(first["epsilon"]),
                    "seeds": len(cell_runs),
                    "share": share,
                    "job_seconds": job["job_seconds"] * share,
                    "max_rss_mb": job["max_rss_mb"],  # the job's peak: its cells ran in one process
                    "job": str(path),
                    "train_seconds": math.nan if any(t is None for t in loops) else float(sum(loops)),
                    "clipping_backend": _distinct(pd.Series([by_run[r].get("clipping_backend") for r in cell_runs])),
                    "device": _distinct(pd.Series([by_run[r].get("device") for r in cell_runs])),
                }
            )
    if unmatched := sorted("/".join(r) for r in set(by_run) - seen):
        raise DpfairError(
            f"no benchmark record for runs {unmatched}; expected "
            "results/benchmarks/train/<dataset>/<model>/<method>/<eps label>/<seed label>.tsv"
        )
    return cost_tables(pd.DataFrame(rows, columns=JOB_COLUMNS))


def grid_overhead(cells: pd.DataFrame) -> dict:
    """Totals over the grid's train jobs: job seconds, training-loop seconds and the share spent outside the loop.

    Cells whose runs lack ``train_seconds`` are left out of all three (``n_jobs`` counts the jobs included).

    Example:
        >>> grid_overhead(pd.DataFrame({"job_seconds": [10.0, 30.0], "train_seconds": [8.0, 26.0], "n_jobs": [1, 1]}))
        {'n_jobs': 2, 'job_seconds': 40.0, 'train_seconds': 34.0, 'overhead_share': 0.15}
    """
    # only cells with both figures: a cell without loop times would count as all overhead
    both = cells[cells["job_seconds"].notna() & cells["train_seconds"].notna()]
    job, loop = float(both["job_seconds"].sum()), float(both["train_seconds"].sum())
    return {
        # a job shared by several ε cells counts once: the cells' shares of it add up to one
        "n_jobs": int(round(both["job_share"].sum())) if "job_share" in both else int(both["n_jobs"].sum()),
        "job_seconds": job,
        "train_seconds": loop,
        "overhead_share": round(1 - loop / job, 6) if job > 0 else math.nan,
    }


def _distinct(values: pd.Series) -> str:
    return ", ".join(sorted(set(values.dropna().astype(str))))


def cost_tables(jobs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per train job into ``cells`` (per dataset, model, method, ε) and ``ratios`` (private ε vs ε = ∞).

    A cell's ``job_seconds`` and ``train_seconds`` are totals over its jobs and runs; ``overhead_share`` is the
    part of its job seconds spent outside the training loops (start-up, imports, data loading, noise
    calibration, per-epoch accounting, scoring, writing). Ratios compare per-run means (job seconds per run,
    training-loop seconds per run) and peaks for memory; NaN where the (dataset, model) has no ε = ∞ cell or
    its value is missing or zero (a job too short for Snakemake to sample).

    Example:
        >>> jobs = pd.DataFrame({"dataset": "d", "model": "mlp", "method": "dpsgd", "epsilon": [1.0, float("inf")],
        ...                      "seeds": [2, 1], "job_seconds": [18.0, 6.0], "max_rss_mb": [630.0, 600.0],
        ...                      "train_seconds": [3.2, 0.4], "clipping_backend": None, "device": "cpu"})
        >>> cells, ratios = cost_tables(jobs)
        >>> cells[["epsilon", "n_seeds", "job_seconds_per_run", "train_seconds_mean", "overhead_share"]].round(3).values.tolist()
        [[1.0, 2.0, 9.0, 1.6, 0.822], [inf, 1.0, 6.0, 0.4, 0.933]]
        >>> ratios[["epsilon", "job_seconds_ratio", "train_seconds_ratio", "max_rss_ratio"]].round(2).to_dict("records")
        [{'epsilon': 1.0, 'job_seconds_ratio': 1.5, 'train_seconds_ratio': 4.0, 'max_rss_ratio': 1.05}]
    """
    if jobs.empty:
        return pd.DataFrame(columns=CELL_COLUMNS), pd.DataFrame(columns=RATIO_COLUMNS)
    if "share" not in jobs:  # one job per cell: each job wholly its cell's
        jobs = jobs.assign(share=1.0)
    if "job" not in jobs:
        jobs = jobs.assign(job=[f"job {i}" for i in range(len(jobs))])
    cells = (
        jobs.groupby(KEYS, sort=True)
        .agg(
            n_seeds=("seeds", "sum"),
            n_jobs=("seeds", "size"),
            job_share=("share", "sum"),
            job_seconds=("job_seconds", "sum"),
            train_seconds=("train_seconds", lambda t: t.sum(min_count=len(t))),
            max_rss_mb_max=("max_rss_mb", "max"),
            clipping_backend=("clipping_backend", _distinct),
            device=("device", _distinct),
            jobs=("job", lambda j: frozenset(j)),
        )
        .reset_index()
    )
    cells["overhead_share"] = 1 - cells["train_seconds"] / cells["job_seconds"].where(cells["job_seconds"] > 0)
    cells["job_seconds_per_run"] = cells["job_seconds"] / cells["n_seeds"]
    cells["train_seconds_mean"] = cells["train_seconds"] / cells["n_seeds"]
    nonprivate = np.isinf(cells["epsilon"])
    reference = cells[nonprivate][["dataset", "model", "method", "jobs", *RATIOS.values()]]
    ratios = cells[~nonprivate].merge(reference, on=["dataset", "model", "method"], how="left", suffixes=("", "_ref"))
    for ratio, value in RATIOS.items():
        ref = ratios[f"{value}_ref"]
        ratios[ratio] = ratios[value] / ref.where(ref > 0)
    # a private cell that ran in the same process as its ε = ∞ cell has the same peak: no memory comparison
    shared = [bool(a & b) if isinstance(b, frozenset) else False for a, b in zip(ratios["jobs"], ratios["jobs_ref"])]
    ratios.loc[shared, "max_rss_ratio"] = math.nan
    return cells[CELL_COLUMNS], ratios[RATIO_COLUMNS].reset_index(drop=True)
