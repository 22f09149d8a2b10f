"""Fairness and uncertainty for one run's scores, and the change of each gap across the ε grid.

Definitions (the same everywhere in this module):

* **Metrics.** Threshold-free: ``auroc``, ``auprc`` (average precision), ``ece``. At the operating
  point: ``tpr``, ``fpr``, ``ppv``, ``balanced_accuracy``, ``selection_rate``. Per group they come
  from fairlearn's :class:`~fairlearn.metrics.MetricFrame` with NaN-safe wrappers: a metric that
  needs a class the group lacks is NaN, never an error and never a silent 0 (fairlearn's
  ``true_positive_rate`` returns 0 for a group without positives). AUROC and AUPRC are NaN for a
  one-class group (a ranking needs both classes); ``ppv`` is NaN when nothing is predicted positive.
* **Operating point.** A row is predicted positive when ``score >= threshold``. The threshold is
  chosen on the validation rows only (:func:`choose_threshold`), then applied unchanged to test.
* **Flagged groups.** A group with ``n < min_group_size`` test rows is reported (with its CI) and
  ``flagged``. Every gap, ratio and worst-group value uses only the groups that are not flagged and
  whose value is defined (not NaN), computed from ``MetricFrame.by_group`` restricted to them, so
  one exclusion rule holds for every metric. (fairlearn's ``equalized_odds_difference`` and friends
  would use all groups; with no group excluded the values here equal theirs.) With fewer than two
  usable groups the gap and ratio are NaN: there is nothing to compare.
* **Gaps.** ``gap`` = max − min, ``ratio`` = min / max (NaN when max is 0), ``worst_group`` = min
  for higher-is-better metrics, max for ``fpr`` and ``ece``, NaN for ``selection_rate``. The named
  fairness differences are gaps: equal-opportunity difference = ``tpr`` gap, demographic-parity
  difference = ``selection_rate`` gap, equalized-odds difference = metric ``equalized_odds``:
  max(TPR gap, FPR gap), each gap over its own usable groups, so it is never below the TPR gap
  (its ratio is the smaller of the two ratios, as fairlearn's ``equalized_odds_ratio``; its
  ``n_groups_in_gap`` counts groups usable for either). See :data:`FAIRNESS_ALIASES`.
* **Calibration.** ECE with ``n_bins`` (default 10) equal-width bins on [0, 1]: bin k holds scores
  in [k/B, (k+1)/B), the last bin also holds 1.0; ECE = Σ_k (n_k / n) · |mean score_k − positive
  rate_k|. Empty bins contribute nothing and appear in the reliability table with count 0 and NaN.
* **Intersections.** ``intersections=[("sex", "age_group")]`` adds the attribute ``"sex:age_group"``
  with groups such as ``"female:<40"`` (MetricFrame with several sensitive features). An empty
  intersection (no test row) does not appear at all; a non-empty but small one is flagged.
* **Bootstrap.** Percentile intervals from ``n_boot`` (default 1000) resamples of the TEST rows,
  stratified: per attribute, rows are resampled within each (group, label) cell, so every resample
  keeps each group's size and positive count (flags never change, AUROC is defined in every
  resample of a two-class group). Overall metrics are stratified by label. Resamples are count
  weights (:func:`stratified_bootstrap_weights`) and every metric is computed for all resamples at
  once (:func:`weighted_metrics`: AUROC by cumulative weights over sorted scores, threshold metrics
  as weighted counts); no Python loop runs over resamples. The threshold stays fixed, so the CIs
  carry test-set variance given the model and its operating point. The random stream of an
  attribute depends only on ``seed``, the attribute's name and the block of
  :data:`BOOTSTRAP_BLOCK` resamples, and rows are put in ``row`` order
  first: runs scored on the same test set with the same ``seed`` get identical resamples, so
  replicate b is paired across runs (see :func:`gap_changes`).
"""

from __future__ import annotations

import logging
import math
import warnings
import zlib
from dataclasses import dataclass
from functools import partial
from typing import Sequence

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame, false_positive_rate, selection_rate, true_positive_rate
from sklearn.metrics import average_precision_score, balanced_accuracy_score, precision_score, roc_curve

from dpfair.metrics import count, count_positive, safe_auroc
from dpfair.privacy import format_epsilon

log = logging.getLogger(__name__)

