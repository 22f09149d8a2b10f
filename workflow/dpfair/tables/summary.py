"""Summary tables: stack per-run CSVs, derive the gap changes, and read the tables back."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

from dpfair.fairness import GAP_CHANGE_COLUMNS, gap_changes
from dpfair.fairness.gap_changes import primary_families
from dpfair.tables.columns import join_loss_columns, metric_columns

NA_VALUES = ["", "nan", "NaN"]


def concat_csvs(paths: Iterable[str | Path], output: str | Path | None = None) -> pd.DataFrame:
    """Stack per-run CSVs into one table, written to ``output`` if given.

    Only :data:`NA_VALUES` read as missing, so a group coded ``NA`` stays a group; header-only tables are
    left out unless every table is one, so the result keeps its columns.
    """
    frames = [pd.read_csv(p, keep_default_na=False, na_values=NA_VALUES, dtype={"group": str}) for p in paths]
    # header-only tables (no sensitive attributes) still give the summary its columns
    frames = [f for f in frames if not f.empty] or frames[:1]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if output is not None:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(output, index=False)
    return table


def statistics_options(config: Mapping) -> dict:
    """The verdicts' settings from a benchmark config: primary families, margin, α and power.

    Example:
        >>> opts = statistics_options({"datasets": {"d": {"primary": {"attributes": ["site"]}}}, "evaluation": {}})
        >>> opts["primary"]["d"].attributes, opts["margin"], opts["alpha"], opts["power"]
        (('site',), 0.03, 0.05, 0.8)
    """
    evaluation = config.get("evaluation") or {}
    return {
        "primary": primary_families(config.get("datasets") or {}),
        "margin": float(evaluation.get("equivalence_margin", 0.03)),
        "alpha": float(evaluation.get("alpha", 0.05)),
        "power": float(evaluation.get("power", 0.8)),
    }


def summarise(
    *,
    inputs: dict[str, list],
    outputs: dict[str, str | Path],
    level: float = 0.95,
    audit: str | Path | None = None,
    statistics: Mapping | None = None,
) -> None:
    """Stack every run's tables and compute ``gap_changes.csv`` (each gap at ε vs ε = ∞, with a verdict).

    With an ``auroc_changes`` output, also each AUROC (and TPR) cost at ε against ε = ∞ with its verdict
    (:func:`dpfair.tables.utility_changes.auroc_changes`).

    ``statistics``: :func:`statistics_options` of the benchmark (default: every dataset's default primary
    family, margin 0.03, α 0.05, power 0.8). With ``audit`` (the audit stage's ``audit.csv``), metrics.csv's ``mia_*`` columns and subgroups.csv's
    ``mia_auroc`` are joined in from its loss attack, run by run and method by method
    (:func:`~dpfair.tables.columns.join_loss_columns`: empty for a run that was not audited), before either
    table is written, so each is written once.
    """
    stacked = {name: concat_csvs(inputs[name]) for name in ("metrics", "subgroups", "gaps", "reliability")}
    if audit is not None:
        stacked["metrics"], stacked["subgroups"] = _with_audit(stacked["metrics"], stacked["subgroups"], audit)
    for name, table in stacked.items():
        Path(outputs[name]).parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(outputs[name], index=False)
    estimates = read_summary(outputs["gaps"])
    replicates = concat_csvs(inputs["replicates"])
    if estimates.empty:
        changes = pd.DataFrame(columns=GAP_CHANGE_COLUMNS)
    else:
        replicates["epsilon"] = replicates["epsilon"].astype(float)
        changes = gap_changes(
            estimates=estimates,
            replicates=replicates,
            groups=read_summary(outputs["subgroups"]),
            level=level,
            **(statistics or {}),
        )
    changes.to_csv(outputs["gap_changes"], index=False)
    if "auroc_changes" in outputs:
        from dpfair.tables.utility_changes import auroc_changes

        options = {k: v for k, v in (statistics or {}).items() if k in ("margin", "alpha", "power")}
        metrics = read_summary(outputs["metrics"])
        costs = auroc_changes(estimates=metrics, replicates=replicates, level=level, **options)
        costs.to_csv(outputs["auroc_changes"], index=False)


def read_summary(path: str | Path) -> pd.DataFrame:
    """Read a summary table; group labels stay strings, ``epsilon`` is a float (``inf`` for non-private)."""
    table = pd.read_csv(path, dtype={"group": str}, keep_default_na=False, na_values=NA_VALUES)
    if "epsilon" in table.columns:
        table["epsilon"] = table["epsilon"].astype(float)
    return table


def _with_audit(metrics: pd.DataFrame, subgroups: pd.DataFrame, audit: str | Path):
    """Metrics and subgroups with the loss attack's columns of ``audit.csv``, in metrics.csv's column order."""
    table = pd.read_csv(
        audit, keep_default_na=False, na_values=NA_VALUES, dtype={"group": str, "attribute": str, "note": str}
    )
    table["epsilon"] = table["epsilon"].astype(float)
    metrics = metrics.astype({"attribute": str}) if "attribute" in metrics else metrics
    subgroups = subgroups.astype({"group": str, "attribute": str}) if "group" in subgroups else subgroups
    for frame in (metrics, subgroups):
        if "epsilon" in frame:
            frame["epsilon"] = frame["epsilon"].astype(float)
    merged, sub = join_loss_columns(metrics=metrics, subgroups=subgroups, audit=table)
    ordered = [c for c in metric_columns() if c in merged.columns]
    return merged[[*ordered, *(c for c in merged.columns if c not in ordered)]], sub
