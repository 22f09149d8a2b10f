"""Render ``report/index.html``: one self-contained page (figures inlined as PNG, no network loads).

The page answers first and details after: an optional banner (the run's completeness), the summary,
the cross-dataset view, one section per dataset (trade-off figure first), compute cost and speed, and a
methods section generated from the run. Sentences live in :mod:`dpfair.report.summary`, the methods in
:mod:`dpfair.report.methods`, the trade-off numbers in :mod:`dpfair.report.tradeoff` and their figures in
:mod:`dpfair.report.tradeoff_figures`. Tables written before the mechanisms, fairness-statistics and audit
additions (no ``method``, ``p_adjusted`` or ``audit.csv``) still render; the parts that need them say
they are not available for this run. What DP costs in AUROC is said from ``auroc_changes.csv``'s verdicts;
a result folder without that table gets point estimates, marked as such.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import platform
from collections.abc import Iterable
from pathlib import Path

import jinja2
import opacus
import pandas as pd
import torch
from markupsafe import Markup

import dpfair
from dpfair.errors import DpfairError
from dpfair.fairness import GAP_CHANGE_COLUMNS
from dpfair.report import methods as report_methods
from dpfair.report import summary as report_summary
from dpfair.report.audit import audit_section
from dpfair.report.datacard import data_card
from dpfair.report.figures import gap_figure, reliability_figure, subgroup_figure, utility_figure
from dpfair.report.findings import findings_section
from dpfair.report.fmt import epsilon_label, figure_to_data_uri, number, safe_url
from dpfair.report.frames import read_cards, read_optional, slug, with_method
from dpfair.report.sections import (
    cards_with_metrics,
    compute_cost_section,
    gap_change_rows,
    method_comparison_rows,
    method_rows,
    series_by_method,
    speed_section,
    summary_rows,
    tradeoff_alt,
    tradeoff_rows,
)
from dpfair.report.synthesis import synthesis_section
from dpfair.report.tradeoff import auroc_costs, headline_gaps, tradeoff_points
from dpfair.report.tradeoff_figures import Styles, cost_figure, tradeoff_figure
from dpfair.report.tuning import tuning_rows
from dpfair.tables.summary import read_summary


def _dataset_section(
    name, meta, *, metrics, subgroups, changes, reliability, audit, audit_roc, points, styles, level, fidelity=None
) -> dict | None:
    m = metrics[metrics["dataset"] == name]
    g = subgroups[subgroups["dataset"] == name]
    if m.empty:
        return None
    epsilons = sorted(m["epsilon"].unique())
    drawn, drawn_groups = series_by_method(m), series_by_method(g)
    p = points[points["dataset"] == name]
    return {
        "name": name,
        "anchor": slug(name),
        "meta": meta,
        # the data card: test groups in natural order with their events, dropped columns, blank gaps explained
        "data_card": data_card(meta),
        "summary": summary_rows(m, epsilons, level),
        "attributes": sorted(g["attribute"].unique()),
        "tradeoff": {
            "figure": figure_to_data_uri(tradeoff_figure(p, styles)),
            "alt": tradeoff_alt(name, p),
            "rows": tradeoff_rows(p),
        }
        if not p.empty
        else None,
        "figures": {
            "utility": figure_to_data_uri(utility_figure(drawn, epsilons, level=level, styles=styles)),
            "subgroups": figure_to_data_uri(subgroup_figure(drawn_groups, epsilons)) if not g.empty else None,
            "gap": figure_to_data_uri(gap_figure(drawn, epsilons, level=level, styles=styles)) if not g.empty else None,
        },
        "gap_changes": gap_change_rows(changes[changes["dataset"] == name]),
        "reliability": figure_to_data_uri(reliability_figure(r, styles=styles))
        if not (r := reliability[reliability["dataset"] == name]).empty
        else None,
        "methods_by_epsilon": method_rows(m, level) if m["method"].nunique() > 1 else [],
        # issue 12: the fixed recipe beside the privately tuned one (dpfair.report.tuning)
        "tuning": tuning_rows(m),
        # DP synthesis (dpfair.report.synthesis): the synthetic rows' group shares and marginals against the real
        "synthesis": synthesis_section(fidelity, name),
        # the audit stage's section (dpfair.report.audit): claimed against certified ε, attacks, ROC, per group
        "audit": audit_section(
            audit=audit[audit["dataset"] == name],
            roc=audit_roc[audit_roc["dataset"] == name],
            level=level,
            to_uri=figure_to_data_uri,
        ),
    }


def _cost_rows(costs: pd.DataFrame, utility: pd.DataFrame | None, *, alpha: float, power: float = 0.8) -> list[dict]:
    """The AUROC cost table's rows: ``auroc_changes.csv``'s AUROC verdicts, else (older runs) ``costs``.

    A verdict row's cost cell holds the change with its interval and the verdict's class with the number
    the summary quotes for it (the 1 − 2α interval of an equivalence, the MDE of an inconclusive row).
    """
    rows = report_summary.utility_rows(utility)
    if rows is None:
        return [
            _cost_row(
                r,
                auroc=r["auroc"],
                reference=number(r["reference"]),
                cost=f"{number(r['cost'])} [{number(r['cost_low'])}, {number(r['cost_high'])}] (point estimate)",
            )
            for r in costs.to_dict("records")
        ]
    out = []
    for r in rows.sort_values(["dataset", "model", "method", "epsilon"]).to_dict("records"):
        reference = number(r["reference_value"])
        if str(r.get("reference_method", r["method"])) != r["method"]:
            reference += f" ({r['reference_method']})"
        change = f"{number(r['change'])} [{number(r['ci_low'])}, {number(r['ci_high'])}]"
        out.append(
            _cost_row(r, auroc=r["arm_value"], reference=reference, cost=f"{change}: {_verdict_note(r, alpha, power)}")
        )
    return out


def _cost_row(r: dict, *, auroc, reference: str, cost: str) -> dict:
    """One row of the AUROC cost table (both paths: verdicts and older point estimates)."""
    return {
        "id": slug("cost", r["dataset"], r["model"], r["method"], r["epsilon"]),
        "dataset": r["dataset"],
        "model": r["model"],
        "method": r["method"],
        "epsilon": epsilon_label(r["epsilon"]),
        "auroc": number(auroc),
        "reference": reference,
        "cost": cost,
        "n_seeds": int(r["n_seeds"]),
    }


def _verdict_note(r: dict, alpha: float, power: float) -> str:
    """The verdict's class with the number the summary quotes for it."""
    kind = str(r.get("verdict_class", ""))
    if kind == "equivalent":
        lo, hi = report_summary.equivalence_interval(r, alpha=alpha)
        return f"equivalent within ±{number(r['margin'])}, {100 * (1 - 2 * alpha):g}% [{number(lo)}, {number(hi)}]"
    if kind == "inconclusive":
        return str(report_summary.detects(r["mde"], power))
    return kind