#: Metrics reported per group, overall, and as gaps (in this order).
METRICS = ("auroc", "auprc", "tpr", "fpr", "ppv", "balanced_accuracy", "selection_rate", "ece")
#: Metrics in the gaps table: :data:`METRICS` plus ``equalized_odds``.
GAP_METRICS = (*METRICS, "equalized_odds")
HIGHER_IS_BETTER = frozenset({"auroc", "auprc", "tpr", "ppv", "balanced_accuracy"})
LOWER_IS_BETTER = frozenset({"fpr", "ece"})
#: The usual fairness names and the gaps-table metric whose ``gap`` they are.
FAIRNESS_ALIASES = {
    "equal_opportunity_difference": "tpr",
    "equalized_odds_difference": "equalized_odds",
    "demographic_parity_difference": "selection_rate",
}
#: How metric names read in verdicts.
METRIC_LABELS = {
    "auroc": "AUROC", "auprc": "AUPRC", "tpr": "TPR", "fpr": "FPR", "ppv": "PPV",
    "balanced_accuracy": "balanced accuracy", "selection_rate": "selection rate", "ece": "ECE",
    "equalized_odds": "equalized odds",
}
#: Joins attribute names (``sex:age_group``) and group values (``female:<40``) of an intersection.
INTERSECTION_SEP = ":"
OVERALL_COLUMNS = ["metric", "value", "ci_low", "ci_high"]
GROUP_COLUMNS = ["attribute", "group", "n", "n_positive", "flagged", "metric", "value", "ci_low", "ci_high"]
GAP_COLUMNS = [
    "attribute", "metric", "gap", "gap_ci_low", "gap_ci_high", "ratio", "ratio_ci_low", "ratio_ci_high",
    "worst_group", "worst_group_ci_low", "worst_group_ci_high", "n_groups_in_gap",
]
RELIABILITY_COLUMNS = ["attribute", "group", "bin", "bin_low", "bin_high", "count", "mean_predicted", "observed_frequency"]
REPLICATE_COLUMNS = ["attribute", "metric", "replicate", "gap"]
GAP_CHANGE_COLUMNS = ["dataset", "model", "attribute", "metric", "epsilon", "gap_change", "ci_low", "ci_high", "verdict"]
#: Resamples drawn and evaluated together by :func:`evaluate_fairness` (bounds memory for large test sets).
BOOTSTRAP_BLOCK = 250
#: ``attribute`` and ``group`` of the whole test set in the reliability table.
OVERALL = "overall"


# --------------------------------------------------------------------------- operating point


def choose_threshold(*, y_val, score_val, method: str = "sensitivity", target_sensitivity: float = 0.9) -> float:
    """Decision threshold from VALIDATION labels and scores; predict positive when ``score >= threshold``.

    ``method="sensitivity"``: the highest threshold whose validation sensitivity is at least
    ``target_sensitivity``, i.e. the k-th highest positive score with k = ⌈target · n_positive⌉.
    ``method="youden"``: the threshold maximising TPR − FPR over the distinct validation scores
    (ties go to the highest threshold). Test data is not an argument, so it cannot move the threshold.

    Example:
        >>> y, s = [0, 0, 1, 1, 1, 1], [0.1, 0.6, 0.3, 0.5, 0.7, 0.9]
        >>> choose_threshold(y_val=y, score_val=s, target_sensitivity=0.75)  # 3 of 4 positives >= 0.5
        0.5
        >>> choose_threshold(y_val=y, score_val=s, method="youden")  # J = 0.5 at 0.7 and at 0.3
        0.7
    """
    y = _labels(y_val)
    s = _scores(score_val, len(y))
    n_pos = int(y.sum())
    if method == "sensitivity":
        if not 0 < target_sensitivity <= 1:
            raise ValueError(f"target_sensitivity must be in (0, 1], got {target_sensitivity}")
        if n_pos == 0:
            raise ValueError("choose_threshold needs at least one positive validation row")
        k = max(1, math.ceil(target_sensitivity * n_pos - 1e-9))  # the tolerance absorbs 0.9 * 30 = 27.000…04
        return float(np.sort(s[y == 1])[::-1][k - 1])
    if method == "youden":
        if n_pos == 0 or n_pos == len(y):
            raise ValueError("the Youden threshold needs both classes in the validation rows")
        fpr, tpr, thresholds = roc_curve(y, s, drop_intermediate=False)
        j = np.where(np.isfinite(thresholds), tpr - fpr, -np.inf)  # drop the 'predict nothing' point
        return float(thresholds[int(np.argmax(j))])  # thresholds decrease: argmax takes the highest tie
    raise ValueError(f"method must be 'sensitivity' or 'youden', got {method!r}")


# --------------------------------------------------------------------------- calibration


def expected_calibration_error(*, y_true, score, n_bins: int = 10) -> float:
    """ECE over ``n_bins`` equal-width bins on [0, 1]: Σ_k (n_k / n) · |mean score_k − positive rate_k|.

    Example:
        >>> # bin [0.2, 0.3): mean 0.2, rate 0.5; bin [0.8, 0.9): mean 0.8, rate 1.0
        >>> round(expected_calibration_error(y_true=[0, 1, 1, 1], score=[0.2, 0.2, 0.8, 0.8]), 6)
        0.25
    """
    y = _labels(y_true)
    s = _scores(score, len(y))
    if len(y) == 0:
        return math.nan
    return float(weighted_metrics(y_true=y, score=s, n_bins=n_bins, metrics=("ece",))["ece"][0])


