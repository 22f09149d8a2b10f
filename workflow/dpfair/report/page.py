"""Render ``report/index.html``: one self-contained page (figures inlined as PNG, no network loads).

The page answers first and details after: an optional banner (the run's completeness), the summary,
the cross-dataset view, one section per dataset (trade-off figure first), compute cost and speed, and a
methods section generated from the run. Sentences live in :mod:`dpfair.report.summary`, the methods in
:mod:`dpfair.report.methods`, the trade-off numbers in :mod:`dpfair.report.tradeoff` and their figures in
:mod:`dpfair.report.tradeoff_figures`. Tables written before the mechanisms, fairness-statistics and audit
additions (no ``method``, ``p_adjusted`` or ``audit.csv``) still render; the parts that need them say
they are not available for this run.
"""

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

from markupsafe import Markup

import dpfair
from dpfair.report.audit import audit_section
from dpfair.metrics import NO_ATTRIBUTE
from dpfair.report.frames import RUN_KEYS, cell_label, epsilon_order, read_cards, read_optional, slug, with_method
from dpfair.report import methods as report_methods, summary as report_summary
from dpfair.report.tradeoff import auroc_costs, headline_gaps, tradeoff_points
from dpfair.report.tradeoff_figures import Styles, cost_figure, tradeoff_figure
from dpfair.fairness import GAP_CHANGE_COLUMNS, metric_label
from dpfair.report.figures import epsilon_label, gap_figure, reliability_figure, seed_summary, subgroup_figure, utility_figure
from dpfair.errors import DpfairError
from dpfair.tables.summary import NA_VALUES, read_summary
from dpfair.report.tuning import tuning_rows

#: metrics.csv columns a run's privacy statement uses when the run has no privacy card.
CARD_FROM_METRICS = (
    "epsilon_spent", "epsilon_rdp", "epsilon_prv", "epsilon_pld", "delta", "noise_multiplier", "max_grad_norm", "sample_rate",
    "expected_batch_size", "sampling", "epochs", "steps", "accountant", "n_train", "privacy_unit", "unit", "n_units",
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


def safe_url(url) -> str | None:
    """``url`` when it is an absolute http(s) URL, else None: a dataset card cannot inject a script link.

    Example:
        >>> safe_url("https://physionet.org/x"), safe_url("javascript:alert(1)"), safe_url(" HTTP://a.org ")
        ('https://physionet.org/x', None, 'HTTP://a.org')
    """
    from urllib.parse import urlsplit

    text = str(url or "").strip()
    parts = urlsplit(text)
    if parts.scheme.lower() in ("http", "https") and parts.netloc and not any(c in text for c in "\"'<> \t\n"):
        return text
    return None


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


#: Gaps whose change with ε the report shows first; the rest are in a collapsed table.
HEADLINE_GAPS = ("auroc", "tpr")


def gap_change_rows(changes: pd.DataFrame) -> dict[str, list[dict]]:
    """Gap changes vs ε = ∞ as table rows (each with the id the summary links to), headline metrics first.

    The headline family is the fairness statistics' ``family`` column where the table has it, else the
    AUROC and TPR gaps.
    """
    changes = with_method(changes)
    rows = {"headline": [], "other": []}
    extra = [c for c in ("p_value", "p_adjusted") if c in changes.columns]
    for r in changes.sort_values(["model", "method", "attribute", "metric", "epsilon"]).to_dict("records"):
        row = {
            "id": slug("gc", r["dataset"], r["model"], r["method"], r["attribute"], r["metric"], r["epsilon"]),
            "model": r["model"], "method": r["method"], "attribute": r["attribute"], "metric": metric_label(r["metric"]),
            "epsilon": epsilon_label(r["epsilon"]), "change": f"{fmt(r['gap_change'])} [{fmt(r['ci_low'])}, {fmt(r['ci_high'])}]",
            "verdict": r["verdict"], "p": [fmt(r[c]) for c in extra],
        }
        headline = r["family"] == "headline" if "family" in r else r["metric"] in HEADLINE_GAPS
        rows["headline" if headline else "other"].append(row)
    rows["p_columns"] = ["p" if c == "p_value" else "adjusted p" for c in extra]
    return rows
    return rows


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
            "auroc": f"{fmt(auroc['mean'])} [{fmt(auroc['low'])}, {fmt(auroc['high'])}]",
            "epsilon_spent": fmt(part["epsilon_spent"].max()),
            "n_seeds": int(auroc["n_seeds"]),
            "attributes": [],
        }
        cell = metrics[(metrics["model"] == model) & (metrics["method"] == method) & (metrics["epsilon"] == eps)
                       & (metrics["attribute"] != NO_ATTRIBUTE)]
        for attr, m in cell.groupby("attribute", sort=True):
            gap = seed_summary(m, "auroc_gap", ["attribute"], level).iloc[0]
            worst = m["worst_group_auroc"].mean()
            row["attributes"].append({"name": attr, "gap": f"{fmt(gap['mean'])} [{fmt(gap['low'])}, {fmt(gap['high'])}]", "worst": fmt(worst)})
        rows.append(row)
    return rows


