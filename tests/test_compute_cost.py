"""Compute cost from Snakemake benchmark records, and the report's compute-cost and speed sections."""

import json
import math

import pandas as pd
import pytest
from dpfair.errors import DpfairError
from dpfair.report.page import compute_cost_section, speed_section
from dpfair.tables.compute_cost import CELL_COLUMNS, RATIO_COLUMNS, compute_cost, grid_overhead
from dpfair.tables.summary import read_summary
from test_summary import run_grid

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def write_run(root, *, dataset="d", model="mlp", epsilon="1", seed=0, train_seconds=1.0, **record):
    """One run's run.json where the workflow puts it."""
    run = root / "results/runs" / dataset / model / "dpsgd" / f"eps-{epsilon}" / f"seed-{seed}" / "run.json"
    run.parent.mkdir(parents=True, exist_ok=True)
    eps_value = epsilon if epsilon == "inf" else float(epsilon)
    run.write_text(
        json.dumps(
            {
                "dataset": dataset,
                "model": model,
                "epsilon": eps_value,
                "seed": seed,
                "train_seconds": train_seconds,
                "device": "cpu",
                **record,
            }
        )
    )
    return run


def write_job(root, *, dataset="d", model="mlp", epsilon="1", label="seed-0", seconds=8.0, rss="600.00"):
    """One train job's Snakemake benchmark record, named by the seeds it trained (dpfair.jobs.SeedGroup.label)."""
    bench = root / "results/benchmarks/train" / dataset / model / "dpsgd" / f"eps-{epsilon}" / f"{label}.tsv"
    bench.parent.mkdir(parents=True, exist_ok=True)
    # Snakemake's own layout: tab-separated, seconds with two decimals, NA for memory it did not sample
    bench.write_text(
        HEADER + f"{seconds:.2f}\t0:00:{int(seconds):02d}\t{rss}\t991.99\t405.49\t468.70\t0.00\t0.15\t84.15\t6.40\n"
    )
    return bench


def grid(root, runs):
    """One job per run (per-seed jobs): each run's keys and its job's seconds and memory."""
    benches, records = [], []
    for r in runs:
        job = {k: r[k] for k in ("dataset", "model", "epsilon", "seconds", "rss") if k in r}
        benches.append(write_job(root, **job, label=f"seed-{r.get('seed', 0)}"))
        records.append(write_run(root, **{k: v for k, v in r.items() if k not in ("seconds", "rss")}))
    return benches, records


def test_cells_and_ratios_against_the_nonprivate_cell(tmp_path):
    benches, records = grid(
        tmp_path,
        [
            {
                "epsilon": "1",
                "seed": 0,
                "seconds": 8.0,
                "rss": "620.00",
                "train_seconds": 1.5,
                "clipping_backend": "bookkeeping",
            },
            {
                "epsilon": "1",
                "seed": 1,
                "seconds": 10.0,
                "rss": "630.00",
                "train_seconds": 1.7,
                "clipping_backend": "bookkeeping",
            },
            {"epsilon": "10", "seed": 0, "seconds": 7.0, "rss": "610.00", "train_seconds": 1.2},
            {"epsilon": "inf", "seed": 0, "seconds": 5.0, "rss": "575.00", "train_seconds": 0.3},
            {"epsilon": "inf", "seed": 1, "seconds": 6.0, "rss": "500.00", "train_seconds": 0.5},
        ],
    )
    cells, ratios = compute_cost(benchmarks=benches, records=records)
    assert list(cells.columns) == CELL_COLUMNS and list(ratios.columns) == RATIO_COLUMNS
    assert list(cells["epsilon"]) == [1.0, 10.0, math.inf]  # numeric order, inf last (not "1", "10", "inf" as strings)
    one = cells.iloc[0]
    assert (one["n_seeds"], one["n_jobs"], one["job_seconds"], one["job_seconds_per_run"]) == (2, 2, 18.0, 9.0)
    assert one["train_seconds"] == pytest.approx(3.2) and one["train_seconds_mean"] == pytest.approx(1.6)
    assert one["overhead_share"] == pytest.approx(1 - 3.2 / 18.0) and one["max_rss_mb_max"] == 630.0
    assert one["clipping_backend"] == "bookkeeping" and cells.iloc[1]["clipping_backend"] == ""  # key absent: optional
    assert list(ratios["epsilon"]) == [1.0, 10.0]  # private cells only
    r1 = ratios.iloc[0]
    assert r1["job_seconds_ratio"] == pytest.approx(9.0 / 5.5)
    assert r1["train_seconds_ratio"] == pytest.approx(1.6 / 0.4)
    assert r1["max_rss_ratio"] == pytest.approx(630 / 575)  # peak vs peak, not vs the mean


