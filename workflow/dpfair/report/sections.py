"""The report's tables as rows for the template.

Summary, methods side by side, gap changes, compute cost, speed and trade-off.

Each function turns a summary table into template rows of printed strings (through
:mod:`dpfair.report.fmt`); :mod:`dpfair.report.page` assembles them into the page.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from dpfair.errors import DpfairError
from dpfair.fairness import gap_label, gap_metric_names, headline_metrics, is_headline, metric_label
from dpfair.metrics import NO_ATTRIBUTE
from dpfair.report.fmt import epsilon_label, number, ratio_label
from dpfair.report.frames import RUN_KEYS, cell_label, slug, with_method
from dpfair.tables.compute_cost import grid_overhead
from dpfair.tables.seeds import seed_summary
from dpfair.tables.summary import NA_VALUES, read_summary

#: metrics.csv columns a run's privacy statement uses when the run has no privacy card.
CARD_FROM_METRICS = (
    "epsilon_spent",
    "epsilon_rdp",
    "epsilon_prv",
    "epsilon_pld",
    "delta",
    "noise_multiplier",
    "max_grad_norm",
    "sample_rate",
    "expected_batch_size",
    "sampling",
    "epochs",
    "steps",
    "accountant",
    "n_train",
    "privacy_unit",
    "unit",
    "n_units",
)


def cards_with_metrics(cards: list[dict], metrics: pd.DataFrame) -> list[dict]:
    """Every run's card, with a card built from its ``metrics.csv`` row for any run that has none."""
    have = {tuple(c.get(k) for k in RUN_KEYS) for c in cards}
    out = list(cards)
    for r in metrics.drop_duplicates(RUN_KEYS).to_dict("records"):
        key = (r["dataset"], r["model"], r["method"], float(r["epsilon"]), int(r["seed"]))
        if key not in have:
            card = {k: r[k] for k in CARD_FROM_METRICS if k in r and not (isinstance(r[k], float) and math.isnan(r[k]))}
            out.append({**card, **dict(zip(RUN_KEYS, key))})
    return out


def gap_change_rows(changes: pd.DataFrame) -> dict[str, list[dict]]:
    """Gap changes vs ε = ∞ as table rows (each with the id the summary links to), the primary family first.

    ``headline`` holds the dataset's primary family (``family`` = primary; older tables: ``headline``, or
    the metrics the registry flags ``headline``), ``other`` the exploratory rows. Each row carries the
    estimate with its interval, the verdict class, the minimum detectable change and, for a two-group row,
    each group's own change (levelling down shows there).
    """
    changes = with_method(changes)
    rows = {"headline": [], "other": []}
    extra = [c for c in ("p_value", "p_adjusted") if c in changes.columns]
    for r in changes.sort_values(["model", "method", "attribute", "metric", "epsilon"]).to_dict("records"):
        estimand = r.get("estimand", "excess")
        digits = 4 if estimand == "tau2" else 3
        groups = ""
        if estimand == "signed" and math.isfinite(r.get("reference_change", math.nan)):
            groups = (
                f"{r['reference_group']} {number(r['reference_change'], signed=True)}, "
                f"{r['comparison_group']} {number(r['comparison_change'], signed=True)}"
            )
        row = {
            "id": slug("gc", r["dataset"], r["model"], r["method"], r["attribute"], r["metric"], r["epsilon"]),
            "model": r["model"],
            "method": r["method"],
            "attribute": r["attribute"],
            "metric": metric_label(r["metric"]),
            "estimand": _ESTIMANDS.get(estimand, estimand)
            + (f" ({r['comparison_group']} − {r['reference_group']})" if estimand == "signed" else ""),
            "epsilon": epsilon_label(r["epsilon"]),
            "change": f"{number(r['gap_change'], digits)} [{number(r['ci_low'], digits)}, {number(r['ci_high'], digits)}]",
            "mde": number(r["mde"], digits) if "mde" in r else "—",
            "class": r.get("verdict_class", ""),
            "groups": groups or "—",
            "verdict": r["verdict"],
            "p": [number(r[c]) for c in extra],
        }
        family = r.get("family")
        headline = family in ("primary", "headline") if family is not None else is_headline(r["metric"])
        rows["headline" if headline else "other"].append(row)
    rows["p_columns"] = ["p" if c == "p_value" else "adjusted p" for c in extra]
    rows["headline_label"] = " and ".join(gap_label(m) for m in headline_metrics())
    rows["other_label"] = ", ".join(gap_label(m) for m in gap_metric_names() if not is_headline(m))
    return rows