def method_rows(metrics: pd.DataFrame, level: float = 0.95) -> list[dict]:
    """Per ε, each (model, method) side by side: unit, units, δ, test AUROC, attack AUROC (means over seeds)."""
    metrics = with_method(metrics)
    runs = metrics.drop_duplicates(RUN_KEYS)
    rows = []
    for (eps, model, method), part in runs.groupby(["epsilon", "model", "method"], sort=True):
        auroc = seed_summary(part, "auroc", ["model"], level).iloc[0]
        rows.append({
            "epsilon": epsilon_label(eps), "model": model, "method": method, "unit": fmt(part["privacy_unit"].iloc[0]),
            "n_units": fmt(part["n_units"].iloc[0]) if "n_units" in part else "—", "delta": fmt(part["delta"].iloc[0]),
            "auroc": f"{fmt(auroc['mean'])} [{fmt(auroc['low'])}, {fmt(auroc['high'])}]",
            "mia": fmt(part["mia_auroc"].mean()) if "mia_auroc" in part else "—",
        })
    return rows


def _method_comparison(table: str | Path | None, groups: str | Path | None) -> list[dict]:
    """Rows of the method-comparison section (dpfair.tables.method_comparison), none without the tables."""
    if not table or not Path(table).exists():
        return []
    from dpfair.tables.method_comparison import GROUP_COLUMNS, report_rows

    frame = read_summary(table)
    group_frame = read_summary(groups) if groups and Path(groups).exists() else pd.DataFrame(columns=GROUP_COLUMNS)
    return report_rows(frame, group_frame)


def ratio_label(value) -> str:
    """A ratio to the non-private reference as the report prints it.

    Example:
        >>> ratio_label(1.2345), ratio_label(2.0), ratio_label(float("nan"))
        ('1.23×', '2×', '—')
    """
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{fmt(float(value), 2)}×"