def test_a_job_of_several_seeds_counts_once_for_all_its_runs(tmp_path):
    """One job per cell: its record covers every run its label names, and the totals match per-seed jobs'."""
    records = [write_run(tmp_path, epsilon="1", seed=s, train_seconds=2.0 + s) for s in (0, 1, 2)]
    bench = write_job(tmp_path, epsilon="1", label="seeds-0-1-2", seconds=12.0, rss="700.00")
    cells, _ = compute_cost(benchmarks=[bench], records=records)
    (cell,) = cells.to_dict("records")
    assert (cell["n_seeds"], cell["n_jobs"], cell["job_seconds"], cell["train_seconds"]) == (3, 1, 12.0, 9.0)
    assert cell["overhead_share"] == pytest.approx(0.25) and cell["job_seconds_per_run"] == pytest.approx(4.0)
    assert grid_overhead(cells) == {"n_jobs": 1, "job_seconds": 12.0, "train_seconds": 9.0, "overhead_share": 0.25}
    # a job whose label names a seed that has no run record, or a run in two jobs, is refused
    with pytest.raises(DpfairError, match=r"no run.json of runs \['d/mlp/dpsgd/eps-1/seed-3'\]"):
        compute_cost(benchmarks=[write_job(tmp_path, epsilon="1", label="seeds-2-3")], records=records)
    with pytest.raises(DpfairError, match="in another job's record too"):
        compute_cost(benchmarks=[bench, write_job(tmp_path, epsilon="1", label="seed-1")], records=records)
    with pytest.raises(DpfairError, match="not a job label"):
        compute_cost(benchmarks=[write_job(tmp_path, epsilon="1", label="all")], records=records)


def test_a_job_of_several_epsilons_is_shared_out_by_its_runs_seconds(tmp_path):
    """One job for every ε of a (dataset, model, method): each ε cell gets its runs' own wall time (run_seconds) and
    an equal part per run of the job's time outside them, the job's peak memory, and that share of one job; the
    grid counts the job once."""
    seconds = {("1", 0): 5.0, ("1", 1): 7.0, ("inf", 0): 3.0, ("inf", 1): 1.0}
    records = [
        write_run(tmp_path, epsilon=e, seed=s, train_seconds=t - 0.5, run_seconds=t) for (e, s), t in seconds.items()
    ]
    bench = write_job(tmp_path, epsilon="1_inf", label="seeds-0-1", seconds=20.0, rss="700.00")
    cells, ratios = compute_cost(benchmarks=[bench], records=records)
    by_eps = cells.set_index("epsilon")
    # 16 s in the runs, 4 s outside them: 1 s per run
    assert by_eps.loc[1.0, "job_seconds"] == pytest.approx(12.0 + 2.0)
    assert by_eps.loc[float("inf"), "job_seconds"] == pytest.approx(4.0 + 2.0)
    assert by_eps["job_share"].tolist() == pytest.approx([0.7, 0.3]) and set(by_eps["n_jobs"]) == {1}
    assert by_eps["train_seconds"].tolist() == pytest.approx([11.0, 3.0]) and set(by_eps["max_rss_mb_max"]) == {700.0}
    assert grid_overhead(cells) == {"n_jobs": 1, "job_seconds": 20.0, "train_seconds": 14.0, "overhead_share": 0.3}
    assert ratios["job_seconds_ratio"].tolist() == pytest.approx([(14.0 / 2) / (6.0 / 2)])
    # one process, one peak: the private cell's memory is not compared with the ε = ∞ cell it shared the job with
    assert ratios["max_rss_ratio"].isna().all()
    # records without run_seconds (older runs) share the job equally per run
    old = [write_run(tmp_path, epsilon=e, seed=s, train_seconds=1.0) for (e, s) in seconds]
    cells, _ = compute_cost(benchmarks=[bench], records=old)
    assert cells["job_seconds"].tolist() == pytest.approx([10.0, 10.0])
    with pytest.raises(DpfairError, match="not an epsilon label"):
        compute_cost(benchmarks=[write_job(tmp_path, epsilon="1_", label="seeds-0-1")], records=records)


