"""Summary tables: stacking per-run CSVs, and reading them back with ε as a float (``inf`` included)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import pandas as pd


def concat_csvs(paths: Iterable[str | Path], output: str | Path) -> pd.DataFrame:
    frames = [pd.read_csv(p, keep_default_na=False, na_values=["", "nan", "NaN"]) for p in paths]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(output, index=False)
    return table


def read_summary(path: str | Path) -> pd.DataFrame:
    """Read ``metrics.csv`` or ``subgroups.csv``; group labels stay strings, ``epsilon`` is a float."""
    table = pd.read_csv(path, dtype={"group": str}, keep_default_na=False, na_values=["", "nan", "NaN"])
    table["epsilon"] = table["epsilon"].astype(float)
    return table
