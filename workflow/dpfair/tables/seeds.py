"""Means over seeds with intervals that carry the test set's variance, for every table and figure that averages runs."""

from __future__ import annotations

import math

import pandas as pd
from scipy import stats


def mean_interval(
    values: pd.Series, level: float = 0.95, *, test_se: pd.Series | None = None
) -> tuple[float, float, float]:
    """Mean over seeds with an interval for it.

    The seed term is a t-interval half-width over the seeds. All seeds share one test set, so the spread
    between seeds leaves out test-set variance; where the runs' bootstrap standard errors ``test_se``
    are given, their mean square is added (it does not shrink with more seeds):
    half = sqrt((t·sd/√k)² + (z·se_test)²). NaN bounds when neither term is available.

    Example:
        >>> m, lo, hi = mean_interval(pd.Series([0.70, 0.72, 0.74]), test_se=pd.Series([0.02, 0.02, 0.02]))
        >>> round(m, 2), round(hi - m, 3)
        (0.72, 0.063)
    """
    finite = values.notna()
    v = values[finite].to_numpy(dtype=float)
    if len(v) == 0:
        return math.nan, math.nan, math.nan
    m = float(v.mean())
    seed_half = stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)) if len(v) > 1 else math.nan
    test_half = math.nan
    if test_se is not None and test_se[finite].notna().any():
        test_half = stats.norm.ppf(0.5 + level / 2) * math.sqrt(float((test_se[finite].dropna() ** 2).mean()))
    terms = [h for h in (seed_half, test_half) if not math.isnan(h)]
    if not terms:
        return m, math.nan, math.nan
    half = math.sqrt(sum(h * h for h in terms))
    return m, m - half, m + half


def seed_summary(table: pd.DataFrame, value: str, by: list[str], level: float = 0.95) -> pd.DataFrame:
    """Mean of ``value`` over seeds with :func:`mean_interval`'s interval for each combination of ``by``.

    Where the table has ``<value>_ci_low``/``<value>_ci_high`` (per-run bootstrap intervals), their
    implied standard errors carry the test-set variance into the interval.
    """
    z = stats.norm.ppf(0.5 + level / 2)
    has_ci = f"{value}_ci_low" in table.columns and f"{value}_ci_high" in table.columns
    rows = []
    for key, part in table.groupby(by, sort=True, dropna=False):
        test_se = (part[f"{value}_ci_high"] - part[f"{value}_ci_low"]) / (2 * z) if has_ci else None
        m, lo, hi = mean_interval(part[value], level, test_se=test_se)
        rows.append(
            {
                **dict(zip(by, key if isinstance(key, tuple) else (key,))),
                "mean": m,
                "low": lo,
                "high": hi,
                "n_seeds": int(part[value].notna().sum()),
            }
        )
    return pd.DataFrame(rows)