def reliability_table(*, y_true, score, n_bins: int = 10) -> pd.DataFrame:
    """Reliability-diagram data: per bin ``bin``, ``bin_low``, ``bin_high``, ``count``, ``mean_predicted``,
    ``observed_frequency`` (NaN for an empty bin). Bins as in :func:`expected_calibration_error`.

    Example:
        >>> t = reliability_table(y_true=[0, 1, 1, 1], score=[0.2, 0.2, 0.8, 0.8], n_bins=5)
        >>> t[["bin", "count", "mean_predicted", "observed_frequency"]].to_string(index=False)
        ' bin  count  mean_predicted  observed_frequency\\n   0      0             NaN                 NaN\\n   1      2             0.2                 0.5\\n   2      0             NaN                 NaN\\n   3      0             NaN                 NaN\\n   4      2             0.8                 1.0'
    """
    y = _labels(y_true)
    s = _scores(score, len(y))
    bins = _bin_index(s, n_bins)
    counts = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_pred = np.bincount(bins, weights=s, minlength=n_bins) / counts
        observed = np.bincount(bins, weights=y.astype(float), minlength=n_bins) / counts
    edges = np.arange(n_bins + 1) / n_bins
    return pd.DataFrame({
        "bin": np.arange(n_bins), "bin_low": edges[:-1], "bin_high": edges[1:], "count": counts.astype(int),
        "mean_predicted": mean_pred, "observed_frequency": observed,
    })


# --------------------------------------------------------------------------- bootstrap kernels


