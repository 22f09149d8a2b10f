"""The verdict classes of findings.csv, each read off an interval at the table's level (95% by default).

* finding 1, non-inferiority at ``margin``: ``non-inferior`` when the interval's lower end is above −margin (a
  one-sided test at 2.5%), ``inferior`` when its upper end is below −margin, else ``inconclusive``;
* finding 2, the AUROC change: ``costs beyond the margin`` (upper end below −margin), ``costs within the margin``
  (below 0, lower end above −margin), ``costs`` (below 0, crossing −margin), ``gains`` (above 0),
  ``equivalent`` (the whole interval inside ±margin), else ``inconclusive``. Dataset and pooled rows are
  classed alike, at the findings' margin;
* finding 3, the oriented gap change: ``widens`` / ``narrows`` (the interval excludes 0), ``equivalent`` (the
  whole interval inside ±margin: stricter than a 90% two-one-sided test, and never contradicting the interval
  the row prints), else ``inconclusive`` with the change it would detect at ``power``;
* a moderator (the ε = 1 change on log n_train, imaging against tabular): the slope's interval above or below
  0, else ``no detected dependence``.
"""

from __future__ import annotations

import math

from dpfair.fairness.contrasts import minimum_detectable


def non_inferiority(low: float, high: float, margin: float) -> str:
    """Finding 1's class from an interval and the margin."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return "undefined"
    if low > -margin:
        return "non-inferior"
    if high < -margin:
        return "inferior"
    return "inconclusive"


def cost(low: float, high: float, margin: float) -> str:
    """Finding 2's class from an interval and the margin."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return "undefined"
    if high < -margin:
        return "costs beyond the margin"
    if high < 0:
        return "costs within the margin" if low > -margin else "costs"
    if low > 0:
        return "gains"
    if -margin < low and high < margin:
        return "equivalent"
    return "inconclusive"


def gap_change(low: float, high: float, margin: float) -> str:
    """Finding 3's class from the oriented change's interval and the equivalence margin."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return "undefined"
    if low > 0:
        return "widens"
    if high < 0:
        return "narrows"
    if -margin < low and high < margin:
        return "equivalent"
    return "inconclusive"


def detectable(se: float, df: float, *, alpha: float, power: float) -> float:
    """The change a two-sided level-``alpha`` t test on ``df`` detects with ``power`` (exact, noncentral t)."""
    return minimum_detectable(se, df if math.isfinite(df) else math.inf, alpha=alpha, power=power, bounded=False)


def moderator(low: float, high: float, *, above: str, below: str) -> str:
    """A slope's class: ``above`` when its interval is above 0, ``below`` when below, else no detected dependence."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return "undefined"
    if low > 0:
        return above
    if high < 0:
        return below
    return "no detected dependence"