def compute_cost_section(*, cells: str | Path, ratios: str | Path) -> dict | None:
    """Rows of the "Compute cost" section from ``compute_cost.csv`` and ``compute_ratios.csv``; None when no run."""
    # one line per (model, method) where the grid runs several methods
    cells_df, ratios_df = (_series_by_method(with_method(read_summary(t))) for t in (cells, ratios))
    if cells_df.empty:
        return None
    cell_rows = [
        {
            "dataset": r["dataset"], "model": r["model"], "epsilon": epsilon_label(r["epsilon"]), "n_seeds": int(r["n_seeds"]),
            "job": f"{fmt(r['job_seconds_mean'], 1)} [{fmt(r['job_seconds_min'], 1)}–{fmt(r['job_seconds_max'], 1)}]",
            "train": fmt(r["train_seconds_mean"], 2), "rss": fmt(r["max_rss_mb_max"], 0), "mode": fmt(r["clipping_backend"]),
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
    from dpfair.training.speed import SPEED_COLUMNS  # the benchmark's own column list (imported here: it pulls in models)

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


def _series_by_method(table: pd.DataFrame) -> pd.DataFrame:
    """The per-model figures draw one series per ``model``: with several methods, one per (model, method)."""
    methods = table["method"].nunique() if "method" in table.columns else 1
    if methods <= 1:
        return table
    return table.assign(model=[cell_label(m, k, methods=methods) for m, k in zip(table["model"], table["method"])])


def _tradeoff_rows(points: pd.DataFrame) -> list[dict]:
    return [
        {
            "id": slug("to", r["dataset"], r["model"], r["method"], r["attribute"], r["epsilon"]),
            "model": r["model"], "method": r["method"], "attribute": r["attribute"], "epsilon": epsilon_label(r["epsilon"]),
            "auroc": f"{fmt(r['auroc'])} [{fmt(r['auroc_low'])}, {fmt(r['auroc_high'])}]",
            "gap": f"{fmt(r['gap'])} [{fmt(r['gap_low'])}, {fmt(r['gap_high'])}]",
            "pareto": "reference" if math.isinf(r["epsilon"]) else ("yes" if r["pareto"] else ""), "n_seeds": int(r["n_seeds"]),
        }
        for r in points.to_dict("records")
    ]


def _tradeoff_alt(name: str, points: pd.DataFrame) -> str:
    """Alt text of a dataset's trade-off figure: what is plotted and where the non-private point sits."""
    text = (f"Trade-off of test AUROC (vertical) against the AUROC gap between groups (horizontal) for {name}, "
            f"one point per method and ε with intervals, ε = ∞ marked as a star, the Pareto front of private points dashed.")
    for (model, attr), panel in points.groupby(["model", "attribute"], sort=True):
        plain = panel[panel["epsilon"].map(math.isinf)]
        private = panel[panel["epsilon"].map(math.isfinite)]
        if not plain.empty and not private.empty:
            p = plain.iloc[0]
            text += (f" {model}, {attr}: non-private AUROC {fmt(p['auroc'])} with gap {fmt(p['gap'])}; private AUROC "
                     f"{fmt(private['auroc'].min())} to {fmt(private['auroc'].max())} with gaps {fmt(private['gap'].min())} to {fmt(private['gap'].max())}.")
    return text


def _dataset_section(name, meta, *, metrics, subgroups, changes, reliability, audit, audit_roc, points, styles, level) -> dict | None:
    m = metrics[metrics["dataset"] == name]
    g = subgroups[subgroups["dataset"] == name]
    if m.empty:
        return None
    epsilons = sorted(m["epsilon"].unique())
    drawn, drawn_groups = _series_by_method(m), _series_by_method(g)
    p = points[points["dataset"] == name]
    return {
        "name": name,
        "anchor": slug(name),
        "meta": meta,
        "group_sizes": {attr: sorted(sizes["test"].items()) for attr, sizes in meta["group_sizes"].items()},
        "summary": summary_rows(m, epsilons, level),
        "attributes": sorted(g["attribute"].unique()),
        "tradeoff": {
            "figure": figure_to_data_uri(tradeoff_figure(p, styles)), "alt": _tradeoff_alt(name, p), "rows": _tradeoff_rows(p),
        } if not p.empty else None,
        "figures": {
            "utility": figure_to_data_uri(utility_figure(drawn, epsilons, level=level, styles=styles)),
            "subgroups": figure_to_data_uri(subgroup_figure(drawn_groups, epsilons)) if not g.empty else None,
            "gap": figure_to_data_uri(gap_figure(drawn, epsilons, level=level, styles=styles)) if not g.empty else None,
        },
        "gap_changes": gap_change_rows(changes[changes["dataset"] == name]),
        "reliability": figure_to_data_uri(reliability_figure(r, styles=styles)) if not (r := reliability[reliability["dataset"] == name]).empty else None,
        "methods_by_epsilon": method_rows(m, level) if m["method"].nunique() > 1 else [],
        # issue 12: the fixed recipe beside the privately tuned one (dpfair.report.tuning)
        "tuning": tuning_rows(m),
        # the audit stage's section (dpfair.report.audit): claimed against certified ε, attacks, ROC, per group
        "audit": audit_section(audit=audit[audit["dataset"] == name], roc=audit_roc[audit_roc["dataset"] == name],
                               level=level, to_uri=figure_to_data_uri),
    }


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
    method_comparison: str | Path | None = None,
    method_comparison_groups: str | Path | None = None,
    gaps: str | Path | None = None,
    audit: str | Path | None = None,
    audit_roc: str | Path | None = None,
    definition: dict | None = None,
    banner: str | None = None,
    status: dict | None = None,
) -> str:
    """Build every figure and table from the summary CSVs and write one HTML file.

    Args:
        metrics, subgroups: the summary tables (``results/summary/``).
        dataset_meta: each dataset's ``dataset.json``.
        benchmark: the parts of the benchmark definition the header describes (name, grid, evaluation).
        output: where the page goes.
        privacy_cards: every run's ``privacy_card.json`` (the methods section lists each run's statement).
        gap_changes, reliability, gaps: optional summary tables; ``gaps`` in the fairness-statistics form
            (``ci_low``/``ci_high`` per row) gives the trade-off figures' gap, else ``metrics``'s ``auroc_gap``.
        compute_cost, compute_ratios: written together by the aggregate rule (the compute-cost section).
        speed: ``results/speed.csv`` (the speed section).
        audit, audit_roc: ``results/summary/audit.csv`` (long format, one row per attack and metric) and the
            attacks' ROC points (the audit stage's ``aggregate_audit`` rule); the summary quotes the first and
            each dataset's audit section (:func:`dpfair.report.audit.audit_section`) shows both.
        definition: the whole validated benchmark definition: printed in the methods section with its
            sha256 (:func:`dpfair.report.methods.definition_hash`).
        banner: trusted HTML rendered above the summary, or None.
        status: :func:`dpfair.pipeline.outcome.run_status`'s account of the grid, shown in the banner: how many of the
            grid's runs the page shows and, for an incomplete grid, which runs failed and why.

    Raises:
        DpfairError: ``compute_cost`` without ``compute_ratios`` or the other way round.
    """
    if (compute_cost is None) != (compute_ratios is None):
        raise DpfairError("render_report: give compute_cost and compute_ratios together (both come from the aggregate rule)")
    metrics_df = with_method(read_summary(metrics))
    subgroups_df = with_method(read_summary(subgroups))
    changes_df = with_method(read_summary(gap_changes) if gap_changes else pd.DataFrame(columns=GAP_CHANGE_COLUMNS))
    reliability_df = read_summary(reliability) if reliability else pd.DataFrame(columns=["dataset"])
    gaps_df, audit_df = read_optional(gaps), read_optional(audit)
    audit_frame = audit_df if audit_df is not None else pd.DataFrame(columns=["dataset", "attribute"])
    # text, also where no per-group row gave the column a value (or an older table lacks it)
    audit_frame = audit_frame.assign(attribute=audit_frame.get("attribute", pd.Series(math.nan, index=audit_frame.index)).astype(object))
    audit_roc_df = read_summary(audit_roc) if audit_roc else pd.DataFrame(columns=["dataset"])
    metas = {m["name"]: m for m in (json.loads(Path(p).read_text()) for p in dataset_meta)}
    cards = cards_with_metrics(read_cards(privacy_cards), metrics_df)
    comparison = _method_comparison(method_comparison, method_comparison_groups)
    level = float(benchmark.get("evaluation", {}).get("ci_level", 0.95))
    min_group_size = int(benchmark.get("evaluation", {}).get("min_group_size", 0))
    styles = Styles(epsilons=metrics_df["epsilon"].unique(), methods=metrics_df["method"].unique())
    points = tradeoff_points(metrics_df, gaps_df, level=level)
    _, gap_source = headline_gaps(metrics_df, gaps_df)
    costs = auroc_costs(metrics_df, level=level)
    sections = [
        s for name, meta in metas.items()
        if (s := _dataset_section(name, meta, metrics=metrics_df, subgroups=subgroups_df, changes=changes_df,
                                  reliability=reliability_df,
                                  audit=audit_frame, audit_roc=audit_roc_df, points=points, styles=styles, level=level))
    ]
    for s in sections:  # fairness mitigations against dpsgd at the same ε (dpfair.tables.method_comparison)
        s["method_comparison"] = [r for r in comparison if r["dataset"] == s["name"]]
    summary = []
    for s in sections:
        name = s["name"]
        m = metrics_df[metrics_df["dataset"] == name]
        summary.append({
            "name": name,
            "anchor": s["anchor"],
            "sentences": [
                *report_summary.cost_sentences(name, costs, m, level=level),
                report_summary.gap_sentence(name, changes_df),
                report_summary.audit_sentence(name, m, audit_df),
                report_summary.method_sentence(name, points),
            ],
            "caveats": report_summary.caveats(name, meta=metas[name], metrics=m, subgroups=subgroups_df, cards=cards,
                                              min_group_size=min_group_size),
        })
    across = {
        "figure": figure_to_data_uri(cost_figure(costs, styles)) if not costs.empty else None,
        "rule": report_summary.rule_of_thumb(costs),
        "rows": [
            {"id": slug("cost", r["dataset"], r["model"], r["method"], r["epsilon"]), "dataset": r["dataset"], "model": r["model"],
             "method": r["method"], "epsilon": epsilon_label(r["epsilon"]), "auroc": fmt(r["auroc"]), "reference": fmt(r["reference"]),
             "cost": f"{fmt(r['cost'])} [{fmt(r['cost_low'])}, {fmt(r['cost_high'])}]", "n_seeds": int(r["n_seeds"])}
            for r in costs.to_dict("records")
        ],
    }
    cost_section = compute_cost_section(cells=compute_cost, ratios=compute_ratios) if compute_cost else None
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("dpfair.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
    )
    html = env.get_template("report.html.j2").render(
        benchmark=benchmark,
        banner=Markup(banner) if banner else None,
        summary=summary,
        across=across,
        styles=styles.legend(),
        sections=sections,
        status=status,
        safe_url=safe_url,
        gap_source=gap_source,
        compute_cost=cost_section,
        speed=speed_section(speed) if speed else None,
        methods={
            "statements": report_methods.privacy_statements(cards, metas),
            "statement_header": [label for _, label in report_methods.STATEMENT_COLUMNS],
            "software": report_methods.software_versions(),
            "definition": report_methods.canonical_definition(definition) if definition else None,
            "definition_pretty": json.dumps(json.loads(report_methods.canonical_definition(definition)), indent=1, ensure_ascii=False) if definition else None,
            "hash": report_methods.definition_hash(definition) if definition else None,
            "checklist": report_methods.checklist(
                metrics=metrics_df, subgroups=subgroups_df, changes=changes_df, reliability=reliability_df, cards=cards,
                metas=metas, audit=audit_df, compute_cost=cost_section is not None, definition=definition is not None),
        },
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
