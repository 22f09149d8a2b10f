"""What a benchmark run produced: which runs finished under the current definition, which failed or are stale.

Under ``--keep-going`` a failing cell leaves the others, but the aggregate rule needs every run, so it never
runs. Snakemake then calls the workflow's ``onerror`` handler, which calls :func:`report_what_exists`: it
stacks the runs that finished *under the current definition* into the summary tables and renders the report
with a banner listing what failed, each with the error its job recorded (see :func:`dpfair.logs.log_to_file`),
and what is stale, so the page never shows an earlier benchmark's results. Rerunning the same command retries
only what failed.

A run is current when its outputs exist, its dataset's preparation finished and is not newer than them, and
the definition hash its ``run.json`` records (:func:`run_definition`: the dataset module's source, its params
and the run's training settings) is the one the workflow computes now. The hash is needed because Snakemake
deletes a failed job's outputs but not the finished outputs downstream of it: editing a dataset module so that
its preparation fails leaves every run of the previous module in place, complete-looking.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import json
import logging
import os
from pathlib import Path

from dpfair.jobs import label_epsilons, label_seeds
from dpfair.logs import error_record_path

log = logging.getLogger(__name__)

#: The per-run files the summary is built from (each a run's output) and their aggregate input names.
RUN_TABLES = ("metrics", "subgroups", "gaps", "replicates", "reliability")
#: Characters of a definition hash the banner and terminal show (the full hash is in each run.json).
SHORT_HASH = 12


def run_definition(
    *,
    dataset: str,
    module_name: str,
    module_file: str | Path,
    params: dict,
    training: dict,
    model: str,
    method: str,
    epsilon: str | float,
    seed: int,
) -> str:
    """The hash of what one run is made from, as its ``run.json`` records it (``definition``).

    The same function gives the hash the train job records and the hash the workflow expects now, so a run is
    current exactly when the two agree. It covers the dataset module's source (its bytes, so a module moved to
    another datasets folder keeps its hash), the module's params and the run's training settings: the train
    rule's ``training`` params (``TrainConfig.params()`` and a tuned arm's ``tuning`` block), model, method, ε
    and seed, and the bytes of ``training.init_weights`` where the run starts from public weights. Hashed by :func:`dpfair.report.methods.definition_hash`, the one definition hash of the project.

    Args:
        dataset: the dataset's name in the benchmark.
        module_name: the dataset module's name (``datasets/<module_name>.py``).
        module_file: that module's file.
        params: the module's params (``datasets.<name>.params``).
        training: the train rule's ``training`` params.
        model: the run's model.
        method: its method (a tuned arm is ``<method>-tuned``).
        epsilon: its target ε (``1``, ``"1"`` and ``1.0`` are one ε).
        seed: its training seed.

    Raises:
        OSError: ``module_file`` cannot be read.

    Example:
        >>> import tempfile
        >>> with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        ...     _ = f.write("CARD = ...")
        >>> a = run_definition(dataset="d", module_name="d", module_file=f.name, params={"n": 1}, training={"epochs": 1},
        ...                    model="cnn", method="dpsgd", epsilon="1", seed=0)
        >>> a == run_definition(dataset="d", module_name="d", module_file=f.name, params={"n": 1},
        ...                     training={"epochs": 1}, model="cnn", method="dpsgd", epsilon=1.0, seed=0)
        True
        >>> a == run_definition(dataset="d", module_name="d", module_file=f.name, params={"n": 2},
        ...                     training={"epochs": 1}, model="cnn", method="dpsgd", epsilon=1, seed=0)
        False
    """
    from dpfair.privacy.params import format_epsilon
    from dpfair.report.methods import definition_hash

    weights = training.get("init_weights")
    if weights and Path(weights).is_file():  # public weights (training.init_weights): their bytes, not their name
        training = {**training, "init_weights_sha256": hashlib.sha256(Path(weights).read_bytes()).hexdigest()}
    return definition_hash(
        {
            "dataset": {
                "name": dataset,
                "module": module_name,
                "module_sha256": hashlib.sha256(Path(module_file).read_bytes()).hexdigest(),
                "params": params,
            },
            "training": training,
            "run": {"model": model, "method": method, "epsilon": format_epsilon(epsilon), "seed": int(seed)},
        }
    )


def run_status(runs: list[dict], stages: list[dict] | None = None) -> dict:
    """Which of ``runs`` finished under the current definition, which failed and why, which are stale.

    Args:
        runs: one dict per run of the grid: ``label`` (how the report names it), ``outputs`` (its final
            files; the run finished when they all exist) and ``logs`` (its jobs' logs in pipeline order,
            e.g. prepare, train, evaluate; the first with an error record says why it failed). Optional:
            ``preparation``, an entry of the same form for the dataset preparation the run is made from
            (each preparation is assessed once, as a run is, and the run is stale unless it is current and
            not newer than the run's outputs); ``inputs``, further files it is made from (stale when one is
            missing or newer than its outputs); ``record`` and ``definition``, its ``run.json`` and the hash
            the workflow computes now (:func:`run_definition`; stale when the record holds another; a record
            without one, written before runs recorded it, is taken as current).
        stages: later per-cell jobs in the same form (e.g. each audited cell), whose failures and staleness
            are listed too: a run can finish while its audit fails (:func:`stage_status`).

    Returns:
        ``{"expected": n, "finished": k, "complete": bool, "failed": [...], "stale": [...], "current": [...],
        "preparations": {"expected": p, "finished": q}}``: ``failed`` and ``stale`` hold
        ``{"run", "reason", "log"}`` (failed preparations first); ``current`` holds ``{"run", "definition"}``
        for each run counted in ``finished``. ``complete`` only when every run and preparation (and stage)
        finished under the current definition.
    """
    stages = stages or []
    preparations = {}
    for entry in [*runs, *stages]:
        if entry.get("preparation"):
            preparations.setdefault(entry["preparation"]["label"], entry["preparation"])
    prepared = {label: _assess(entry) for label, entry in preparations.items()}
    assessed = [(entry, _assess(entry, prepared)) for entry in runs]
    later = [(entry, _assess(entry, prepared)) for entry in stages]
    everything = [*((preparations[label], v) for label, v in prepared.items()), *assessed, *later]

    def listed(state):
        return [
            {"run": e["label"], "reason": v["reason"], "log": v["log"]} for e, v in everything if v["state"] == state
        ]

    current = [{"run": e["label"], "definition": v["definition"]} for e, v in assessed if v["state"] == "current"]
    failed, stale = listed("failed"), listed("stale")
    return {
        "expected": len(runs),
        "finished": len(current),
        "complete": not failed and not stale,
        "failed": failed,
        "stale": stale,
        "current": current,
        "preparations": {
            "expected": len(prepared),
            "finished": sum(v["state"] == "current" for v in prepared.values()),
        },
    }


def stage_status(runs: list[dict], stages: list[dict]) -> dict:
    """:func:`run_status` of the training runs, with the failed or stale later per-cell stages listed too.

    ``stages`` has the same entry format (e.g. each audited cell): a run can finish while its audit fails,
    and the report must say so rather than show "every run finished" without that audit.

    Example:
        >>> s = stage_status([], [{"label": "audit: d/m/dpsgd/eps-1", "outputs": ["/no/such"], "logs": []}])
        >>> s["complete"], s["failed"][0]["run"]
        (False, 'audit: d/m/dpsgd/eps-1')
    """
    return run_status(runs, stages)


def _assess(entry: dict, prepared: dict | None = None) -> dict:
    """``{"state": "current" | "failed" | "stale", "reason", "log", "definition"}`` of one entry."""
    if not all(Path(p).exists() for p in entry["outputs"]):
        reason, where = _why_missing(entry["logs"])
        return {"state": "failed", "reason": reason, "log": where, "definition": None}
    last_log = next((str(p) for p in reversed(entry["logs"]) if Path(p).exists()), "")

    def stale(reason, where=last_log, definition=None):
        return {"state": "stale", "reason": reason, "log": where, "definition": definition}

    inputs = list(entry.get("inputs", ()))
    preparation = entry.get("preparation")
    if preparation:
        verdict = (prepared or {}).get(preparation["label"]) or _assess(preparation)
        if verdict["state"] == "failed":
            return stale(
                f"made from an earlier definition: {preparation['label']} failed under the current one, so these "
                "outputs come from data it no longer holds",
                verdict["log"],
            )
        if verdict["state"] == "stale":
            return stale(f"made from an earlier definition: {preparation['label']} is stale ({verdict['reason']})")
        inputs += preparation["outputs"]
    # Snakemake's own test: an output older than what it is made from would be remade, so it is not current
    made = min(Path(p).stat().st_mtime for p in entry["outputs"])
    for path in inputs:
        if not Path(path).exists():
            return stale(f"made from {path}, which no longer exists")
        if Path(path).stat().st_mtime > made:
            return stale(f"{path} changed after it was made")
    recorded = None
    if entry.get("record"):
        try:
            recorded = json.loads(Path(entry["record"]).read_text()).get("definition")
        except (OSError, ValueError, AttributeError):
            return stale(f"unreadable run record {entry['record']}")
        expected = entry.get("definition")
        if recorded is not None and expected is not None and recorded != expected:
            return stale(
                f"made from an earlier definition (recorded {recorded[:SHORT_HASH]}, current "
                f"{expected[:SHORT_HASH]}): its dataset module, that module's params or its training settings "
                "changed since",
                definition=recorded,
            )
    return {"state": "current", "reason": None, "log": last_log, "definition": recorded}


def _why_missing(logs: list) -> tuple[str, str]:
    """Why an entry's outputs are missing: the first error its jobs recorded, else whether they started."""
    for job_log in logs:
        record = error_record_path(job_log)
        if record.exists():
            try:
                return json.loads(record.read_text())["error"], str(job_log)
            except (ValueError, KeyError):
                return f"unreadable error record {record}", str(job_log)
    started = [p for p in logs if Path(p).exists()]
    if started:
        return "did not finish and recorded no error (killed, out of memory or out of time?)", str(started[-1])
    return "not run (an earlier job it needs failed or the run was interrupted)", ""