def stratified_bootstrap_weights(*, strata, n_boot: int = 1000, seed: int | Sequence[int] = 0) -> np.ndarray:
    """``(n_boot, n)`` array: how many times each row is drawn in each resample, drawn within strata.

    ``strata`` is one label per row (array-like) or a DataFrame whose columns together define the
    cell (e.g. group and label). Every resample has exactly the cells' sizes. Cells are visited in
    sorted order, so the same ``strata`` and ``seed`` give the same weights.

    Example:
        >>> w = stratified_bootstrap_weights(strata=[0, 0, 0, 1, 1], n_boot=4, seed=1)
        >>> w.shape, w[:, :3].sum(axis=1).tolist(), w[:, 3:].sum(axis=1).tolist()
        ((4, 5), [3.0, 3.0, 3.0, 3.0], [2.0, 2.0, 2.0, 2.0])
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    if isinstance(strata, pd.DataFrame):
        codes = strata.groupby(list(strata.columns), sort=True, dropna=False).ngroup().to_numpy()
    else:
        codes = pd.factorize(pd.Series(np.asarray(strata)), sort=True)[0]
    rng = np.random.default_rng(seed)
    weights = np.zeros((n_boot, len(codes)))
    offsets = np.arange(n_boot)[:, None]
    for cell in np.unique(codes):
        rows = np.flatnonzero(codes == cell)
        m = len(rows)
        draws = rng.integers(0, m, (n_boot, m)) + offsets * m
        weights[:, rows] = np.bincount(draws.ravel(), minlength=n_boot * m).reshape(n_boot, m)
    return weights


def weighted_metrics(
    *, y_true, score, weights=None, threshold: float | None = None, n_bins: int = 10, metrics: Sequence[str] = METRICS
) -> dict[str, np.ndarray]:
    """Every metric for every row of ``weights`` at once (row b = case weights of resample b).

    ``weights=None`` means one row of ones: the plain estimate. Threshold metrics need ``threshold``.
    Values are NaN where the metric is undefined for that resample (as in the per-group tables).

    Example:
        >>> m = weighted_metrics(y_true=[0, 0, 1, 1], score=[0.1, 0.4, 0.35, 0.8], threshold=0.3)
        >>> {k: float(v[0]) for k, v in m.items() if k in ("auroc", "tpr", "fpr", "ppv")}
        {'auroc': 0.75, 'tpr': 1.0, 'fpr': 0.5, 'ppv': 0.6666666666666666}
        >>> w = stratified_bootstrap_weights(strata=[0, 0, 1, 1], n_boot=3, seed=0)
        >>> weighted_metrics(y_true=[0, 0, 1, 1], score=[0.1, 0.4, 0.35, 0.8], weights=w, metrics=("auroc",))["auroc"].shape
        (3,)
    """
    y = _labels(y_true)
    s = _scores(score, len(y))
    w = np.ones((1, len(y))) if weights is None else np.asarray(weights, dtype=float)
    if w.ndim != 2 or w.shape[1] != len(y):
        raise ValueError(f"weights must have shape (n_resamples, {len(y)}), got {w.shape}")
    if threshold is None and set(metrics) - {"auroc", "auprc", "ece"}:
        raise ValueError("threshold metrics need a threshold")
    pos = y == 1
    n_pos, n_neg, total = w[:, pos].sum(axis=1), w[:, ~pos].sum(axis=1), w.sum(axis=1)
    both = (n_pos > 0) & (n_neg > 0)
    out: dict[str, np.ndarray] = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        if "auroc" in metrics:
            out["auroc"] = np.where(both, _weighted_auc(s[pos], s[~pos], w[:, pos], w[:, ~pos]) / (n_pos * n_neg), np.nan)
        if "auprc" in metrics:
            out["auprc"] = np.where(both, _weighted_average_precision(y, s, w) / n_pos, np.nan)
        if threshold is not None:
            pred = s >= threshold
            tp, fp = w @ (pos & pred).astype(float), w @ (~pos & pred).astype(float)
            tpr = np.where(n_pos > 0, tp / n_pos, np.nan)
            fpr = np.where(n_neg > 0, fp / n_neg, np.nan)
            values = {
                "tpr": tpr, "fpr": fpr,
                "ppv": np.where(tp + fp > 0, tp / (tp + fp), np.nan),
                "balanced_accuracy": np.where(both, (tpr + 1 - fpr) / 2, np.nan),
                "selection_rate": np.where(total > 0, (tp + fp) / total, np.nan),
            }
            out.update({k: v for k, v in values.items() if k in metrics})
        if "ece" in metrics:
            onehot = np.eye(n_bins)[_bin_index(s, n_bins)]
            gap = np.abs((w * s) @ onehot - (w * y) @ onehot).sum(axis=1)
            out["ece"] = np.where(total > 0, gap / total, np.nan)
    return {k: out[k] for k in metrics if k in out}


def _weighted_auc(pos_scores, neg_scores, w_pos, w_neg) -> np.ndarray:
    """Σ_i w_i · (weighted negatives below positive i + ½ weighted ties), one value per weight row."""
    order = np.argsort(neg_scores, kind="stable")
    sorted_neg = neg_scores[order]
    cum = np.zeros((w_neg.shape[0], len(sorted_neg) + 1))
    np.cumsum(w_neg[:, order], axis=1, out=cum[:, 1:])
    lo = np.searchsorted(sorted_neg, pos_scores, side="left")
    hi = np.searchsorted(sorted_neg, pos_scores, side="right")
    below = cum[:, lo]
    return (w_pos * (below + 0.5 * (cum[:, hi] - below))).sum(axis=1)


def _weighted_average_precision(y, s, w) -> np.ndarray:
    """Σ_k ΔTP_k · precision_k over distinct thresholds (highest first); divide by the positives for AP."""
    order = np.argsort(-s, kind="stable")
    ranked, y_ranked, w_ranked = s[order], y[order], w[:, order]
    ends = np.r_[np.flatnonzero(ranked[1:] != ranked[:-1]), len(ranked) - 1]  # last row of each tie block
    tp = np.cumsum(w_ranked * y_ranked, axis=1)[:, ends]
    fp = np.cumsum(w_ranked * (1 - y_ranked), axis=1)[:, ends]
    precision = np.where(tp + fp > 0, tp / np.where(tp + fp > 0, tp + fp, 1), 0.0)
    return (np.diff(tp, axis=1, prepend=0.0) * precision).sum(axis=1)


# --------------------------------------------------------------------------- one run


@dataclass
class FairnessReport:
    """What :func:`evaluate_fairness` returns; every table is a DataFrame with the columns named here.

    * ``threshold``, ``threshold_method``: the operating point (from validation rows).
    * ``overall``: :data:`OVERALL_COLUMNS` (metric, value, ci_low, ci_high), one row per metric plus
      ``threshold`` (no CI).
    * ``groups``: :data:`GROUP_COLUMNS`, one row per (attribute, group, metric).
    * ``gaps``: :data:`GAP_COLUMNS`, one row per (attribute, metric in :data:`GAP_METRICS`).
    * ``reliability``: :data:`RELIABILITY_COLUMNS`, overall (attribute = group = ``"overall"``) and per group.
    * ``gap_replicates``: :data:`REPLICATE_COLUMNS`, the ``n_boot`` bootstrap replicates of each gap,
      the input of :func:`gap_changes` once dataset, model, epsilon and seed are added.
    """

    threshold: float
    threshold_method: str
    overall: pd.DataFrame
    groups: pd.DataFrame
    gaps: pd.DataFrame
    reliability: pd.DataFrame
    gap_replicates: pd.DataFrame


def evaluate_fairness(
    *,
    scores: pd.DataFrame,
    attributes: Sequence[str],
    intersections: Sequence[Sequence[str]] = (),
    min_group_size: int = 30,
    threshold: float | None = None,
    threshold_method: str = "sensitivity",
    target_sensitivity: float = 0.9,
    n_bins: int = 10,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> FairnessReport:
    """Fairness metrics with stratified bootstrap CIs for one run's ``scores.csv`` table.

    ``scores`` has ``label``, ``score``, one column per attribute and ``split``: the threshold is
    chosen on the ``val`` rows (unless ``threshold`` is given), everything else uses ``test`` rows
    only. Without a ``split`` column all rows are test rows and ``threshold`` is required. Use one
    ``seed`` for all runs on a test set (not the training seed) to pair their replicates.

    Example:
        >>> rng = np.random.default_rng(0); n = 600
        >>> y = rng.integers(0, 2, n); site = rng.choice(["A", "B"], n)
        >>> score = 1 / (1 + np.exp(-(2 * y - 1) * np.where(site == "A", 2.0, 0.7) - rng.normal(0, 1, n)))
        >>> scores = pd.DataFrame({"row": range(n), "split": np.where(np.arange(n) < 200, "val", "test"),
        ...                        "label": y, "site": site, "score": score})
        >>> report = evaluate_fairness(scores=scores, attributes=["site"], n_boot=200)
        >>> gap = report.gaps.set_index("metric").loc["auroc"]
        >>> bool(gap["gap_ci_low"] <= gap["gap"] <= gap["gap_ci_high"]), bool(gap["gap_ci_low"] > 0)
        (True, True)
        >>> report.gap_replicates.shape
        (1800, 4)
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    if "split" in scores.columns:
        val, test = scores[scores["split"] == "val"], scores[scores["split"] == "test"]
    elif threshold is None:
        raise ValueError("scores has no 'split' column: pass the threshold chosen on validation data")
    else:
        val, test = None, scores
    if threshold is None:
        threshold = choose_threshold(
            y_val=val["label"], score_val=val["score"], method=threshold_method, target_sensitivity=target_sensitivity
        )
        method = threshold_method
    else:
        method = "given"
    if "row" in test.columns:
        test = test.sort_values("row", kind="stable")
    test = test.reset_index(drop=True)
    y = _labels(test["label"])
    s = _scores(test["score"], len(y))
    functions = _metric_functions(threshold, n_bins)
    q = ((1 - level) / 2, 1 - (1 - level) / 2)

    # overall: point estimate through MetricFrame, CI from label-stratified resamples
    point = MetricFrame(metrics=functions, y_true=y, y_pred=s, sensitive_features=pd.Series(np.full(len(y), OVERALL), name=OVERALL)).overall
    reps = _concat_blocks(
        weighted_metrics(y_true=y, score=s, weights=weights, threshold=threshold, n_bins=n_bins)
        for weights in _weight_blocks(strata=y, n_boot=n_boot, stream=_stream(seed, OVERALL))
    )
    overall = pd.DataFrame(
        [{"metric": m, "value": float(point[m]), **dict(zip(("ci_low", "ci_high"), _interval(reps[m], q)))} for m in METRICS]
        + [{"metric": "threshold", "value": float(threshold), "ci_low": math.nan, "ci_high": math.nan}]
    )[OVERALL_COLUMNS]
    reliability = [reliability_table(y_true=y, score=s, n_bins=n_bins).assign(attribute=OVERALL, group=OVERALL)]

    group_rows, gap_rows, replicate_frames = [], [], []
    for spec in [*attributes, *intersections]:
        columns = [spec] if isinstance(spec, str) else list(spec)
        name = INTERSECTION_SEP.join(columns)
        features = test[columns].astype(str)
        frame = MetricFrame(
            metrics=functions, y_true=y, y_pred=s,
            sensitive_features=features[columns[0]] if len(columns) == 1 else features,
        )
        table = frame.by_group
        table = table[table["n"].fillna(0) > 0]  # an empty intersection does not appear
        labels = [INTERSECTION_SEP.join(map(str, key if isinstance(key, tuple) else (key,))) for key in table.index]
        table = table.set_axis(labels).astype(float)
        row_group = features[columns[0]].to_numpy(dtype=object)
        for column in columns[1:]:
            row_group = row_group + INTERSECTION_SEP + features[column].to_numpy(dtype=object)
        flagged = table["n"] < min_group_size
        masks = {group: row_group == group for group in labels}
        blocks = {group: [] for group in labels}
        for weights in _weight_blocks(strata=pd.DataFrame({"group": row_group, "label": y}), n_boot=n_boot, stream=_stream(seed, name)):
            for group, mask in masks.items():
                blocks[group].append(weighted_metrics(y_true=y[mask], score=s[mask], weights=weights[:, mask], threshold=threshold, n_bins=n_bins))
        group_reps = {group: _concat_blocks(parts) for group, parts in blocks.items()}
        for group, mask in masks.items():
            for m in METRICS:
                low, high = _interval(group_reps[group][m], q)
                group_rows.append({
                    "attribute": name, "group": group, "n": int(table.at[group, "n"]),
                    "n_positive": int(table.at[group, "n_positive"]), "flagged": bool(flagged[group]),
                    "metric": m, "value": float(table.at[group, m]), "ci_low": low, "ci_high": high,
                })
            reliability.append(
                reliability_table(y_true=y[mask], score=s[mask], n_bins=n_bins).assign(attribute=name, group=group)
            )
        for m, summary in _gap_summaries(table, group_reps, flagged, n_boot).items():
            gap_rows.append({"attribute": name, "metric": m, **_summarise(summary, q)})
            replicate_frames.append(pd.DataFrame({"attribute": name, "metric": m, "replicate": np.arange(n_boot), "gap": summary["gap_reps"]}))

    return FairnessReport(
        threshold=float(threshold),
        threshold_method=method,
        overall=overall,
        groups=pd.DataFrame(group_rows, columns=GROUP_COLUMNS),
        gaps=pd.DataFrame(gap_rows, columns=GAP_COLUMNS),
        reliability=pd.concat(reliability, ignore_index=True)[RELIABILITY_COLUMNS],
        gap_replicates=(pd.concat(replicate_frames, ignore_index=True) if replicate_frames else pd.DataFrame(columns=REPLICATE_COLUMNS)),
    )