def test_grid_without_nonprivate_runs_gives_nan_ratios(tmp_path):
    benches, records = grid(tmp_path, [{"epsilon": "1", "seed": 0}, {"epsilon": "3", "seed": 0}])
    cells, ratios = compute_cost(benchmarks=benches, records=records)
    assert len(cells) == 2 and len(ratios) == 2
    assert ratios[["job_seconds_ratio", "train_seconds_ratio", "max_rss_ratio"]].isna().all().all()


def test_unsampled_memory_and_missing_train_seconds_stay_nan(tmp_path):
    benches, records = grid(
        tmp_path,
        [
            {"epsilon": "1", "seed": 0, "rss": "NA"},  # Snakemake's NA: job ended before memory was sampled
            {"epsilon": "3", "seed": 0, "train_seconds": None},  # jsonio writes NaN as null
            {"epsilon": "inf", "seed": 0, "rss": "0.00"},
        ],
    )
    # a record written before train_seconds existed
    record = json.loads(records[2].read_text())
    del record["train_seconds"]
    records[2].write_text(json.dumps(record))
    cells, ratios = compute_cost(benchmarks=benches, records=records)
    assert math.isnan(cells.iloc[0]["max_rss_mb_max"]) and cells.iloc[1]["max_rss_mb_max"] == 600.0
    assert math.isnan(cells.iloc[1]["train_seconds_mean"]) and math.isnan(cells.iloc[2]["train_seconds_mean"])
    assert math.isnan(cells.iloc[1]["overhead_share"])
    assert ratios[["max_rss_ratio", "train_seconds_ratio"]].isna().all().all()  # NaN over 0 too, not inf
    assert list(ratios["job_seconds_ratio"]) == [1.0, 1.0]


def test_tables_round_trip_through_csv_with_inf(tmp_path):
    benches, records = grid(tmp_path, [{"epsilon": "1"}, {"epsilon": "inf", "seconds": 4.0}])
    cells, _ = compute_cost(benchmarks=benches, records=records)
    cells.to_csv(tmp_path / "cells.csv", index=False)
    back = read_summary(tmp_path / "cells.csv")
    assert list(back["epsilon"]) == [1.0, math.inf]


def test_mismatched_records_fail_loudly(tmp_path):
    benches, records = grid(tmp_path, [{"epsilon": "1"}, {"epsilon": "inf"}])
    with pytest.raises(DpfairError, match=r"no run.json of runs \['d/mlp/dpsgd/eps-inf/seed-0'\]"):
        compute_cost(benchmarks=benches, records=records[:1])
    with pytest.raises(DpfairError, match=r"no benchmark record for runs \['d/mlp/dpsgd/eps-1/seed-0'\]"):
        compute_cost(benchmarks=benches[1:], records=records)
    benches[0].write_text("something else\n1\n")
    with pytest.raises(DpfairError, match="not a Snakemake benchmark record"):
        compute_cost(benchmarks=benches, records=records)


def test_empty_grid_gives_empty_tables_with_columns():
    cells, ratios = compute_cost(benchmarks=[], records=[])
    assert cells.empty and list(cells.columns) == CELL_COLUMNS and list(ratios.columns) == RATIO_COLUMNS


