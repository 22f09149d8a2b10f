"""What DP training costs in utility: each headline metric at each finite ε against ε = ∞, with a verdict.

Per (dataset, model, method, metric, ε) — the metrics are the headline ones
(:func:`~dpfair.fairness.metrics_registry.headline_metrics`: AUROC and TPR) that the tables carry — the
whole-test-set value of the ε runs against the ε = ∞ runs of the same (dataset, model, method); a method
without ε = ∞ runs (a mitigation, a tuned arm) is compared with :data:`REFERENCE_METHOD` at ε = ∞ of the
same model, and ``reference_method`` says so.

* ``change`` = mean over seeds of the ε runs' values − mean over seeds of the reference runs' values
  (the runs' point values, metrics.csv). Negative is a cost.
* Standard error, df, ``ratio``, interval, p-value and minimum detectable change (MDE) from
  :func:`dpfair.fairness.contrasts.seed_contrast`: se² = S²/k + c̄, S² the spread of the seeds' values (of
  the per-seed differences when both arms have the same seeds: a seed gives both the same initial weights
  and batches), c̄ the mean between-seed covariance of the runs' whole-test-set bootstrap replicates
  (the ``overall`` rows of ``gap_replicates.csv.gz``; replicate b is the same resample of the same test
  rows in every run of a dataset), ν = k − 1 df and the nuisance-ratio bound ``ratio``, from which
  :func:`~dpfair.fairness.contrasts.interval_of` rebuilds any interval of the row.
  A per-run interval's width is **not** used: the seed spread already holds each run's own test noise.
* ``verdict_class`` (:func:`dpfair.fairness.contrasts.classify`): ``costs`` / ``gains`` when p < ``alpha``;
  ``equivalent`` when the TOST p (``p_equivalence``) is below α, i.e. the 1 − 2α interval lies within
  ±``margin``; otherwise ``inconclusive``, with the MDE at ``power``; ``one model`` with one seed per arm
  (the seed-to-seed spread is unknown, so no verdict; ``se`` and the interval then carry the test-set noise
  only and ``p_value``/``p_equivalence``/``mde`` are empty); ``undefined`` without a value or replicates to
  judge by. ``within_margin``: the 1 − 2α interval lies inside ±``margin`` (false without a verdict); a cost
  or gain that is also within the margin keeps its class and its sentence calls it practically negligible.

The p-values (both) are per row, not adjusted over the grid's ε and models: there is no declared family
here, and the verdict reads one comparison.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd

from dpfair.fairness.contrasts import DOWN, EQUIVALENT, INCONCLUSIVE, ONE_MODEL, UNDEFINED, UP, classify, seed_contrast
from dpfair.fairness.metrics_registry import get_metric, headline_metrics
from dpfair.fairness.subgroups import OVERALL

log = logging.getLogger(__name__)

#: The method whose ε = ∞ runs stand in for a method that has none.
REFERENCE_METHOD = "dpsgd"
RUN_KEYS = ["dataset", "model", "method", "epsilon", "seed"]
COSTS, GAINS = "costs", "gains"
#: The verdict classes, from :func:`~dpfair.fairness.contrasts.classify`'s.
CLASSES = {
    UP: GAINS,
    DOWN: COSTS,
    EQUIVALENT: EQUIVALENT,
    INCONCLUSIVE: INCONCLUSIVE,
    ONE_MODEL: ONE_MODEL,
    UNDEFINED: UNDEFINED,
}
UTILITY_CHANGE_COLUMNS = [
    "dataset",
    "model",
    "method",
    "reference_method",
    "metric",
    "epsilon",
    "n_seeds",
    "n_reference_seeds",
    "paired_by_seed",
    "arm_value",
    "reference_value",
    "change",
    "ci_low",
    "ci_high",
    "se",
    "df",
    "ratio",
    "p_value",
    "p_equivalence",
    "mde",
    "margin",
    "within_margin",
    "verdict_class",
    "verdict",
]


def auroc_changes(
    *,
    estimates: pd.DataFrame,
    replicates: pd.DataFrame,
    margin: float = 0.03,
    alpha: float = 0.05,
    level: float = 0.95,
    power: float = 0.8,
) -> pd.DataFrame:
    """The utility-change table (:data:`UTILITY_CHANGE_COLUMNS`; see the module docstring).

    Args:
        estimates: stacked metrics.csv rows (run keys ``dataset, model, method, epsilon, seed`` and one
            column per metric, e.g. ``auroc``, ``tpr``; one row per attribute, so a run may repeat).
        replicates: stacked ``gap_replicates.csv.gz`` with the run keys; only the rows with attribute =
            group = ``overall`` are read (``metric``, ``replicate``, ``value``).
        margin: the equivalence margin (in the metric's units).
        alpha: the test level; equivalence uses the 1 − 2α interval.
        level: the coverage of ``ci_low``/``ci_high``.
        power: the power at which ``mde`` is stated.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> shared = rng.normal(0, 0.01, 200)  # one test set: every run's replicates move with it
        >>> est, reps = [], []
        >>> for eps, mean in ((1.0, 0.75), (np.inf, 0.80)):
        ...     for seed in range(5):
        ...         value = mean + rng.normal(0, 0.005)
        ...         est.append({"dataset": "d", "model": "m", "method": "dpsgd", "epsilon": eps, "seed": seed,
        ...                     "auroc": value})
        ...         reps.append(pd.DataFrame({"dataset": "d", "model": "m", "method": "dpsgd", "epsilon": eps,
        ...                     "seed": seed, "attribute": "overall", "group": "overall", "metric": "auroc",
        ...                     "replicate": range(200), "value": value + shared}))
        >>> table = auroc_changes(estimates=pd.DataFrame(est), replicates=pd.concat(reps))
        >>> row = table.iloc[0]
        >>> row["verdict_class"], bool(row["paired_by_seed"]), round(float(row["change"]), 2)
        ('costs', True, -0.05)
    """
    if estimates.empty:
        return pd.DataFrame(columns=UTILITY_CHANGE_COLUMNS)
    runs = _with_method(estimates).assign(epsilon=lambda t: t["epsilon"].astype(float))
    runs = runs.drop_duplicates(RUN_KEYS)
    metrics = [m for m in headline_metrics() if m in runs.columns]
    wide = _overall_replicates(_with_method(replicates), metrics)
    rows = []
    for (dataset, model, method), cell in runs.groupby(["dataset", "model", "method"], sort=True):
        reference_method, reference = _reference(runs, dataset, model, method)
        finite = sorted(e for e in cell["epsilon"].unique() if math.isfinite(e))
        if reference.empty:
            if finite:
                log.info(
                    "no ε = ∞ run for %s/%s/%s (nor of %s): no utility change", dataset, model, method, REFERENCE_METHOD
                )
            continue
        for metric in metrics:
            base_key = (dataset, model, reference_method, math.inf, metric)
            for eps in finite:
                arm = cell[cell["epsilon"] == eps]
                rows.append(
                    _row(
                        arm,
                        reference,
                        wide.get((dataset, model, method, eps, metric)),
                        wide.get(base_key),
                        keys={"dataset": dataset, "model": model, "method": method, "epsilon": eps},
                        reference_method=reference_method,
                        metric=metric,
                        margin=margin,
                        alpha=alpha,
                        level=level,
                        power=power,
                    )
                )
    return pd.DataFrame(rows, columns=UTILITY_CHANGE_COLUMNS)


def _row(arm, reference, arm_reps, ref_reps, *, keys, reference_method, metric, margin, alpha, level, power) -> dict:
    a = arm.set_index("seed")[metric].astype(float).sort_index()
    b = reference.set_index("seed")[metric].astype(float).sort_index()
    paired = list(a.index) == list(b.index)
    ra, rb = _aligned(arm_reps, a.index), _aligned(ref_reps, b.index)
    common = ra.columns.intersection(rb.columns)
    contrast = seed_contrast(
        a.to_numpy(), b.to_numpy(), ra[common].to_numpy(dtype=float), rb[common].to_numpy(dtype=float), paired=paired
    )
    kind = CLASSES[classify(contrast, alpha=alpha, margin=margin)]
    low, high = contrast.interval(level)
    judged = kind != ONE_MODEL
    equivalence = contrast.interval(1 - 2 * alpha)
    row = {
        **keys,
        "reference_method": reference_method,
        "metric": metric,
        "n_seeds": len(a),
        "n_reference_seeds": len(b),
        "paired_by_seed": paired,
        "arm_value": float(a.mean(skipna=False)),
        "reference_value": float(b.mean(skipna=False)),
        "change": contrast.estimate,
        "ci_low": low,
        "ci_high": high,
        "se": contrast.se,
        "df": contrast.df,
        "ratio": contrast.ratio,
        "p_value": contrast.p_value if judged else math.nan,
        "p_equivalence": contrast.equivalence_p(margin) if judged else math.nan,
        "mde": contrast.mde(alpha=alpha, power=power) if judged else math.nan,
        "margin": margin,
        "within_margin": judged and contrast.defined and _inside(equivalence, margin),
        "verdict_class": kind,
    }
    row["verdict"] = change_verdict(row, equivalence=equivalence, alpha=alpha, power=power)
    return row


def _inside(interval: tuple[float, float], margin: float) -> bool:
    low, high = interval
    return bool(math.isfinite(low) and math.isfinite(high) and -margin < low and high < margin)


def change_verdict(row: dict, *, equivalence: tuple[float, float], alpha: float = 0.05, power: float = 0.8) -> str:
    """One sentence for a row of the table; ``equivalence``: its 1 − 2α interval; ``power``: the MDE's.

    Example:
        >>> row = {"epsilon": 10.0, "method": "dpsgd", "reference_method": "dpsgd", "metric": "auroc",
        ...        "change": -0.034, "ci_low": -0.047, "ci_high": -0.021, "p_value": 0.001, "mde": 0.02,
        ...        "margin": 0.03, "verdict_class": "costs"}
        >>> change_verdict(row, equivalence=(-0.044, -0.024))
        'At ε = 10, dpsgd costs 0.034 AUROC [0.021, 0.047] against ε = ∞ (p = 0.001)'
        >>> change_verdict({**row, "change": -0.01, "ci_low": -0.015, "ci_high": -0.005, "within_margin": True},
        ...                equivalence=(-0.014, -0.006))
        'At ε = 10, dpsgd costs 0.010 AUROC [0.005, 0.015] against ε = ∞ (p = 0.001), detected but within ±0.03 (practically negligible)'
    """
    label = get_metric(row["metric"]).label
    where = f"At ε = {row['epsilon']:g}, {row['method']}"
    against = "ε = ∞" if row["reference_method"] == row["method"] else f"{row['reference_method']} at ε = ∞"
    kind, change, low, high = row["verdict_class"], row["change"], row["ci_low"], row["ci_high"]
    negligible = (
        f", detected but within ±{row['margin']:g} (practically negligible)" if _true(row.get("within_margin")) else ""
    )
    if kind == COSTS:
        return (
            f"{where} costs {-change:.3f} {label} [{-high:.3f}, {-low:.3f}] against {against} "
            f"({_p(row['p_value'])}){negligible}"
        )
    if kind == GAINS:
        return (
            f"{where} gains {change:.3f} {label} [{low:.3f}, {high:.3f}] against {against} "
            f"({_p(row['p_value'])}){negligible}"
        )
    if kind == EQUIVALENT:
        lo, hi = equivalence
        return (
            f"{where} is equivalent to {against} within ±{row['margin']:g} {label} "
            f"({1 - 2 * alpha:.0%} interval [{_n(lo)}, {_n(hi)}])"
        )
    if kind == INCONCLUSIVE:
        return (
            f"{where} against {against}: {_n(change)} {label} [{_n(low)}, {_n(high)}], "
            f"inconclusive: would detect a change of ≥ {row['mde']:.3f} at {power:.0%} power"
        )
    if kind == ONE_MODEL:
        return (
            f"{where} against {against}: one trained model per arm: no verdict "
            f"({_n(change)} {label}; test-set noise only [{_n(low)}, {_n(high)}])"
        )
    return f"{where} against {against}: no {label} change can be estimated ({_n(change)})"


def _true(value) -> bool:
    """A boolean cell, also as read back from CSV ("True") or missing (an older table: False)."""
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value) if value is not None and not (isinstance(value, float) and math.isnan(value)) else False


def _reference(runs: pd.DataFrame, dataset: str, model: str, method: str) -> tuple[str, pd.DataFrame]:
    """(method, runs) of the ε = ∞ reference: the same method's, else :data:`REFERENCE_METHOD`'s."""
    plain = runs[(runs["dataset"] == dataset) & (runs["model"] == model) & np.isinf(runs["epsilon"])]
    for candidate in (method, REFERENCE_METHOD):
        same = plain[plain["method"] == candidate]
        if not same.empty:
            return candidate, same
    return method, plain.iloc[:0]


def _overall_replicates(replicates: pd.DataFrame, metrics: list[str]) -> dict:
    """Per (dataset, model, method, ε, metric): a seed × replicate frame of the whole test set's values."""
    need = {"attribute", "group", "metric", "replicate", "value"}
    if replicates.empty or not need <= set(replicates.columns):
        return {}
    overall = replicates[
        (replicates["attribute"].astype(str) == OVERALL)
        & (replicates["group"].astype(str) == OVERALL)
        & replicates["metric"].isin(metrics)
    ].assign(epsilon=lambda t: t["epsilon"].astype(float))
    out = {}
    for key, part in overall.groupby(["dataset", "model", "method", "epsilon", "metric"], sort=False):
        out[key] = part.pivot_table(index="seed", columns="replicate", values="value", aggfunc="first", dropna=False)
    return out


def _aligned(reps: pd.DataFrame | None, seeds: pd.Index) -> pd.DataFrame:
    """The replicates of ``seeds`` in that order (a run without replicates: a row of NaN, so undefined)."""
    if reps is None:
        return pd.DataFrame(index=seeds, columns=pd.Index([], dtype=int), dtype=float)
    return reps.reindex(seeds)


def _with_method(frame: pd.DataFrame) -> pd.DataFrame:
    return frame if "method" in frame.columns or frame.empty else frame.assign(method=REFERENCE_METHOD)


def _n(x: float) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{x:.3f}".replace("-", "−")


def _p(p: float) -> str:
    """``p = 0.012`` / ``p < 0.001``."""
    if not math.isfinite(p):
        return "p = —"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"