def _gap_summaries(table: pd.DataFrame, group_reps: dict, flagged: pd.Series, n_boot: int) -> dict[str, dict]:
    """Point value and replicates of gap, ratio and worst group per metric, over usable groups only."""
    out = {}
    for m in (*METRICS, "equalized_odds"):
        parts, used = [], set()
        for metric in ("tpr", "fpr") if m == "equalized_odds" else (m,):
            usable = [g for g in table.index if not flagged[g] and not np.isnan(table.at[g, metric])]
            used.update(usable)
            values = table.loc[usable, metric].to_numpy(dtype=float)
            reps = np.column_stack([group_reps[g][metric] for g in usable]) if usable else np.full((n_boot, 0), np.nan)
            parts.append((_spread(values[None, :]), _spread(reps)))
        if m == "equalized_odds":  # max of the TPR and FPR gaps, min of their ratios (fairlearn's definitions)
            (tpr_pt, tpr_rep), (fpr_pt, fpr_rep) = parts
            point = {"gap": np.fmax(tpr_pt["gap"], fpr_pt["gap"]), "ratio": np.fmin(tpr_pt["ratio"], fpr_pt["ratio"]), "worst": np.full(1, np.nan)}
            reps = {"gap": np.fmax(tpr_rep["gap"], fpr_rep["gap"]), "ratio": np.fmin(tpr_rep["ratio"], fpr_rep["ratio"]), "worst": np.full(n_boot, np.nan)}
        else:
            point, reps = parts[0]
            worst = "min" if m in HIGHER_IS_BETTER else "max" if m in LOWER_IS_BETTER else None
            point = {**point, "worst": point[worst] if worst else np.full(1, np.nan)}
            reps = {**reps, "worst": reps[worst] if worst else np.full(n_boot, np.nan)}
        out[m] = {"point": point, "reps": reps, "n_groups": len(used), "gap_reps": reps["gap"]}
    return out


