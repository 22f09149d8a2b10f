"""Render ``report/index.html``: one self-contained page (figures inlined as PNG, no network loads)."""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import math
import os
import platform
from pathlib import Path
from typing import Iterable

import jinja2
import matplotlib.pyplot as plt
import opacus
import pandas as pd
import torch

import dpfair
from dpfair.audit.report import audit_section
from dpfair.metrics import NO_ATTRIBUTE
from dpfair.fairness import GAP_CHANGE_COLUMNS, METRIC_LABELS
from dpfair.plots import epsilon_label, gap_figure, reliability_figure, seed_summary, subgroup_figure, utility_figure
from dpfair.errors import DpfairError
from dpfair.summary import NA_VALUES, read_summary

PRIVACY_COLUMNS = [
    ("model", "model"), ("epsilon", "target ε"), ("seed", "seed"), ("epsilon_spent", "ε spent"),
    ("epsilon_rdp", "ε RDP"), ("epsilon_prv", "ε PRV"), ("epsilon_pld", "ε PLD"),
    ("delta", "δ"), ("noise_multiplier", "σ"), ("max_grad_norm", "C"), ("sample_rate", "q"),
    ("expected_batch_size", "E[batch]"), ("sampling", "sampling"), ("epochs", "epochs"), ("steps", "steps"),
    ("accountant", "accountant"), ("n_train", "n_train"), ("privacy_unit", "unit"), ("train_seconds", "train s"),
]