_ESTIMANDS = {"signed": "signed gap", "tau2": "τ² (spread)", "excess": "excess max − min"}


def summary_rows(metrics: pd.DataFrame, epsilons: list[float], level: float = 0.95) -> list[dict]:
    """Per (model, method, ε): AUROC mean [interval] over seeds, ε spent, and per attribute the gap and worst group."""
    rows = []
    metrics = with_method(metrics)
    runs = metrics.drop_duplicates(RUN_KEYS)
    for (model, method, eps), part in runs.groupby(["model", "method", "epsilon"], sort=True):
        auroc = seed_summary(part, "auroc", ["model"], level).iloc[0]
        row = {
            "id": slug("util", part["dataset"].iloc[0], model, method, eps),
            "model": model,
            "method": method,
            "epsilon": epsilon_label(eps),
            "auroc": f"{number(auroc['mean'])} [{number(auroc['low'])}, {number(auroc['high'])}]",
            "epsilon_spent": number(part["epsilon_spent"].max()),
            "n_seeds": int(auroc["n_seeds"]),
            "attributes": [],
        }
        cell = metrics[
            (metrics["model"] == model)
            & (metrics["method"] == method)
            & (metrics["epsilon"] == eps)
            & (metrics["attribute"] != NO_ATTRIBUTE)
        ]
        for attr, m in cell.groupby("attribute", sort=True):
            gap = seed_summary(m, "auroc_gap", ["attribute"], level).iloc[0]
            worst = m["worst_group_auroc"].mean()
            row["attributes"].append(
                {
                    "name": attr,
                    "gap": f"{number(gap['mean'])} [{number(gap['low'])}, {number(gap['high'])}]",
                    "worst": number(worst),
                }
            )
        rows.append(row)
    return rows


def method_rows(metrics: pd.DataFrame, level: float = 0.95) -> list[dict]:
    """Per ε, each (model, method) side by side: unit, units, δ, test AUROC, attack AUROC (means over seeds)."""
    metrics = with_method(metrics)
    runs = metrics.drop_duplicates(RUN_KEYS)
    rows = []
    for (eps, model, method), part in runs.groupby(["epsilon", "model", "method"], sort=True):
        auroc = seed_summary(part, "auroc", ["model"], level).iloc[0]
        rows.append(
            {
                "epsilon": epsilon_label(eps),
                "model": model,
                "method": method,
                "unit": number(part["privacy_unit"].iloc[0]),
                "n_units": number(part["n_units"].iloc[0]) if "n_units" in part else "—",
                "delta": number(part["delta"].iloc[0]),
                "auroc": f"{number(auroc['mean'])} [{number(auroc['low'])}, {number(auroc['high'])}]",
                "mia": number(part["mia_auroc"].mean()) if "mia_auroc" in part else "—",
            }
        )
    return rows


def method_comparison_rows(table: str | Path | None, groups: str | Path | None) -> list[dict]:
    """Rows of the method-comparison section (dpfair.tables.method_comparison), none without the tables."""
    if not table or not Path(table).exists():
        return []
    from dpfair.tables.method_comparison import GROUP_COLUMNS, report_rows

    frame = read_summary(table)
    group_frame = read_summary(groups) if groups and Path(groups).exists() else pd.DataFrame(columns=GROUP_COLUMNS)
    return report_rows(frame, group_frame)