def _spread(values: np.ndarray) -> dict[str, np.ndarray]:
    """Row-wise gap, ratio, min and max of a (rows, groups) array, ignoring NaN.

    A gap compares groups: with fewer than two defined values it is NaN (not 0, which would read as
    "no disparity"), while min and max still report the one group there is.
    """
    if values.shape[1] == 0:
        nan = np.full(values.shape[0], np.nan)
        return {"gap": nan, "ratio": nan, "min": nan, "max": nan}
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = np.nanmin(values, axis=1), np.nanmax(values, axis=1)
        ratio = np.where(high > 0, low / np.where(high > 0, high, 1), np.nan)
    comparable = np.sum(~np.isnan(values), axis=1) >= 2
    return {"gap": np.where(comparable, high - low, np.nan), "ratio": np.where(comparable, ratio, np.nan), "min": low, "max": high}


def _summarise(summary: dict, q) -> dict:
    row = {}
    for key, column in (("gap", "gap"), ("ratio", "ratio"), ("worst", "worst_group")):
        row[column] = float(summary["point"][key][0])
        row[f"{column}_ci_low"], row[f"{column}_ci_high"] = _interval(summary["reps"][key], q)
    row["n_groups_in_gap"] = summary["n_groups"]
    return row


# --------------------------------------------------------------------------- across seeds and ε


