"""What the grid's training and evaluation cost per seed job and per cell job: job-seconds, loop seconds, overhead.

    python tools/bench_grid.py [--benchmark benchmarks/default.yaml] [--methods dpsgd] [--all] [--workdir DIR]

Runs the train and evaluate jobs of a fixed subset of the benchmark's grid (default: every (dataset, model,
method) of the ``--methods``, all ε and seeds) twice, with Snakemake as ``make run`` does: once with one job per
run (``execution.seeds_per_job: 1`` and ``epsilons_per_job: 1``, as before per-cell jobs) and once with one job
for every ε and seed of a (dataset, model, method) (both ``all``, the default), each in its own work folder.
The two ways are interleaved (dataset, model, method) by (dataset, model, method), the order alternating, so a
drift of the machine's load hits both alike. It prints, per way: jobs, job-seconds of train and evaluate jobs (Snakemake's
benchmark records), the training loops' seconds (the run records' ``train_seconds``), the share of the train
jobs' seconds outside the loops, and the wall time. It is a measurement, not a test: nothing is asserted.
``--all`` takes every cell of the grid. The figures come from the files the jobs wrote.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
WAYS = {"per-run": 1, "grouped": "all"}  # "grouped": one job per (dataset, model, method), every ε and seed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", default=str(REPO / "benchmarks/default.yaml"))
    parser.add_argument("--methods", nargs="+", default=["dpsgd"], help="the cells' methods (default: dpsgd)")
    parser.add_argument("--all", action="store_true", help="every cell of the grid, every method")
    parser.add_argument("--workdir", default="bench-grid", help="two work folders are made under it")
    parser.add_argument("--cores", default="2")
    parser.add_argument(
        "--pin-conv",
        choices=["grouped", "ghost", "instantiate"],
        help="pin the convolution strategy (DPFAIR_CONV_STRATEGY), so the two ways' runs can agree bit for bit",
    )
    args = parser.parse_args(argv)
    if args.pin_conv:
        os.environ["DPFAIR_CONV_STRATEGY"] = args.pin_conv
    config = yaml.safe_load(Path(args.benchmark).read_text())
    config.setdefault("datasets_dir", str(REPO / "datasets"))
    if not Path(config["datasets_dir"]).is_absolute():
        config["datasets_dir"] = str(REPO / config["datasets_dir"])
    root = Path(args.workdir).resolve()
    folders = {}
    for way, per_job in WAYS.items():
        folder = root / way
        folder.mkdir(parents=True, exist_ok=True)
        settings = copy.deepcopy(config)
        settings["execution"] = {"seeds_per_job": per_job, "epsilons_per_job": per_job}
        (folder / "benchmark.yaml").write_text(yaml.safe_dump(settings))
        folders[way] = folder
    cells = grid_cells(folders["per-run"], None if args.all else set(args.methods))
    n_runs = sum(len(runs) for runs in cells.values())
    print(f"{len(cells)} (dataset, model, method), {n_runs} runs; work folders under {root}", flush=True)
    walls = dict.fromkeys(WAYS, 0.0)
    for i, (cell, runs) in enumerate(cells.items()):
        for way in list(WAYS)[:: 1 if i % 2 == 0 else -1]:  # alternate which way goes first
            targets = [f"results/runs/{run}/metrics.csv" for run in runs]
            walls[way] += snakemake(folders[way], targets, cores=args.cores)
        print(f"  {cell}: done", flush=True)
    rows = [{"way": way, **cost(folders[way], cells), "wall_seconds": walls[way]} for way in WAYS]
    table = pd.DataFrame(rows).set_index("way")
    print(table.round(3).to_string())
    print(agreement(folders["per-run"], folders["grouped"], cells))
    base, new = table.loc["per-run"], table.loc["grouped"]
    print(
        f"grouped / per-run job-seconds (train + evaluate): {new['job_seconds'] / base['job_seconds']:.3f}; "
        f"train jobs outside the loops: {base['train_overhead_share']:.1%} -> {new['train_overhead_share']:.1%}"
    )
    return 0


def grid_cells(folder: Path, methods: set[str] | None) -> dict[str, list[str]]:
    """The grid's (``dataset/model/method``) in grid order, each with its runs (``…/eps-e/seed-s``) as the workflow
    enumerates them."""
    config = yaml.safe_load((folder / "benchmark.yaml").read_text())
    sys.path.insert(0, str(REPO / "workflow"))
    from dpfair.pipeline.benchmark import validate_config  # the grid as the workflow enumerates it

    cells: dict[str, list[str]] = {}
    for r in validate_config(config).runs():
        if methods is None or r.method in methods:
            cells.setdefault(f"{r.dataset}/{r.model}/{r.method}", []).append(f"eps-{r.epsilon}/seed-{r.seed}")
    return {cell: [f"{cell}/{run}" for run in runs] for cell, runs in cells.items()}


def snakemake(folder: Path, targets: list[str], *, cores: str) -> float:
    # targets first: --configfile takes several values and would swallow them
    command = [sys.executable, "-m", "snakemake", *targets, "-s", str(REPO / "Snakefile"), "-d", str(folder),
               "--cores", cores, "--configfile", str(folder / "benchmark.yaml")]  # fmt: skip
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    if result.returncode:
        sys.exit(f"error: snakemake failed in {folder}:\n{result.stderr[-3000:]}")
    return time.perf_counter() - start


def agreement(a: Path, b: Path, cells: dict[str, list[str]]) -> str:
    """How far the two ways' per-run tables agree, timing columns aside: identical as text, or the largest
    numeric difference."""
    same, total, worst = 0, 0, 0.0
    for cell in cells:
        for path in sorted((a / "results/runs" / cell).glob("eps-*/seed-*/*.csv")):
            other = b / path.relative_to(a)
            total += 1
            if not other.exists():
                worst = float("inf")
                continue
            x, y = (pd.read_csv(p, dtype=str, keep_default_na=False) for p in (path, other))
            x, y = (t.drop(columns=[c for c in t.columns if "seconds" in c]) for t in (x, y))
            if x.shape != y.shape:
                worst = float("inf")
            elif x.equals(y):
                same += 1
            else:
                numbers = [pd.to_numeric(t.stack(), errors="coerce").to_numpy() for t in (x, y)]
                worst = max(worst, float(pd.Series(abs(numbers[0] - numbers[1])).max()))
    return f"per-run tables, timing aside: {same} of {total} identical; largest difference {worst:.3g}"


def cost(folder: Path, cells: dict[str, list[str]]) -> dict:
    """Job-seconds of the cells' train and evaluate jobs and their loops' seconds, from the files."""
    jobs = {"train": 0.0, "evaluate": 0.0}
    n_jobs = 0
    for stage in jobs:
        for cell in cells:
            for record in (folder / "results/benchmarks" / stage / cell).glob("eps-*/*.tsv"):
                jobs[stage] += float(pd.read_csv(record, sep="\t")["s"].mean())
                n_jobs += 1
    loops = sum(
        json.loads(p.read_text())["train_seconds"]
        for cell in cells
        for p in (folder / "results/runs" / cell).glob("eps-*/seed-*/run.json")
    )
    return {
        "jobs": n_jobs,
        "train_job_seconds": jobs["train"],
        "evaluate_job_seconds": jobs["evaluate"],
        "job_seconds": jobs["train"] + jobs["evaluate"],
        "loop_seconds": loops,
        "train_overhead_share": 1 - loops / jobs["train"] if jobs["train"] else float("nan"),
    }


if __name__ == "__main__":
    sys.exit(main())