def compute_cost_section(*, cells: str | Path, ratios: str | Path) -> dict | None:
    """Rows of the "Compute cost" section from ``compute_cost.csv`` and ``compute_ratios.csv``; None when no run."""
    # one line per (model, method) where the grid runs several methods
    cells_df, ratios_df = (series_by_method(with_method(read_summary(t))) for t in (cells, ratios))
    if cells_df.empty:
        return None
    cell_rows = [
        {
            "dataset": r["dataset"],
            "model": r["model"],
            "epsilon": epsilon_label(r["epsilon"]),
            "n_seeds": int(r["n_seeds"]),
            "n_jobs": int(r["n_jobs"]),
            "job": number(r["job_seconds"], 1),
            "train": number(r["train_seconds"], 1),
            "overhead": percent(r["overhead_share"]),
            "per_run": number(r["job_seconds_per_run"], 1),
            "rss": number(r["max_rss_mb_max"], 0),
            "mode": number(r["clipping_backend"]),
        }
        for r in cells_df.to_dict("records")
    ]
    totals = grid_overhead(read_summary(cells))
    ratio_rows = [
        {
            "dataset": r["dataset"],
            "model": r["model"],
            "epsilon": epsilon_label(r["epsilon"]),
            "job": ratio_label(r["job_seconds_ratio"]),
            "train": ratio_label(r["train_seconds_ratio"]),
            "rss": ratio_label(r["max_rss_ratio"]),
        }
        for r in ratios_df.to_dict("records")
    ]
    devices = sorted({d for value in cells_df["device"].dropna() for d in str(value).split(", ")})
    return {
        "cells": cell_rows,
        "ratios": ratio_rows,
        "devices": ", ".join(devices) or "not recorded",
        "total": {
            "n_jobs": totals["n_jobs"],
            "job": number(totals["job_seconds"], 0),
            "train": number(totals["train_seconds"], 0),
            "overhead": percent(totals["overhead_share"]),
        },
    }


def percent(share) -> str:
    """A share as a whole percentage (``"—"`` when missing).

    Example:
        >>> percent(0.1234), percent(float("nan"))
        ('12%', '—')
    """
    try:
        value = float(share)
    except (TypeError, ValueError):
        return "—"
    return "—" if math.isnan(value) else f"{100 * value:.0f}%"


#: The speed goal: a private path's step takes at most this many times the non-private step's time and peak memory.
SPEED_TIME_TARGET, SPEED_MEMORY_TARGET = 1.25, 1.2


def is_true(value) -> bool:
    """A CSV cell read as a flag (``True``/``1``, any case)."""
    return str(value).strip().lower() in ("true", "1")


def meets_speed_target(row: dict) -> bool:
    """Whether a measured private path is within the time and memory targets of the non-private step.

    Example:
        >>> meets_speed_target({"mode": "bookkeeping", "status": "ok", "time_ratio": 1.2, "memory_ratio": 1.1})
        True
        >>> meets_speed_target({"mode": "hooks", "status": "ok", "time_ratio": 1.9, "memory_ratio": 1.1})
        False
    """
    return (
        row["mode"] != "nonprivate"
        and row["status"] == "ok"
        and row["time_ratio"] <= SPEED_TIME_TARGET
        and row["memory_ratio"] <= SPEED_MEMORY_TARGET
    )