SPEED_ROW = {
    "dataset": "synthetic_lesions",
    "model": "cnn",
    "input_size": "1x32x32",
    "batch": 256,
    "exact": True,
    "device": "cpu",
    "threads": 1,
    "torch_version": "2.13.0+cpu",
    "opacus_version": "1.6.0",
    "timed_steps": 15,
    "is_default": False,
    "status": "ok",
}


def speed_csv(path):
    rows = [
        {
            "mode": "nonprivate",
            "step_seconds_median": 0.0200,
            "step_seconds_p25": 0.0190,
            "step_seconds_p75": 0.0210,
            "peak_memory_mb": 100.0,
            "time_ratio": 1.0,
            "memory_ratio": 1.0,
        },
        {
            "mode": "bookkeeping",
            "step_seconds_median": 0.0230,
            "step_seconds_p25": 0.0220,
            "step_seconds_p75": 0.0240,
            "peak_memory_mb": 110.0,
            "time_ratio": 1.15,
            "memory_ratio": 1.1,
            "is_default": True,
        },
        {
            "mode": "hooks",
            "step_seconds_median": 0.0400,
            "step_seconds_p25": 0.0390,
            "step_seconds_p75": 0.0410,
            "peak_memory_mb": 180.0,
            "time_ratio": 2.0,
            "memory_ratio": 1.8,
        },
        {"mode": "ghost", "status": "unsupported: <conv2d> & groups"},
    ]
    table = pd.DataFrame([{**SPEED_ROW, **r} for r in rows])
    table["exact"] = table["exact"].astype(object)
    table.loc[table["status"] != "ok", "exact"] = None  # a path that could not run has no answer to "exact?"
    table.to_csv(path, index=False)
    return path


def test_speed_section_marks_the_default_and_the_target(tmp_path):
    section = speed_section(speed_csv(tmp_path / "speed.csv"))
    assert section["setting"] == {
        "device": "cpu",
        "threads": "1",
        "torch_version": "2.13.0+cpu",
        "opacus_version": "1.6.0",
    }
    (cell,) = section["cells"]
    assert (cell["input_size"], cell["batch"]) == ("1x32x32", 256)
    rows = {r["mode"]: r for r in cell["rows"]}
    assert rows["nonprivate"]["meets"] == "reference"
    assert rows["bookkeeping"]["meets"] == "✓" and rows["bookkeeping"]["default"]
    assert rows["hooks"]["meets"] == "" and not rows["hooks"]["default"] and rows["hooks"]["time_ratio"] == "2×"
    assert rows["ghost"]["meets"] == "" and rows["ghost"]["step"] == "— [—–—]" and rows["ghost"]["exact"] == "—"
    assert rows["hooks"]["exact"] == "yes"


def test_speed_table_without_a_column_fails_loudly(tmp_path):
    path = speed_csv(tmp_path / "speed.csv")
    pd.read_csv(path).drop(columns=["memory_ratio"]).to_csv(path, index=False)
    with pytest.raises(DpfairError, match=r"lacks columns \['memory_ratio'\]"):
        speed_section(path)


def test_compute_cost_section_reads_what_aggregate_writes(tmp_path):
    benches, records = grid(tmp_path, [{"epsilon": "1", "seconds": 12.0}, {"epsilon": "inf", "seconds": 8.0}])
    cells, ratios = compute_cost(benchmarks=benches, records=records)
    cells.to_csv(tmp_path / "cells.csv", index=False)
    ratios.to_csv(tmp_path / "ratios.csv", index=False)
    section = compute_cost_section(cells=tmp_path / "cells.csv", ratios=tmp_path / "ratios.csv")
    assert [r["epsilon"] for r in section["cells"]] == ["1", "∞"] and section["devices"] == "cpu"
    assert section["cells"][0]["job"] == "12" and section["cells"][0]["mode"] == "—"
    assert section["cells"][0]["overhead"] == "92%"  # 1 s of loop in a 12 s job
    assert section["total"] == {"n_jobs": 2, "job": "20", "train": "2", "overhead": "90%"}
    # one method in the grid: the series is named by its model alone (the figures' rule, report_frames.cell_label)
    assert section["ratios"] == [
        {"dataset": "d", "model": "mlp", "epsilon": "1", "job": "1.5×", "train": "1×", "rss": "1×"}
    ]