def gap_changes(
    *,
    estimates: pd.DataFrame,
    replicates: pd.DataFrame,
    level: float = 0.95,
    digits: int = 2,
    seed: int = 0,
) -> pd.DataFrame:
    """Change of each gap at each finite ε relative to ε = ∞, with an interval and a verdict.

    Inputs, one row per run (and replicate), ``epsilon`` a float with ``inf`` for non-private:

    * ``estimates``: dataset, model, epsilon, seed, attribute, metric, gap (the runs' ``gaps`` tables).
    * ``replicates``: dataset, model, epsilon, seed, attribute, metric, replicate, gap (the runs'
      ``gap_replicates``), all runs of a dataset evaluated with the same bootstrap ``seed``.

    Per (dataset, model, attribute, metric, ε), with k seeds:

    * ``gap_change`` = mean over seeds of gap_ε − mean over seeds of gap_∞ (point estimates).
    * Test-set variance: D_b = mean_s gap_ε,s,b − mean_s gap_∞,s,b for each replicate b. Replicate b
      is the same resample of the same test rows in every run (same bootstrap seed), including the
      runs at different ε, which are different models scored on one test set: D_b is paired.
    * Seed (training) variance: d_s = gap_ε,s − gap_∞,s paired by seed when both arms have the same
      seeds (else Welch), se = sd(d_s) / √k, added as se · T_b with T_b ~ Student t (k − 1 df).
      One seed: no seed term (test-set variance only). The model × test-set interaction is in both
      terms, so the interval errs on the wide side.
    * Interval: percentiles of D_b + se · T_b at ``level``. Verdict: "widens" when the interval is
      above 0, "narrows" when below, else "no change detected". Replicates with an undefined
      (NaN) gap are left out of the percentiles; a NaN point estimate gives NaN and says so.

    Baselines missing from the inputs (no ε = ∞ run for a dataset and model) give no rows (logged).

    Example:
        >>> est = pd.DataFrame({"dataset": "d", "model": "m", "epsilon": [np.inf, 1.0], "seed": 0,
        ...                     "attribute": "sex", "metric": "auroc", "gap": [0.02, 0.06]})
        >>> rng = np.random.default_rng(0); b = rng.normal(0, 0.01, 1000)
        >>> rep = pd.concat([est.drop(columns="gap").assign(replicate=r, gap=est["gap"] + b[r]) for r in range(1000)])
        >>> gap_changes(estimates=est, replicates=rep).loc[0, "verdict"]
        'DP at ε = 1 widens the sex gap in AUROC by 0.04 [0.04, 0.04]'
    """
    keys = ["dataset", "model", "attribute", "metric"]
    _require(estimates, [*keys, "epsilon", "seed", "gap"], "estimates")
    _require(replicates, [*keys, "epsilon", "seed", "replicate", "gap"], "replicates")
    q = ((1 - level) / 2, 1 - (1 - level) / 2)
    estimates = estimates.assign(epsilon=estimates["epsilon"].astype(float))
    replicates = replicates.assign(epsilon=replicates["epsilon"].astype(float))
    if estimates.duplicated([*keys, "epsilon", "seed"]).any():
        raise ValueError("estimates has more than one row for a (dataset, model, attribute, metric, epsilon, seed)")
    rep_groups = dict(tuple(replicates.groupby(keys, sort=False)))
    rows = []
    for key, cell in estimates.groupby(keys, sort=True):
        base = cell[np.isinf(cell["epsilon"])]
        if base.empty:
            log.warning("gap_changes: no epsilon=inf run for %s; skipped", dict(zip(keys, key)))
            continue
        cell_reps = rep_groups.get(key)
        if cell_reps is None:
            raise ValueError(f"no replicates for {dict(zip(keys, key))}")
        base_point = base.set_index("seed")["gap"].astype(float)
        base_reps = _seed_by_replicate(cell_reps[np.isinf(cell_reps["epsilon"])], base_point.index, key)
        for eps in sorted(e for e in cell["epsilon"].unique() if not math.isinf(e)):
            arm_point = cell[cell["epsilon"] == eps].set_index("seed")["gap"].astype(float)
            arm_reps = _seed_by_replicate(cell_reps[cell_reps["epsilon"] == eps], arm_point.index, key)
            common = arm_reps.columns.intersection(base_reps.columns)
            d_test = (arm_reps[common].mean(axis=0, skipna=False) - base_reps[common].mean(axis=0, skipna=False)).to_numpy()
            change = float(arm_point.mean(skipna=False) - base_point.mean(skipna=False))
            se, df = _seed_error(arm_point, base_point)
            rng = np.random.default_rng(_stream(seed, "|".join(map(str, (*key, eps)))))
            noise = se * rng.standard_t(df, len(d_test)) if se > 0 else 0.0
            low, high = _interval(d_test + noise, q)  # a replicate without a defined gap is left out
            rows.append({
                **dict(zip(keys, key)), "epsilon": eps, "gap_change": change, "ci_low": low, "ci_high": high,
                "verdict": _verdict(key[2], key[3], eps, change, low, high, digits),
            })
    return pd.DataFrame(rows, columns=GAP_CHANGE_COLUMNS)


def _seed_by_replicate(reps: pd.DataFrame, seeds: pd.Index, key) -> pd.DataFrame:
    table = reps.pivot_table(index="seed", columns="replicate", values="gap", aggfunc="first", dropna=False)
    missing = set(seeds) - set(table.index)
    if missing:
        raise ValueError(f"replicates lack seeds {sorted(missing)} for {key}")
    return table.loc[list(seeds)].astype(float)


def _seed_error(arm: pd.Series, base: pd.Series) -> tuple[float, float]:
    """Standard error of the seed-mean difference from training (seed) variation, and its df."""
    if set(arm.index) == set(base.index):
        d = (arm - base.reindex(arm.index)).to_numpy()
        if len(d) < 2 or np.isnan(d).any():
            return 0.0, 1.0
        return float(np.std(d, ddof=1) / math.sqrt(len(d))), float(len(d) - 1)
    parts = [(np.var(x, ddof=1) / len(x), len(x)) for x in (arm.to_numpy(), base.to_numpy()) if len(x) > 1]
    if not parts or any(np.isnan(v) for v, _ in parts):
        return 0.0, 1.0
    var = sum(v for v, _ in parts)
    df = var**2 / sum(v**2 / (k - 1) for v, k in parts) if var > 0 else 1.0
    return float(math.sqrt(var)), float(df)