def status_line(status: dict, output: str | Path) -> str:
    """What the terminal says after a failed benchmark: runs current, failed preparations, stale results.

    Example:
        >>> failed = [{"run": "prepare: d", "reason": "OSError: x", "log": "p.log"}]
        >>> line = status_line({"expected": 2, "finished": 0, "complete": False, "failed": failed}, "i.html")
        >>> for part in line.split("; "):
        ...     print(part)
        dpfair: INCOMPLETE: 0 of 2 runs finished under the current definition
        failed: prepare: d (OSError: x
        log: p.log)
        i.html shows only the current runs and lists the rest, each with its reason
    """
    runs = f"{status['finished']} of {status['expected']} runs finished under the current definition"
    if status["complete"]:  # onerror with every run current: a summary or report job failed, Snakemake said which
        return f"dpfair: {runs}, but a later job failed (above); {output} shows them"
    parts = [f"dpfair: INCOMPLETE: {runs}"]

    def named(entries, limit, why):
        shown = [e["run"] + (f" ({e['reason']}; log: {e['log']})" if why else "") for e in entries[:limit]]
        return ", ".join(shown) + (f" and {len(entries) - limit} more" if len(entries) > limit else "")

    if status["failed"]:  # failed preparations come first (run_status): one explains every run of its dataset
        parts.append(f"failed: {named(status['failed'], 5, why=True)}")
    if status.get("stale"):  # names only: the reason is mostly a failure listed above, and the page has each
        stale = status["stale"]
        parts.append(f"{len(stale)} stale, made from an earlier definition and not shown: {named(stale, 5, why=False)}")
    parts.append(f"{output} shows only the current runs and lists the rest, each with its reason")
    return "; ".join(parts)