def render_report(
    *,
    metrics: str | Path,
    subgroups: str | Path,
    dataset_meta: Iterable[str | Path],
    benchmark: dict,
    output: str | Path,
    privacy_cards: Iterable[str | Path] = (),
    gap_changes: str | Path | None = None,
    auroc_changes: str | Path | None = None,
    reliability: str | Path | None = None,
    compute_cost: str | Path | None = None,
    compute_ratios: str | Path | None = None,
    speed: str | Path | None = None,
    method_comparison: str | Path | None = None,
    method_comparison_groups: str | Path | None = None,
    gaps: str | Path | None = None,
    audit: str | Path | None = None,
    audit_roc: str | Path | None = None,
    synthesis_fidelity: str | Path | None = None,
    findings: str | Path | None = None,
    definition: dict | None = None,
    banner: str | None = None,
    status: dict | None = None,
) -> str:
    """Build every figure and table from the summary CSVs and write one HTML file.

    Args:
        metrics: the summary's ``metrics.csv``.
        subgroups: the summary's ``subgroups.csv``.
        dataset_meta: each dataset's ``dataset.json``.
        benchmark: the parts of the benchmark definition the header describes (name, grid, evaluation).
        output: where the page goes.
        privacy_cards: every run's ``privacy_card.json`` (the methods section lists each run's statement).
        gap_changes: ``gap_changes.csv`` (the fairness section's changes across ε), optional.
        auroc_changes: ``auroc_changes.csv`` (:func:`dpfair.tables.utility_changes.auroc_changes`): the verdicts
            the summary's AUROC sentences and the cross-dataset rule of thumb read, and the rows of the AUROC
            cost table. Without it (absent, or a result folder from before it) those sentences give point
            estimates and say so.
        reliability: ``reliability.csv`` (the calibration figures), optional.
        gaps: ``gaps.csv`` in the fairness-statistics form (``ci_low``/``ci_high`` per row): the trade-off
            figures' gap; without it, ``metrics``'s ``auroc_gap``.
        compute_cost: ``compute_cost.csv``, written with ``compute_ratios`` by the aggregate rule.
        compute_ratios: ``compute_ratios.csv`` (the compute-cost section's ratios to ε = ∞).
        speed: ``results/speed.csv`` (the speed section).
        method_comparison: ``method_comparison.csv`` (each mitigation against dpsgd), optional.
        method_comparison_groups: its per-group rows (``method_comparison_groups.csv``), optional.
        audit: ``results/summary/audit.csv`` (long format, one row per attack and metric, from the audit stage's
            ``aggregate_audit`` rule): the summary quotes it and each dataset's audit section
            (:func:`dpfair.report.audit.audit_section`) shows it.
        audit_roc: the attacks' ROC points (``audit_roc.csv``), drawn in the audit section.
        synthesis_fidelity: ``synthesis_fidelity.csv`` (:mod:`dpfair.synthesis.fidelity`), for a grid that runs
            a DP synthesis method: each dataset's section shows its group shares and marginals.
        findings: ``findings.csv`` (:mod:`dpfair.findings.table`), for a benchmark that pools its datasets: the
            Findings section, first on the page.
        definition: the whole validated benchmark definition: printed in the methods section with its
            sha256 (:func:`dpfair.report.methods.definition_hash`).
        banner: trusted HTML rendered above the summary, or None.
        status: :func:`dpfair.pipeline.outcome.run_status`'s account of the grid, shown in the banner: how many of the
            grid's runs finished under the current definition (the page shows only those, each with its definition
            hash) and, for an incomplete grid, which preparations and runs failed and why, and which are stale.
            "complete" only when ``status["complete"]``; the tables given must hold only the current runs.

    Raises:
        DpfairError: ``compute_cost`` without ``compute_ratios`` or the other way round.
    """
    if (compute_cost is None) != (compute_ratios is None):
        raise DpfairError(
            "render_report: give compute_cost and compute_ratios together (both come from the aggregate rule)"
        )
    metrics_df = with_method(read_summary(metrics))
    subgroups_df = with_method(read_summary(subgroups))
    changes_df = with_method(read_summary(gap_changes) if gap_changes else pd.DataFrame(columns=GAP_CHANGE_COLUMNS))
    reliability_df = read_summary(reliability) if reliability else pd.DataFrame(columns=["dataset"])
    gaps_df, audit_df = read_optional(gaps), read_optional(audit)
    utility_df = read_optional(auroc_changes)
    audit_frame = audit_df if audit_df is not None else pd.DataFrame(columns=["dataset", "attribute"])
    # text, also where no per-group row gave the column a value (or an older table lacks it)
    audit_frame = audit_frame.assign(
        attribute=audit_frame.get("attribute", pd.Series(math.nan, index=audit_frame.index)).astype(object)
    )
    audit_roc_df = read_summary(audit_roc) if audit_roc else pd.DataFrame(columns=["dataset"])
    fidelity_df = read_optional(synthesis_fidelity)
    metas = {m["name"]: m for m in (json.loads(Path(p).read_text()) for p in dataset_meta)}
    cards = cards_with_metrics(read_cards(privacy_cards), metrics_df)
    comparison = method_comparison_rows(method_comparison, method_comparison_groups)
    level = float(benchmark.get("evaluation", {}).get("ci_level", 0.95))
    min_group_size = int(benchmark.get("evaluation", {}).get("min_group_size", 0))
    margin = float(benchmark.get("evaluation", {}).get("equivalence_margin", 0.03))
    alpha = float(benchmark.get("evaluation", {}).get("alpha", 0.05))
    power = float(benchmark.get("evaluation", {}).get("power", 0.8))
    styles = Styles(epsilons=metrics_df["epsilon"].unique(), methods=metrics_df["method"].unique())
    points = tradeoff_points(metrics_df, gaps_df, level=level)
    _, gap_source = headline_gaps(metrics_df, gaps_df)
    costs = auroc_costs(metrics_df, level=level)
    sections = [
        s
        for name, meta in metas.items()
        if (
            s := _dataset_section(
                name,
                meta,
                metrics=metrics_df,
                subgroups=subgroups_df,
                changes=changes_df,
                reliability=reliability_df,
                audit=audit_frame,
                audit_roc=audit_roc_df,
                fidelity=fidelity_df,
                points=points,
                styles=styles,
                level=level,
            )
        )
    ]
    for s in sections:  # fairness mitigations against dpsgd at the same ε (dpfair.tables.method_comparison)
        s["method_comparison"] = [r for r in comparison if r["dataset"] == s["name"]]
    summary = []
    for s in sections:
        name = s["name"]
        m = metrics_df[metrics_df["dataset"] == name]
        summary.append(
            {
                "name": name,
                "anchor": s["anchor"],
                "sentences": [
                    *report_summary.cost_sentences(
                        name, costs, m, level=level, utility=utility_df, alpha=alpha, margin=margin, power=power
                    ),
                    report_summary.gap_sentence(name, changes_df, power=power),
                    report_summary.audit_sentence(name, m, audit_df),
                    report_summary.method_sentence(name, points),
                ],
                "caveats": report_summary.caveats(
                    name,
                    meta=metas[name],
                    metrics=m,
                    subgroups=subgroups_df,
                    cards=cards,
                    min_group_size=min_group_size,
                    changes=changes_df,
                    margin=margin,
                ),
            }
        )
    across = {
        "figure": figure_to_data_uri(cost_figure(costs, styles)) if not costs.empty else None,
        "rule": report_summary.rule_of_thumb(costs, utility_df, alpha=alpha, margin=margin, power=power),
        "rows": _cost_rows(costs, utility_df, alpha=alpha, power=power),
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
        findings=findings_section(pd.read_csv(findings)) if findings else None,
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
            "definition_pretty": json.dumps(
                json.loads(report_methods.canonical_definition(definition)), indent=1, ensure_ascii=False
            )
            if definition
            else None,
            "hash": report_methods.definition_hash(definition) if definition else None,
            "checklist": report_methods.checklist(
                metrics=metrics_df,
                subgroups=subgroups_df,
                changes=changes_df,
                reliability=reliability_df,
                cards=cards,
                metas=metas,
                audit=audit_df,
                compute_cost=cost_section is not None,
                definition=definition is not None,
            ),
        },
        level=f"{100 * level:g}",
        epsilons=", ".join(epsilon_label(float(e)) for e in benchmark.get("epsilons", [])),
        generated=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        environment={
            "dpfair": dpfair.__version__,
            "torch": torch.__version__,
            "opacus": opacus.__version__,
            "python": platform.python_version(),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, "
            + (torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"),
        },
        fmt=number,
    )
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_text(html, encoding="utf-8")
    return html
