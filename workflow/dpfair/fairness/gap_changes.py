"""Change of each gap from ε = ∞ to each finite ε, its interval, p-value, family and verdict.

The compared quantity is the **excess gap**, gap − null_gap of each run (:mod:`dpfair.fairness.gaps`):
the max − min gap of noisy estimates is positive even without any disparity, and that noise floor grows
as AUROC falls, so a raw gap change would show a spurious widening whenever DP lowers accuracy. The
permutation null of each run removes its own noise floor; with no true disparity the excess gap is 0 in
expectation at every ε. (When a true gap is large compared with the noise, max − min is nearly
unbiased and the excess gap understates it by up to ``null_gap``; ``raw_gap_change`` is reported too.)

Per (dataset, model, [method,] attribute, metric, ε), with k seeds and B paired bootstrap replicates:

* ``gap_change`` = mean over seeds of excess_ε − mean over seeds of excess_∞.
* Test-set variance: D_b = mean_s gap_ε,s,b − mean_s gap_∞,s,b; replicate b is the same resample of the
  same test rows in every run (paired across ε). Seed (training) variance: d_s = excess_ε,s − excess_∞,s
  paired by seed (Welch when the seeds differ), se = sd(d_s)/√k, added as se · T_b, T_b ~ t(k − 1).
  The centred replicates z_b = D_b − mean(D) + se · T_b estimate the statistic's sampling error.
* Interval: ``gap_change`` + the ``level`` quantiles of z_b. ``p_value`` (two-sided, of "no change"):
  (1 + #{|z_b| ≥ |gap_change|}) / (1 + B).
* ``family``: ``headline`` for the gap metrics the registry marks ``headline``
  (:func:`~dpfair.fairness.metrics_registry.headline_metrics`: AUROC and TPR, i.e. equal opportunity),
  per dataset over every model, attribute and ε; ``exploratory`` otherwise (unregistered names too).
  ``p_adjusted``: Holm's step-down adjustment within each (dataset, family) (Holm, Scand J Stat 1979),
  which controls the family-wise error rate under any dependence between the tests (the gaps of one
  dataset share a test set, so they are dependent).
* ``verdict``: "widens" / "narrows" only for a headline row with ``p_adjusted`` < ``alpha``; other
  headline rows say "no change detected"; exploratory rows say "exploratory" and give the unadjusted p.

Baselines missing from the inputs (no ε = ∞ run) give no rows (logged).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd

from dpfair.fairness._inputs import require, stream
from dpfair.fairness.metrics_registry import gap_label, is_headline
from dpfair.privacy.params import format_epsilon

log = logging.getLogger(__name__)

#: Key columns in order; ``method`` is used when the inputs have it.
KEY_COLUMNS = ("dataset", "model", "method", "attribute", "metric")
GAP_CHANGE_COLUMNS = [
    "dataset",
    "model",
    "attribute",
    "metric",
    "epsilon",
    "gap_change",
    "ci_low",
    "ci_high",
    "p_value",
    "p_adjusted",
    "family",
    "verdict",
    "raw_gap_change",
]
HEADLINE, EXPLORATORY = "headline", "exploratory"


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjusted p-values (NaN stays NaN and does not count towards the family size).

    Example:
        >>> holm([0.01, 0.04, 0.03, np.nan]).round(3).tolist()
        [0.03, 0.06, 0.06, nan]
    """
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    order = ok[np.argsort(p[ok], kind="stable")]
    m = len(order)
    adjusted = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
    out[order] = adjusted
    return out