def costed_jobs(done: list[dict]) -> tuple[list[str], list[str]]:
    """The train jobs' benchmark records and run records the compute-cost table of a partial report covers.

    A job may train several runs (``execution.seeds_per_job``), which then share one record: each record is
    taken once, and only when every run its name lists is among ``done`` (a record of a job whose other
    runs are missing or stale would charge them to the finished ones).

    Example:
        >>> runs = [{"tables": {"benchmark": "/no/a/eps-1/seeds-0-1.tsv", "record": f"/no/a/eps-1/seed-{s}/run.json"}}
        ...         for s in (0, 1)]
        >>> costed_jobs(runs)  # the record does not exist here
        ([], [])
    """
    by_job: dict[str, list[dict]] = {}
    for run in done:
        by_job.setdefault(str(run["tables"]["benchmark"]), []).append(run)
    benchmarks, records = [], []
    for path, runs in by_job.items():
        try:
            wanted = len(label_epsilons(Path(path).parent.name)) * len(label_seeds(Path(path).stem))
        except ValueError:
            continue
        if Path(path).exists() and len(runs) == wanted:
            benchmarks.append(path)
            records.extend(str(r["tables"]["record"]) for r in runs)
    return benchmarks, records


def report_what_exists(
    *,
    runs: list[dict],
    dataset_meta: list[str],
    benchmark: dict,
    summary: dict[str, str],
    output: str | Path,
    level: float = 0.95,
    statistics: dict | None = None,
    speed: str | Path | None = None,
    stages: list[dict] | None = None,
) -> dict:
    """Aggregate the runs current under the definition and render the report with the status banner; return the status.

    ``runs`` as for :func:`run_status`, each also with ``tables`` (its per-run files by name: metrics,
    subgroups, gaps, replicates, reliability, record, card, benchmark). ``summary`` maps the aggregate
    rule's output names to paths. ``statistics``: the verdicts' settings
    (:func:`dpfair.tables.summary.statistics_options`). ``stages``: later per-cell jobs (the audit) whose failures the banner lists
    too (:func:`stage_status`). A run whose outputs exist but were made from an earlier definition is in no
    table or figure; the banner lists it as stale. If rendering fails the page is replaced by a notice (never
    left stale).
    """
    status = stage_status(runs, stages or [])
    try:
        from dpfair.report.page import render_report
        from dpfair.tables.compute_cost import compute_cost
        from dpfair.tables.summary import summarise

        current = {c["run"] for c in status["current"]}
        done = [r for r in runs if r["label"] in current]
        if not done:
            raise RuntimeError("no run of the grid finished under the current definition")
        summarise(
            inputs={name: [r["tables"][name] for r in done] for name in RUN_TABLES},
            outputs={
                name: summary[name]
                for name in ("metrics", "subgroups", "gaps", "gap_changes", "auroc_changes", "reliability")
                if name in summary
            },
            level=level,
            statistics=statistics,
        )
        benchmarks, records = costed_jobs(done)
        cells, ratios = compute_cost(benchmarks=benchmarks, records=records)
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
        f"<li><code>{html.escape(f['run'])}</code>: {kind}{html.escape(f['reason'])}"
        + (f" (log: <code>{html.escape(f['log'])}</code>)" if f["log"] else "")
        + "</li>"
        for kind, entries in (("", status["failed"]), ("stale: ", status.get("stale", [])))
        for f in entries
    )
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    name = html.escape(str(benchmark.get("name", "?")))
    page = (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>dpfair: {name} (no report)</title></head>'
        f"<body><h1>dpfair: {name}: no report</h1><p>Run of {when}: {status['finished']} of {status['expected']} runs "
        f"finished under the current definition, and the report could not be rendered ({html.escape(error)}). "
        "Earlier results were removed from this page so they are not mistaken for this benchmark's.</p>"
        f"<ul>{rows}</ul></body></html>"
    )
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_text(page, encoding="utf-8")