def test_report_renders_both_sections_escaped(tmp_path):
    summary = run_grid(tmp_path, attributes=())
    benches, records = grid(
        tmp_path,
        [{"epsilon": "1", "seconds": 12.0, "clipping_backend": "bookkeeping"}, {"epsilon": "inf", "seconds": 8.0}],
    )
    cells, ratios = compute_cost(benchmarks=benches, records=records)
    cells.to_csv(tmp_path / "cost.csv", index=False)
    ratios.to_csv(tmp_path / "ratios.csv", index=False)
    benchmark = {
        "name": "t",
        "description": "",
        "epsilons": [1, "inf"],
        "seeds": [0, 1],
        "models": ["m"],
        "evaluation": {"min_group_size": 10},
    }
    common = {
        "metrics": summary["metrics"],
        "subgroups": summary["subgroups"],
        "dataset_meta": [tmp_path / "dataset.json"],
        "benchmark": benchmark,
        "output": tmp_path / "index.html",
        "gap_changes": summary["gap_changes"],
        "reliability": summary["reliability"],
    }

    html = render(
        common,
        compute_cost=tmp_path / "cost.csv",
        compute_ratios=tmp_path / "ratios.csv",
        speed=speed_csv(tmp_path / "speed.csv"),
    )
    html = " ".join(html.split())  # sentences wrap in the template
    assert '<section id="compute-cost">' in html
    assert "2 jobs, 20 job-seconds, of which 2 s in the training loops: 90% overhead" in html
    assert "<td>12</td><td>1</td><td>92%</td>" in html and "<td>1.5×</td>" in html and "bookkeeping" in html
    assert '<section id="speed">' in html and "Measured on cpu with 1 thread(s), torch 2.13.0+cpu, opacus 1.6.0" in html
    assert "at most 1.25× the non-private step time and at most 1.2× its peak memory" in html
    assert "unsupported: &lt;conv2d&gt; &amp; groups" in html and "<conv2d>" not in html  # autoescaped
    assert '<td class="l">default</td><td class="l">✓</td>' in html

    plain = render(common)
    assert 'id="compute-cost"' not in plain and 'id="speed"' not in plain
    pd.DataFrame(columns=pd.read_csv(tmp_path / "speed.csv").columns).to_csv(tmp_path / "empty.csv", index=False)
    assert 'id="speed"' not in render(common, speed=tmp_path / "empty.csv")
    with pytest.raises(DpfairError, match="together"):
        render(common, compute_cost=tmp_path / "cost.csv")


def render(common, **optional):
    from dpfair.report.page import render_report

    return render_report(**common, **optional)


def test_a_partial_report_costs_each_job_once_and_only_when_all_its_runs_finished(tmp_path):
    """The onerror report (dpfair.pipeline.outcome): runs of one cell share their job's record."""
    from dpfair.pipeline.outcome import costed_jobs

    bench = write_job(tmp_path, epsilon="1", label="seeds-0-1", seconds=10.0)
    runs = [
        {"tables": {"benchmark": str(bench), "record": str(write_run(tmp_path, epsilon="1", seed=s))}} for s in (0, 1)
    ]
    benchmarks, records = costed_jobs(runs)
    assert benchmarks == [str(bench)] and records == [r["tables"]["record"] for r in runs]
    cells, _ = compute_cost(benchmarks=benchmarks, records=records)
    assert cells["n_seeds"].tolist() == [2] and cells["job_seconds"].tolist() == [10.0]
    assert costed_jobs(runs[:1]) == ([], [])  # seed 1 missing or stale: its job is not charged to seed 0