def gap_changes(
    *,
    estimates: pd.DataFrame,
    replicates: pd.DataFrame,
    level: float = 0.95,
    alpha: float = 0.05,
    digits: int = 2,
    seed: int = 0,
) -> pd.DataFrame:
    """Gap changes vs ε = ∞ (see the module docstring) from the runs' gaps and gap replicates.

    ``estimates``: dataset, model, [method,] epsilon, seed, attribute, metric, gap, null_gap (the runs'
    gaps tables); ``replicates``: the same keys, replicate, gap (the runs' gap replicates, all runs of a
    dataset evaluated with the same bootstrap seed). ``epsilon`` is a float with ``inf`` for non-private.

    Example:
        >>> est = pd.DataFrame({"dataset": "d", "model": "m", "epsilon": [np.inf, 1.0], "seed": 0,
        ...                     "attribute": "sex", "metric": "auroc", "gap": [0.02, 0.06], "null_gap": 0.01})
        >>> rng = np.random.default_rng(0); b = rng.normal(0, 0.01, 1000)
        >>> rep = pd.concat([est.drop(columns=["gap", "null_gap"]).assign(replicate=r, gap=est["gap"] + b[r]) for r in range(1000)])
        >>> gap_changes(estimates=est, replicates=rep).loc[0, "verdict"]
        'DP at ε = 1 widens the sex gap in AUROC by 0.04 [0.04, 0.04] (Holm-adjusted p = 0.001)'
    """
    keys = [k for k in KEY_COLUMNS if k in estimates.columns]
    require(estimates, [*keys, "epsilon", "seed", "gap", "null_gap"], "estimates")
    require(replicates, [*keys, "epsilon", "seed", "replicate", "gap"], "replicates")
    q = ((1 - level) / 2, 1 - (1 - level) / 2)
    estimates = estimates.assign(
        epsilon=estimates["epsilon"].astype(float),
        excess=estimates["gap"].astype(float) - estimates["null_gap"].astype(float),
    )
    replicates = replicates.assign(epsilon=replicates["epsilon"].astype(float))
    if estimates.duplicated([*keys, "epsilon", "seed"]).any():
        raise ValueError(f"estimates has more than one row for a ({', '.join(keys)}, epsilon, seed)")
    rep_groups = dict(tuple(replicates.groupby(keys, sort=False)))
    rows = []
    for key, cell in estimates.groupby(keys, sort=True):
        named = dict(zip(keys, key))
        base = cell[np.isinf(cell["epsilon"])]
        if base.empty:
            log.warning("gap_changes: no epsilon=inf run for %s; skipped", named)
            continue
        cell_reps = rep_groups.get(key)
        if cell_reps is None:
            raise ValueError(f"no replicates for {named}")
        base_nulls = base.set_index("seed")["null_gap"].astype(float)
        base_point = base.set_index("seed")["excess"]
        base_reps = _seed_by_replicate(cell_reps[np.isinf(cell_reps["epsilon"])], base_point.index, named).sub(
            base_nulls, axis=0
        )
        for eps in sorted(e for e in cell["epsilon"].unique() if not math.isinf(e)):
            arm = cell[cell["epsilon"] == eps].set_index("seed")
            arm_point = arm["excess"]
            arm_reps = _seed_by_replicate(cell_reps[cell_reps["epsilon"] == eps], arm_point.index, named).sub(
                arm["null_gap"].astype(float), axis=0
            )
            common = arm_reps.columns.intersection(base_reps.columns)
            d_test = (
                arm_reps[common].mean(axis=0, skipna=False) - base_reps[common].mean(axis=0, skipna=False)
            ).to_numpy()
            d_test = d_test[~np.isnan(d_test)]
            change = float(arm_point.mean(skipna=False) - base_point.mean(skipna=False))
            raw = float(
                arm["gap"].astype(float).mean(skipna=False)
                - base.set_index("seed")["gap"].astype(float).mean(skipna=False)
            )
            se, df = _seed_error(arm_point, base_point)
            rng = np.random.default_rng(stream(seed, "|".join(map(str, (*key, eps)))))
            z = d_test - d_test.mean() if len(d_test) else d_test
            if se > 0:
                z = z + se * rng.standard_t(df, len(z))
            if math.isnan(change) or len(z) == 0:
                low = high = p = math.nan
            else:
                low, high = (change + float(v) for v in np.quantile(z, q))
                p = float((1 + np.sum(np.abs(z) >= abs(change) - 1e-12)) / (1 + len(z)))
            family = HEADLINE if is_headline(named["metric"]) else EXPLORATORY
            rows.append(
                {
                    **named,
                    "epsilon": eps,
                    "gap_change": change,
                    "ci_low": low,
                    "ci_high": high,
                    "p_value": p,
                    "family": family,
                    "raw_gap_change": raw,
                }
            )
    columns = [*keys, *GAP_CHANGE_COLUMNS[4:]]
    table = pd.DataFrame(rows, columns=[c for c in columns if c not in ("p_adjusted", "verdict")])
    table["p_adjusted"] = np.nan
    for _, part in table.groupby(["dataset", "family"], sort=False):
        table.loc[part.index, "p_adjusted"] = holm(part["p_value"].to_numpy())
    table["verdict"] = [
        _verdict(
            r["attribute"],
            r["metric"],
            r["epsilon"],
            r["gap_change"],
            r["ci_low"],
            r["ci_high"],
            r["p_value"],
            r["p_adjusted"],
            r["family"],
            alpha,
            digits,
        )
        for r in table.to_dict("records")
    ]
    return table[columns]