def _verdict(attribute: str, metric: str, epsilon: float, change: float, low: float, high: float, digits: int) -> str:
    label = METRIC_LABELS.get(metric, metric)
    where = f"DP at ε = {format_epsilon(epsilon)}"
    if any(math.isnan(v) for v in (change, low, high)):
        return f"{where}: the {attribute} gap in {label} could not be estimated"
    f = partial(_number, digits=digits)
    if low > 0:
        return f"{where} widens the {attribute} gap in {label} by {f(change)} [{f(low)}, {f(high)}]"
    if high < 0:
        return f"{where} narrows the {attribute} gap in {label} by {f(-change)} [{f(-high)}, {f(-low)}]"
    return f"{where}: no change detected in the {attribute} gap in {label} ({f(change)} [{f(low)}, {f(high)}])"


def _number(x: float, *, digits: int) -> str:
    text = f"{x:.{digits}f}"
    if float(text) == 0:
        text = text.lstrip("-")
    return text.replace("-", "−")


# --------------------------------------------------------------------------- helpers


def _metric_functions(threshold: float, n_bins: int) -> dict:
    """The MetricFrame metric dict: NaN-safe wrappers taking (y_true, score)."""
    return {
        "n": count, "n_positive": count_positive,
        "auroc": _auroc, "auprc": _auprc,
        "tpr": partial(_tpr, threshold=threshold), "fpr": partial(_fpr, threshold=threshold),
        "ppv": partial(_ppv, threshold=threshold), "balanced_accuracy": partial(_balanced_accuracy, threshold=threshold),
        "selection_rate": partial(_selection_rate, threshold=threshold), "ece": partial(_ece, n_bins=n_bins),
    }


def _two_classes(y) -> bool:
    return len(np.unique(y)) == 2


def _auroc(y_true, y_score) -> float:
    return safe_auroc(y_true, y_score)


def _auprc(y_true, y_score) -> float:
    return float(average_precision_score(y_true, y_score)) if _two_classes(y_true) else math.nan


def _tpr(y_true, y_score, *, threshold) -> float:
    y = np.asarray(y_true).astype(int)
    return float(true_positive_rate(y, _predict(y_score, threshold), pos_label=1)) if (y == 1).any() else math.nan


def _fpr(y_true, y_score, *, threshold) -> float:
    y = np.asarray(y_true).astype(int)
    return float(false_positive_rate(y, _predict(y_score, threshold), pos_label=1)) if (y == 0).any() else math.nan


def _ppv(y_true, y_score, *, threshold) -> float:
    pred = _predict(y_score, threshold)
    return float(precision_score(np.asarray(y_true).astype(int), pred, zero_division=np.nan)) if pred.any() else math.nan


def _balanced_accuracy(y_true, y_score, *, threshold) -> float:
    if not _two_classes(y_true):
        return math.nan
    return float(balanced_accuracy_score(np.asarray(y_true).astype(int), _predict(y_score, threshold)))


def _selection_rate(y_true, y_score, *, threshold) -> float:
    return float(selection_rate(np.asarray(y_true).astype(int), _predict(y_score, threshold), pos_label=1)) if len(y_true) else math.nan


def _ece(y_true, y_score, *, n_bins) -> float:
    return expected_calibration_error(y_true=y_true, score=y_score, n_bins=n_bins)


def _predict(score, threshold: float) -> np.ndarray:
    return (np.asarray(score, dtype=float) >= threshold).astype(int)


def _bin_index(score: np.ndarray, n_bins: int) -> np.ndarray:
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    return np.clip(np.floor(score * n_bins).astype(int), 0, n_bins - 1)


def _labels(y) -> np.ndarray:
    y = np.asarray(y)
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 or 1")
    return y.astype(int)


def _scores(score, n: int) -> np.ndarray:
    s = np.asarray(score, dtype=float)
    if s.shape != (n,):
        raise ValueError(f"expected {n} scores, got shape {s.shape}")
    if np.isnan(s).any() or (s < 0).any() or (s > 1).any():
        raise ValueError("scores must be probabilities in [0, 1] without NaN")
    return s


def _interval(values: np.ndarray, q) -> tuple[float, float]:
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return math.nan, math.nan
    low, high = np.quantile(values, q)
    return float(low), float(high)


def _weight_blocks(*, strata, n_boot: int, stream: list[int]):
    """Resample weights in blocks of :data:`BOOTSTRAP_BLOCK` (memory stays O(block · n)); block i
    comes from the stream ``[*stream, i]``, so a test set and seed always give the same resamples."""
    for i, start in enumerate(range(0, n_boot, BOOTSTRAP_BLOCK)):
        yield stratified_bootstrap_weights(strata=strata, n_boot=min(BOOTSTRAP_BLOCK, n_boot - start), seed=[*stream, i])


def _concat_blocks(parts) -> dict[str, np.ndarray]:
    parts = list(parts)
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _stream(seed: int, name: str) -> list[int]:
    """Seed of the random stream for ``name``: depends on the name, not on the order of evaluation."""
    return [int(seed), zlib.crc32(name.encode())]


def _require(frame: pd.DataFrame, columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} lacks columns {missing}")
