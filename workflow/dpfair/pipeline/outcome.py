"""What a benchmark run produced: which runs finished, which failed and why, and a report from what exists.

Under ``--keep-going`` a failing cell leaves the others, but the aggregate rule needs every run, so it never
runs. Snakemake then calls the workflow's ``onerror`` handler, which calls :func:`report_what_exists`: it
stacks the runs that finished into the summary tables and renders the report with a banner listing what
failed, each with the error its job recorded (see :func:`dpfair.logs.log_to_file`), so the page never shows
an earlier benchmark's results. Rerunning the same command retries only what failed.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import logging
import os
from pathlib import Path

from dpfair.logs import error_record_path

log = logging.getLogger(__name__)

#: The per-run files the summary is built from (each a run's output) and their aggregate input names.
RUN_TABLES = ("metrics", "subgroups", "gaps", "replicates", "reliability")


def run_status(runs: list[dict]) -> dict:
    """Which of ``runs`` finished and why the others did not.

    Args:
        runs: one dict per run of the grid: ``label`` (how the report names it), ``outputs`` (its final
            files; the run finished when they all exist) and ``logs`` (its jobs' logs in pipeline order,
            e.g. prepare, train, evaluate; the first with an error record says why it failed).

    Returns:
        ``{"expected": n, "finished": k, "complete": bool, "failed": [{"run", "reason", "log"}]}``.
    """
    failed = []
    for run in runs:
        if all(Path(p).exists() for p in run["outputs"]):
            continue
        reason, where = None, None
        for job_log in run["logs"]:
            record = error_record_path(job_log)
            if record.exists():
                try:
                    reason = json.loads(record.read_text())["error"]
                except (ValueError, KeyError):
                    reason = f"unreadable error record {record}"
                where = job_log
                break
        if reason is None:
            started = [p for p in run["logs"] if Path(p).exists()]
            where = started[-1] if started else None
            reason = (
                "did not finish and recorded no error (killed, out of memory or out of time?)"
                if started
                else "not run (an earlier job it needs failed or the run was interrupted)"
            )
        failed.append({"run": run["label"], "reason": reason, "log": str(where) if where else ""})
    return {"expected": len(runs), "finished": len(runs) - len(failed), "complete": not failed, "failed": failed}


def stage_status(runs: list[dict], stages: list[dict]) -> dict:
    """:func:`run_status` of the training runs, with the failures of later per-cell stages added to ``failed``.

    ``stages`` has the same entry format (e.g. each audited cell): a run can finish while its audit fails,
    and the report must say so rather than show "every run finished" without that audit.

    Example:
        >>> s = stage_status([], [{"label": "audit: d/m/dpsgd/eps-1", "outputs": ["/no/such"], "logs": []}])
        >>> s["complete"], s["failed"][0]["run"]
        (False, 'audit: d/m/dpsgd/eps-1')
    """
    status = run_status(runs)
    later = run_status(stages)
    return {
        **status,
        "complete": status["complete"] and later["complete"],
        "failed": status["failed"] + later["failed"],
    }


def report_what_exists(
    *,
    runs: list[dict],
    dataset_meta: list[str],
    benchmark: dict,
    summary: dict[str, str],
    output: str | Path,
    level: float = 0.95,
    speed: str | Path | None = None,
    stages: list[dict] | None = None,
) -> dict:
    """Aggregate the finished runs and render the report with the status banner; return the status.

    ``runs`` as for :func:`run_status`, each also with ``tables`` (its per-run files by name: metrics,
    subgroups, gaps, replicates, reliability, record, card, benchmark). ``summary`` maps the aggregate
    rule's output names to paths. ``stages``: later per-cell jobs (the audit) whose failures the banner lists
    too (:func:`stage_status`). If rendering fails the page is replaced by a notice (never left stale).
    """
    status = stage_status(runs, stages or [])
    try:
        from dpfair.report.page import render_report
        from dpfair.tables.compute_cost import compute_cost
        from dpfair.tables.summary import summarise

        done = [r for r in runs if all(Path(p).exists() for p in r["outputs"])]
        if not done:
            raise RuntimeError("no run of the grid finished")
        summarise(
            inputs={name: [r["tables"][name] for r in done] for name in RUN_TABLES},
            outputs={name: summary[name] for name in ("metrics", "subgroups", "gaps", "gap_changes", "reliability")},
            level=level,
        )
        with_benchmark = [r for r in done if Path(r["tables"]["benchmark"]).exists()]
        cells, ratios = compute_cost(
            benchmarks=[r["tables"]["benchmark"] for r in with_benchmark],
            records=[r["tables"]["record"] for r in with_benchmark],
        )
        cells.to_csv(summary["compute_cost"], index=False)
        ratios.to_csv(summary["compute_ratios"], index=False)
        render_report(
            metrics=summary["metrics"],
            subgroups=summary["subgroups"],
            dataset_meta=[p for p in dataset_meta if Path(p).exists()],
            benchmark=benchmark,
            output=output,
            privacy_cards=[r["tables"]["card"] for r in done],
            gap_changes=summary["gap_changes"],
            reliability=summary["reliability"],
            compute_cost=summary["compute_cost"],
            compute_ratios=summary["compute_ratios"],
            speed=speed if speed and Path(speed).exists() else None,
            status=status,
        )
    except Exception as exc:  # noqa: BLE001 - whatever broke, the old page must not stay unmarked
        log.exception("rendering the report from the finished runs failed")
        write_notice(output=output, benchmark=benchmark, status=status, error=f"{type(exc).__name__}: {exc}")
    mark_out_of_date([output, *summary.values()])
    return status


#: The modification time given to the partial outputs of a failed run (1970-01-01).
OUT_OF_DATE = 0


def mark_out_of_date(paths) -> None:
    """Date the partial summary and report older than any input, so the next run remakes them.

    Snakemake treats an existing output whose inputs are not newer as up to date, even when another of
    its inputs (an audit table, the method comparison) was never made because a job failed: without this,
    fixing the cause and rerunning printed "Nothing to be done" and kept the partial report.
    """
    for path in paths:
        if Path(path).exists():
            os.utime(path, (OUT_OF_DATE, OUT_OF_DATE))


def write_notice(*, output: str | Path, benchmark: dict, status: dict, error: str) -> None:
    """Replace the report with a page that says no report could be rendered, and why (no dependencies)."""
    rows = "".join(
        f"<li><code>{html.escape(f['run'])}</code>: {html.escape(f['reason'])}"
        + (f" (log: <code>{html.escape(f['log'])}</code>)" if f["log"] else "")
        + "</li>"
        for f in status["failed"]
    )
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    name = html.escape(str(benchmark.get("name", "?")))
    page = (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>dpfair: {name} (no report)</title></head>'
        f"<body><h1>dpfair: {name}: no report</h1><p>Run of {when}: {status['finished']} of {status['expected']} runs "
        f"finished, and the report could not be rendered ({html.escape(error)}). Earlier results were removed from "
        f"this page so they are not mistaken for this benchmark's.</p><ul>{rows}</ul></body></html>"
    )
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_text(page, encoding="utf-8")
