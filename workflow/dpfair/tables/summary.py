"""Summary tables: stack per-run CSVs, derive the gap changes, and read the tables back."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from dpfair.fairness import GAP_CHANGE_COLUMNS, gap_changes

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


def summarise(*, inputs: dict[str, list], outputs: dict[str, str | Path], level: float = 0.95) -> None:
    """Stack every run's tables and compute ``gap_changes.csv`` (each gap at ε vs ε = ∞, with a verdict)."""
    for name in ("metrics", "subgroups", "gaps", "reliability"):
        concat_csvs(inputs[name], outputs[name])
    estimates = read_summary(outputs["gaps"])
    replicates = concat_csvs(inputs["replicates"])
    if estimates.empty:
        changes = pd.DataFrame(columns=GAP_CHANGE_COLUMNS)
    else:
        replicates["epsilon"] = replicates["epsilon"].astype(float)
        changes = gap_changes(estimates=estimates, replicates=replicates, level=level)
    changes.to_csv(outputs["gap_changes"], index=False)


def read_summary(path: str | Path) -> pd.DataFrame:
    """Read a summary table; group labels stay strings, ``epsilon`` is a float (``inf`` for non-private)."""
    table = pd.read_csv(path, dtype={"group": str}, keep_default_na=False, na_values=NA_VALUES)
    if "epsilon" in table.columns:
        table["epsilon"] = table["epsilon"].astype(float)
    return table