def _seed_by_replicate(reps: pd.DataFrame, seeds: pd.Index, key) -> pd.DataFrame:
    table = reps.pivot_table(index="seed", columns="replicate", values="gap", aggfunc="first", dropna=False)
    missing = set(seeds) - set(table.index)
    if missing:
        raise ValueError(f"replicates lack seeds {sorted(missing)} for {key}")
    return table.loc[list(seeds)].astype(float)


def _seed_error(arm: pd.Series, base: pd.Series) -> tuple[float, float]:
    """Standard error of the seed-mean difference from training (seed) variation, and its df."""
    if set(arm.index) == set(base.index):
        d = (arm - base.reindex(arm.index)).to_numpy(dtype=float)
        if len(d) < 2 or np.isnan(d).any():
            return 0.0, 1.0
        return float(np.std(d, ddof=1) / math.sqrt(len(d))), float(len(d) - 1)
    parts = [
        (np.var(x, ddof=1) / len(x), len(x))
        for x in (arm.to_numpy(dtype=float), base.to_numpy(dtype=float))
        if len(x) > 1
    ]
    if not parts or any(np.isnan(v) for v, _ in parts):
        return 0.0, 1.0
    var = sum(v for v, _ in parts)
    df = var**2 / sum(v**2 / (k - 1) for v, k in parts) if var > 0 else 1.0
    return float(math.sqrt(var)), float(df)


def _verdict(attribute, metric, epsilon, change, low, high, p, p_adj, family, alpha, digits) -> str:
    label = gap_label(metric)
    where = f"DP at ε = {format_epsilon(epsilon)}"
    if any(math.isnan(v) for v in (change, low, high)):
        return f"{where}: the {attribute} gap in {label} could not be estimated"
    f = lambda x: _number(x, digits=digits)  # noqa: E731
    if family == EXPLORATORY:
        return (
            f"{where}: exploratory, the {attribute} gap in {label} changed by {f(change)} "
            f"[{f(low)}, {f(high)}] (unadjusted p = {_p(p)})"
        )
    if p_adj < alpha and change > 0:
        return f"{where} widens the {attribute} gap in {label} by {f(change)} [{f(low)}, {f(high)}] (Holm-adjusted p = {_p(p_adj)})"
    if p_adj < alpha and change < 0:
        return f"{where} narrows the {attribute} gap in {label} by {f(-change)} [{f(-high)}, {f(-low)}] (Holm-adjusted p = {_p(p_adj)})"
    return f"{where}: no change detected in the {attribute} gap in {label} ({f(change)} [{f(low)}, {f(high)}], Holm-adjusted p = {_p(p_adj)})"


def _p(p: float) -> str:
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1g}"


def _number(x: float, *, digits: int) -> str:
    text = f"{x:.{digits}f}"
    if float(text) == 0:
        text = text.lstrip("-")
    return text.replace("-", "−")
