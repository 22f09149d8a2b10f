"""Input checks and small numeric helpers shared by the fairness modules."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pandas as pd


def labels(y) -> np.ndarray:
    y = np.asarray(y)
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 or 1")
    return y.astype(int)


def scores(score, n: int) -> np.ndarray:
    s = np.asarray(score, dtype=float)
    if s.shape != (n,):
        raise ValueError(f"expected {n} scores, got shape {s.shape}")
    if np.isnan(s).any() or (s < 0).any() or (s > 1).any():
        raise ValueError("scores must be probabilities in [0, 1] without NaN")
    return s


def interval(values: np.ndarray, q) -> tuple[float, float]:
    """Percentile interval of the non-NaN values (NaN, NaN when there are none)."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return math.nan, math.nan
    low, high = np.quantile(values, q)
    return float(low), float(high)


def quantiles(level: float) -> tuple[float, float]:
    return (1 - level) / 2, 1 - (1 - level) / 2


def stream(seed: int, name: str) -> list[int]:
    """Seed of the random stream for ``name``: depends on the name, not on the order of evaluation."""
    return [int(seed), zlib.crc32(name.encode())]


def require(frame: pd.DataFrame, columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} lacks columns {missing}")