def speed_section(path: str | Path) -> dict | None:
    """Tables of the "Speed of DP-SGD paths" section from ``results/speed.csv``; None when it has no rows."""
    from dpfair.training.speed import (
        SPEED_COLUMNS,
    )  # the benchmark's own column list (imported here: it pulls in models)

    table = pd.read_csv(
        path, keep_default_na=False, na_values=NA_VALUES, dtype={"input_size": str, "status": str, "mode": str}
    )
    if missing := [c for c in SPEED_COLUMNS if c not in table.columns]:
        raise DpfairError(f"{path}: speed table lacks columns {missing}; rerun the speed benchmark to rewrite it")
    if table.empty:
        return None
    setting = {
        c: ", ".join(sorted(set(table[c].dropna().astype(str))))
        for c in ("device", "threads", "torch_version", "opacus_version")
    }
    cells = []
    for (dataset, model), part in table.groupby(["dataset", "model"], sort=True):
        rows = []
        for r in part.to_dict("records"):
            step = f"{number(r['step_seconds_median'], 4)} [{number(r['step_seconds_p25'], 4)}–{number(r['step_seconds_p75'], 4)}]"
            rows.append(
                {
                    "mode": r["mode"],
                    "exact": number(r["exact"]) if pd.isna(r["exact"]) else ("yes" if is_true(r["exact"]) else "no"),
                    "step": step,
                    "memory": number(r["peak_memory_mb"], 0),
                    "time_ratio": ratio_label(r["time_ratio"]),
                    "memory_ratio": ratio_label(r["memory_ratio"]),
                    "default": is_true(r["is_default"]),
                    "meets": "reference" if r["mode"] == "nonprivate" else ("✓" if meets_speed_target(r) else ""),
                    "status": number(r["status"]),
                }
            )
        first = part.iloc[0]
        cells.append(
            {
                "dataset": dataset,
                "model": model,
                "input_size": first["input_size"],
                "batch": first["batch"],
                "timed_steps": ", ".join(sorted(set(part["timed_steps"].dropna().astype(int).astype(str)))),
                "rows": rows,
            }
        )
    return {
        "setting": setting,
        "cells": cells,
        "time_target": number(SPEED_TIME_TARGET, 2),
        "memory_target": number(SPEED_MEMORY_TARGET, 2),
    }


def series_by_method(table: pd.DataFrame) -> pd.DataFrame:
    """The per-model figures draw one series per ``model``: with several methods, one per (model, method)."""
    methods = table["method"].nunique() if "method" in table.columns else 1
    if methods <= 1:
        return table
    return table.assign(model=[cell_label(m, k, methods=methods) for m, k in zip(table["model"], table["method"])])


def tradeoff_rows(points: pd.DataFrame) -> list[dict]:
    """Rows of a dataset's trade-off table: AUROC and gap with intervals per (model, method, attribute, ε)."""
    return [
        {
            "id": slug("to", r["dataset"], r["model"], r["method"], r["attribute"], r["epsilon"]),
            "model": r["model"],
            "method": r["method"],
            "attribute": r["attribute"],
            "epsilon": epsilon_label(r["epsilon"]),
            "auroc": f"{number(r['auroc'])} [{number(r['auroc_low'])}, {number(r['auroc_high'])}]",
            "gap": f"{number(r['gap'])} [{number(r['gap_low'])}, {number(r['gap_high'])}]",
            "pareto": "reference" if math.isinf(r["epsilon"]) else ("yes" if r["pareto"] else ""),
            "n_seeds": int(r["n_seeds"]),
        }
        for r in points.to_dict("records")
    ]


def tradeoff_alt(name: str, points: pd.DataFrame) -> str:
    """Alt text of a dataset's trade-off figure: what is plotted and where the non-private point sits."""
    text = (
        f"Trade-off of test AUROC (vertical) against the AUROC gap between groups (horizontal) for {name}, "
        f"one point per method and ε with intervals, ε = ∞ marked as a star, the Pareto front of private points dashed."
    )
    for (model, attr), panel in points.groupby(["model", "attribute"], sort=True):
        plain = panel[panel["epsilon"].map(math.isinf)]
        private = panel[panel["epsilon"].map(math.isfinite)]
        if not plain.empty and not private.empty:
            p = plain.iloc[0]
            text += (
                f" {model}, {attr}: non-private AUROC {number(p['auroc'])} with gap {number(p['gap'])}; private AUROC "
                f"{number(private['auroc'].min())} to {number(private['auroc'].max())} with gaps {number(private['gap'].min())} to {number(private['gap'].max())}."
            )
    return text