def figure_to_data_uri(fig: plt.Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def fmt(value, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if math.isnan(value):
            return "—"
        if math.isinf(value):
            return "∞"
        if value != 0 and (abs(value) < 10 ** -digits or abs(value) >= 1e5):
            return f"{value:.2g}"
        return f"{value:.{digits}f}".rstrip("0").rstrip(".") if digits else f"{value:.0f}"
    return str(value)


#: Fields of the privacy card that are the same for every private run of a dataset, shown once.
CARD_TEXT_FIELDS = [
    ("clipping", "Clipping"), ("sampling", "Sampling"), ("privacy_unit_enforcement", "Privacy unit"),
    ("guarantee_covers", "What the guarantee covers"), ("hyperparameter_selection", "Hyperparameter selection"),
    ("accountant_implementation", "Accountant"), ("secure_rng", "Cryptographically secure RNG"),
]


def _cards_by_dataset(paths: Iterable[str | Path]) -> dict[str, list[tuple[str, str]]]:
    """One private run's card per dataset (paths look like results/runs/<dataset>/<model>/eps-<e>/seed-<s>/…)."""
    out: dict[str, list[tuple[str, str]]] = {}
    for path in paths:
        path = Path(path)
        dataset = path.parents[3].name
        card = json.loads(path.read_text())
        if dataset in out or card["accountant"] == "none":
            continue
        out[dataset] = [(label, str(card[key])) for key, label in CARD_TEXT_FIELDS]
    return out


#: Gaps whose change with ε the report shows first; the rest are in a collapsed table.
HEADLINE_GAPS = ("auroc", "tpr")


def gap_change_rows(changes: pd.DataFrame) -> dict[str, list[dict]]:
    """Gap changes vs ε = ∞ as table rows, headline metrics first."""
    rows = {"headline": [], "other": []}
    for r in changes.sort_values(["model", "attribute", "metric", "epsilon"]).to_dict("records"):
        row = {
            "model": r["model"], "attribute": r["attribute"], "metric": METRIC_LABELS.get(r["metric"], r["metric"]),
            "epsilon": epsilon_label(r["epsilon"]), "change": f"{fmt(r['gap_change'])} [{fmt(r['ci_low'])}, {fmt(r['ci_high'])}]",
            "verdict": r["verdict"],
        }
        rows["headline" if r["metric"] in HEADLINE_GAPS else "other"].append(row)
    return rows


def summary_rows(metrics: pd.DataFrame, epsilons: list[float], level: float = 0.95) -> list[dict]:
    """Per (model, ε): AUROC mean [interval] over seeds, ε spent, and per attribute the gap and worst group."""
    rows = []
    runs = metrics.drop_duplicates(["model", "epsilon", "seed"])
    for (model, eps), part in runs.groupby(["model", "epsilon"], sort=True):
        auroc = seed_summary(part, "auroc", ["model"], level).iloc[0]
        row = {
            "model": model,
            "epsilon": epsilon_label(eps),
            "auroc": f"{fmt(auroc['mean'])} [{fmt(auroc['low'])}, {fmt(auroc['high'])}]",
            "epsilon_spent": fmt(part["epsilon_spent"].max()),
            "n_seeds": int(auroc["n_seeds"]),
            "attributes": [],
        }
        cell = metrics[(metrics["model"] == model) & (metrics["epsilon"] == eps) & (metrics["attribute"] != NO_ATTRIBUTE)]
        for attr, m in cell.groupby("attribute", sort=True):
            gap = seed_summary(m, "auroc_gap", ["attribute"], level).iloc[0]
            worst = m["worst_group_auroc"].mean()
            row["attributes"].append({"name": attr, "gap": f"{fmt(gap['mean'])} [{fmt(gap['low'])}, {fmt(gap['high'])}]", "worst": fmt(worst)})
        rows.append(row)
    return rows


def ratio_label(value) -> str:
    """A ratio to the non-private reference as the report prints it.

    Example:
        >>> ratio_label(1.2345), ratio_label(2.0), ratio_label(float("nan"))
        ('1.23×', '2×', '—')
    """
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{fmt(float(value), 2)}×"


def compute_cost_section(*, cells: str | Path, ratios: str | Path) -> dict | None:
    """Rows of the "Compute cost" section from ``compute_cost.csv`` and ``compute_ratios.csv``; None when no run."""
    cells_df, ratios_df = read_summary(cells), read_summary(ratios)
    if cells_df.empty:
        return None
    cell_rows = [
        {
            "dataset": r["dataset"], "model": r["model"], "epsilon": epsilon_label(r["epsilon"]), "n_seeds": int(r["n_seeds"]),
            "job": f"{fmt(r['job_seconds_mean'], 1)} [{fmt(r['job_seconds_min'], 1)}–{fmt(r['job_seconds_max'], 1)}]",
            "train": fmt(r["train_seconds_mean"], 2), "rss": fmt(r["max_rss_mb_max"], 0), "mode": fmt(r["grad_sample_mode"]),
        }
        for r in cells_df.to_dict("records")
    ]
    ratio_rows = [
        {
            "dataset": r["dataset"], "model": r["model"], "epsilon": epsilon_label(r["epsilon"]),
            "job": ratio_label(r["job_seconds_ratio"]), "train": ratio_label(r["train_seconds_ratio"]),
            "rss": ratio_label(r["max_rss_ratio"]),
        }
        for r in ratios_df.to_dict("records")
    ]
    devices = sorted({d for value in cells_df["device"].dropna() for d in str(value).split(", ")})
    return {"cells": cell_rows, "ratios": ratio_rows, "devices": ", ".join(devices) or "not recorded"}


#: The speed goal: a private path's step takes at most this many times the non-private step's time and peak memory.
SPEED_TIME_TARGET, SPEED_MEMORY_TARGET = 1.25, 1.2


def _is_true(value) -> bool:
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
        row["mode"] != "nonprivate" and row["status"] == "ok"
        and row["time_ratio"] <= SPEED_TIME_TARGET and row["memory_ratio"] <= SPEED_MEMORY_TARGET
    )


def speed_section(path: str | Path) -> dict | None:
    """Tables of the "Speed of DP-SGD paths" section from ``results/speed.csv``; None when it has no rows."""
    from dpfair.speed import SPEED_COLUMNS  # the benchmark's own column list (imported here: it pulls in models)

    table = pd.read_csv(path, keep_default_na=False, na_values=NA_VALUES, dtype={"input_size": str, "status": str, "mode": str})
    if missing := [c for c in SPEED_COLUMNS if c not in table.columns]:
        raise DpfairError(f"{path}: speed table lacks columns {missing}; rerun the speed benchmark to rewrite it")
    if table.empty:
        return None
    setting = {c: ", ".join(sorted(set(table[c].dropna().astype(str)))) for c in ("device", "threads", "torch_version", "opacus_version")}
    cells = []
    for (dataset, model), part in table.groupby(["dataset", "model"], sort=True):
        rows = []
        for r in part.to_dict("records"):
            step = f"{fmt(r['step_seconds_median'], 4)} [{fmt(r['step_seconds_p25'], 4)}–{fmt(r['step_seconds_p75'], 4)}]"
            rows.append({
                "mode": r["mode"], "exact": fmt(r["exact"]) if pd.isna(r["exact"]) else ("yes" if _is_true(r["exact"]) else "no"),
                "step": step,
                "memory": fmt(r["peak_memory_mb"], 0), "time_ratio": ratio_label(r["time_ratio"]),
                "memory_ratio": ratio_label(r["memory_ratio"]), "default": _is_true(r["is_default"]),
                "meets": "reference" if r["mode"] == "nonprivate" else ("✓" if meets_speed_target(r) else ""),
                "status": fmt(r["status"]),
            })
        first = part.iloc[0]
        cells.append({
            "dataset": dataset, "model": model, "input_size": first["input_size"], "batch": first["batch"],
            "timed_steps": ", ".join(sorted(set(part["timed_steps"].dropna().astype(int).astype(str)))), "rows": rows,
        })
    return {"setting": setting, "cells": cells, "time_target": fmt(SPEED_TIME_TARGET, 2), "memory_target": fmt(SPEED_MEMORY_TARGET, 2)}


def render_report(
    *,
    metrics: str | Path,
    subgroups: str | Path,
    dataset_meta: Iterable[str | Path],
    benchmark: dict,
    output: str | Path,
    privacy_cards: Iterable[str | Path] = (),
    gap_changes: str | Path | None = None,
    reliability: str | Path | None = None,
    compute_cost: str | Path | None = None,
    compute_ratios: str | Path | None = None,
    speed: str | Path | None = None,
    audit: str | Path | None = None,
    audit_roc: str | Path | None = None,
) -> str:
    """Build every figure and table from the summary CSVs and write one HTML file.

    ``compute_cost``/``compute_ratios`` (written together by the aggregate rule) and ``speed`` are optional:
    without them the page has no compute-cost or speed section.
    """
    if (compute_cost is None) != (compute_ratios is None):
        raise DpfairError("render_report: give compute_cost and compute_ratios together (both come from the aggregate rule)")
    metrics_df = read_summary(metrics)
    subgroups_df = read_summary(subgroups)
    changes_df = read_summary(gap_changes) if gap_changes else pd.DataFrame(columns=GAP_CHANGE_COLUMNS)
    reliability_df = read_summary(reliability) if reliability else pd.DataFrame(columns=["dataset"])
    metas = {m["name"]: m for m in (json.loads(Path(p).read_text()) for p in dataset_meta)}
    audit_df = read_summary(audit) if audit else pd.DataFrame(columns=["dataset", "attribute"])
    audit_roc_df = read_summary(audit_roc) if audit_roc else pd.DataFrame(columns=["dataset"])
    cards = _cards_by_dataset(privacy_cards)
    level = float(benchmark.get("evaluation", {}).get("ci_level", 0.95))
    sections = []
    for name, meta in metas.items():
        m = metrics_df[metrics_df["dataset"] == name]
        g = subgroups_df[subgroups_df["dataset"] == name]
        if m.empty:
            continue
        epsilons = sorted(m["epsilon"].unique())
        runs = m.drop_duplicates(["model", "epsilon", "seed"]).sort_values(["model", "epsilon", "seed"])
        sections.append(
            {
                "name": name,
                "meta": meta,
                "group_sizes": {
                    attr: sorted(sizes["test"].items()) for attr, sizes in meta["group_sizes"].items()
                },
                "summary": summary_rows(m, epsilons, level),
                "attributes": sorted(g["attribute"].unique()),
                "figures": {
                    "utility": figure_to_data_uri(utility_figure(m, epsilons, level=level)),
                    "subgroups": figure_to_data_uri(subgroup_figure(g, epsilons)) if not g.empty else None,
                    "gap": figure_to_data_uri(gap_figure(m, epsilons, level=level)) if not g.empty else None,
                },
                "card": cards.get(name, {}),
                "gap_changes": gap_change_rows(changes_df[changes_df["dataset"] == name]),
                "reliability": figure_to_data_uri(reliability_figure(r)) if not (r := reliability_df[reliability_df["dataset"] == name]).empty else None,
                "audit": audit_section(audit=audit_df[audit_df["dataset"] == name], roc=audit_roc_df[audit_roc_df["dataset"] == name],
                                       level=level, to_uri=figure_to_data_uri),
                "privacy_header": [label for _, label in PRIVACY_COLUMNS],
                "privacy_rows": [
                    [fmt(r[c]) if c != "epsilon" else epsilon_label(r[c]) for c, _ in PRIVACY_COLUMNS]
                    for r in runs.to_dict("records")
                ],
            }
        )
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("dpfair", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
    )
    html = env.get_template("report.html.j2").render(
        benchmark=benchmark,
        sections=sections,
        compute_cost=compute_cost_section(cells=compute_cost, ratios=compute_ratios) if compute_cost else None,
        speed=speed_section(speed) if speed else None,
        level=f"{100 * level:g}",
        epsilons=", ".join(epsilon_label(float(e)) for e in benchmark.get("epsilons", [])),
        generated=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        environment={
            "dpfair": dpfair.__version__,
            "torch": torch.__version__,
            "opacus": opacus.__version__,
            "python": platform.python_version(),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, "
            + (torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"),
        },
        fmt=fmt,
    )
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_text(html, encoding="utf-8")
    return html
