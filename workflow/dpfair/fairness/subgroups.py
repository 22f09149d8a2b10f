"""One run's fairness evaluation: overall and per-group metrics with intervals, gaps with their null.

* **Metrics** are the registry's (:mod:`dpfair.fairness.metrics_registry`). Point estimates per group
  come from fairlearn's :class:`~fairlearn.metrics.MetricFrame` with NaN-safe references: a metric that
  needs a class the group lacks is NaN, never an error and never a silent 0.
* **Operating point**: predicted positive when ``score >= threshold``, the threshold chosen on the
  validation rows only (:func:`dpfair.fairness.threshold.choose_threshold`).
* **Flagged groups**: a group with ``n < min_group_size`` test rows is reported (with its interval) and
  ``flagged``; every gap uses only the groups that are not flagged and whose value is defined. A group
  with fewer than ``min_class_size`` positives or negatives is flagged for the label-conditional metrics
  only (AUROC, TPR, FPR, balanced accuracy: :func:`~dpfair.fairness.metrics_registry.is_label_conditional`),
  whose percentile intervals undercover on a class of a handful of rows (8 negatives: AUROC coverage
  0.88); it keeps its place in the other metrics' gaps. ``flagged`` is per (group, metric) row.
* **Intersections**: ``intersections=[("sex", "age_group")]`` adds the attribute ``"sex:age_group"``
  with groups such as ``"female:<40"``; an empty intersection does not appear, a small one is flagged.
* **Bootstrap**: percentile intervals from ``n_boot`` resamples of the TEST rows, stratified as each
  metric's registry entry says: by group × label for label-conditional metrics (AUROC, TPR, FPR,
  balanced accuracy), by group only for prevalence-dependent ones (selection rate, PPV, AUPRC, ECE).
  Overall metrics: by label, or unstratified. The threshold stays fixed, so intervals carry test-set
  variance given the model and its operating point. Rows are put in ``row`` order and the streams
  depend only on ``seed`` and the attribute's name: runs on one test set with one ``seed`` get the
  same resamples, so replicate b pairs across runs (see :mod:`dpfair.fairness.gap_changes`).
* **Null reference**: ``n_perm`` permutations of the group labels of the rows of the groups not
  flagged for the metric, within the strata its registry entry names (``permute_within``: label,
  predicted positive, calibration bin, or none; :func:`permutation_strata`), evaluated with the same
  kernel; see :mod:`dpfair.fairness.gaps` for ``null_gap``, ``p_value``, the signed gap and τ. Each kind
  of strata has its own stream (``<attribute>|null|<kind>``).
* **Patients** (``clusters``, default the ``patient_id`` column where the table has one): with several
  test rows per patient, resamples draw whole patients (a cluster bootstrap) within the strata above
  taken at the patient level, and permutations permute the group labels of whole patients, the
  exchangeable units (:mod:`dpfair.fairness.bootstrap`). Label strata cannot be kept exactly with
  clusters: a patient's label stratum is its rows' label where they share one and "mixed" otherwise,
  so label-conditional metrics draw single-label patients within group × label and mixed patients
  within group (the group's positive count then varies a little between resamples). A patient in two
  groups forms a "mixed" group stratum and is not permuted. With one row per patient (or without the
  column) the draws are exactly the row-level ones.
* **Group order**: natural (:func:`dpfair.data.contract.group_sort_key`): age bins by age, ``unknown``
  last.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame

from dpfair.data.contract import group_sort_key
from dpfair.fairness._inputs import interval, labels, quantiles, stream
from dpfair.fairness._inputs import scores as check_scores
from dpfair.fairness.bootstrap import concat_blocks, permutation_blocks, weight_blocks, weighted_metrics
from dpfair.fairness.calibration import bin_index, reliability_table
from dpfair.fairness.gaps import GAP_COLUMNS, gap_rows
from dpfair.fairness.metrics_registry import (
    get_metric,
    headline_metrics,
    is_label_conditional,
    metric_names,
    reference_functions,
)
from dpfair.fairness.threshold import choose_threshold
from dpfair.metrics import count, count_positive

#: Joins attribute names (``sex:age_group``) and group values (``female:<40``) of an intersection.
INTERSECTION_SEP = ":"
OVERALL_COLUMNS = ["metric", "value", "ci_low", "ci_high"]
GROUP_COLUMNS = ["attribute", "group", "n", "n_positive", "flagged", "metric", "value", "ci_low", "ci_high"]
RELIABILITY_COLUMNS = [
    "attribute",
    "group",
    "bin",
    "bin_low",
    "bin_high",
    "count",
    "mean_predicted",
    "observed_frequency",
]
#: ``group`` is empty on a gap's rows (``gap``, ``signed_gap``, ``tau2``: :data:`~dpfair.fairness.gaps.REPLICATE_STATISTICS`)
#: and names the group on a headline metric's per-group rows (``value``), so per-group changes pair too;
#: attribute = group = :data:`OVERALL` holds the whole test set's headline metrics.
REPLICATE_COLUMNS = ["attribute", "metric", "group", "replicate", "gap", "signed_gap", "tau2", "value"]
#: ``attribute`` and ``group`` of the whole test set in the reliability table.
OVERALL = "overall"
#: The scores-table column read as the resampling unit by default (datasets with several rows per patient).
PATIENT_ID = "patient_id"


def permutation_strata(kind: str, *, y: np.ndarray, s: np.ndarray, threshold: float, n_bins: int):
    """Per-row strata of a permutation null of ``kind`` (``Metric.permutation_strata``); None: permute freely.

    Example:
        >>> permutation_strata("predicted", y=np.array([0, 1]), s=np.array([0.2, 0.7]), threshold=0.5, n_bins=10)
        array([False,  True])
        >>> permutation_strata("score_bin", y=np.array([0, 1]), s=np.array([0.25, 1.0]), threshold=0.5, n_bins=10)
        array([2, 9])
    """
    if kind == "label":
        return y
    if kind == "predicted":
        return s >= threshold
    if kind == "score_bin":
        return bin_index(s, n_bins)
    if kind == "none":
        return None
    raise ValueError(f"unknown permutation strata {kind!r}")


def cluster_ids(test: pd.DataFrame, clusters: str | None) -> np.ndarray | None:
    """The resampling unit of each test row, or None for rows (no column, or one row per cluster).

    A missing id (NaN or an empty string) makes the row a cluster of its own.
    """
    if clusters is None or clusters not in test.columns:
        return None
    ids = test[clusters].astype(object).to_numpy()
    missing = pd.isna(ids) | (ids == "")
    ids = np.where(missing, [f"\0row{i}" for i in range(len(ids))], ids.astype(str))
    return None if len(set(ids)) == len(ids) else ids


@dataclass
class FairnessReport:
    """What :func:`evaluate_fairness` returns; every table is a DataFrame with the columns named here.

    * ``threshold``, ``threshold_method``: the operating point (from validation rows).
    * ``overall``: :data:`OVERALL_COLUMNS`, one row per metric plus ``threshold`` (no CI).
    * ``groups``: :data:`GROUP_COLUMNS`, one row per (attribute, group, metric), groups in natural order.
    * ``gaps``: :data:`~dpfair.fairness.gaps.GAP_COLUMNS`, one row per (attribute, gap metric).
    * ``reliability``: :data:`RELIABILITY_COLUMNS`, overall (attribute = group = ``"overall"``) and per group.
    * ``gap_replicates``: :data:`REPLICATE_COLUMNS`, the ``n_boot`` bootstrap replicates of each gap
      (max − min, signed, untruncated τ²) and of each group's value of the headline metrics, the input of
      :func:`~dpfair.fairness.gap_changes.gap_changes` once the run's keys are added.
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
    min_class_size: int = 15,
    clusters: str | None = PATIENT_ID,
    threshold: float | None = None,
    threshold_method: str = "sensitivity",
    target_sensitivity: float = 0.9,
    n_bins: int = 10,
    n_boot: int = 1000,
    n_perm: int | None = None,
    level: float = 0.95,
    seed: int = 0,
) -> FairnessReport:
    """Fairness metrics with bootstrap intervals and permutation nulls for one run's ``scores.csv`` table.

    ``scores`` has ``label``, ``score``, one column per attribute and ``split``: the threshold is
    chosen on the ``val`` rows (unless ``threshold`` is given), everything else uses ``test`` rows
    only. Without a ``split`` column all rows are test rows and ``threshold`` is required. Use one
    ``seed`` for all runs on a test set (not the training seed) to pair their replicates.
    ``n_perm`` (default ``n_boot``) permutations give each gap's ``null_gap`` and ``p_value``.
    ``min_class_size``: a group with fewer positives or negatives is flagged for the label-conditional
    metrics (0 switches this off). ``clusters``: the column naming each row's patient, resampled and
    permuted as a whole where the table has it (None: rows are the units).

    Example:
        >>> rng = np.random.default_rng(0); n = 600
        >>> y = rng.integers(0, 2, n); site = rng.choice(["A", "B"], n)
        >>> score = 1 / (1 + np.exp(-(2 * y - 1) * np.where(site == "A", 2.0, 0.7) - rng.normal(0, 1, n)))
        >>> scores = pd.DataFrame({"row": range(n), "split": np.where(np.arange(n) < 200, "val", "test"),
        ...                        "label": y, "site": site, "score": score})
        >>> report = evaluate_fairness(scores=scores, attributes=["site"], n_boot=200)
        >>> gap = report.gaps.set_index("metric").loc["auroc"]
        >>> bool(gap["gap"] > gap["null_gap"]), bool(gap["p_value"] < 0.05)
        (True, True)
        >>> gap["reference_group"], gap["comparison_group"], bool(gap["signed_ci_low"] > 0)  # site B is larger here
        ('B', 'A', True)
        >>> report.gap_replicates.shape
        (3000, 8)
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    n_perm = n_boot if n_perm is None else n_perm
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
    y = labels(test["label"])
    s = check_scores(test["score"], len(y))
    functions = {"n": count, "n_positive": count_positive, **reference_functions(threshold=threshold, n_bins=n_bins)}
    q = quantiles(level)
    by_kind = {kind: [m for m in metric_names() if get_metric(m).stratify == kind] for kind in ("label", "none")}
    ones = np.zeros(len(y), dtype=int)
    units = cluster_ids(test, clusters)
    null_strata = {
        kind: permutation_strata(kind, y=y, s=s, threshold=threshold, n_bins=n_bins)
        for kind in {get_metric(m).permutation_strata for m in metric_names()}
    }

    point = MetricFrame(
        metrics=functions, y_true=y, y_pred=s, sensitive_features=pd.Series(np.full(len(y), OVERALL), name=OVERALL)
    ).overall
    reps = {}
    for kind, names in by_kind.items():
        strata, name = (y, OVERALL) if kind == "label" else (ones, f"{OVERALL}|unstratified")
        reps.update(
            concat_blocks(
                weighted_metrics(y_true=y, score=s, weights=w, threshold=threshold, n_bins=n_bins, metrics=names)
                for w in weight_blocks(strata=strata, n_boot=n_boot, stream=stream(seed, name), clusters=units)
            )
        )
    overall = pd.DataFrame(
        [
            {"metric": m, "value": float(point[m]), **dict(zip(("ci_low", "ci_high"), interval(reps[m], q)))}
            for m in metric_names()
        ]
        + [{"metric": "threshold", "value": float(threshold), "ci_low": math.nan, "ci_high": math.nan}]
    )[OVERALL_COLUMNS]
    reliability = [reliability_table(y_true=y, score=s, n_bins=n_bins).assign(attribute=OVERALL, group=OVERALL)]

    group_rows, all_gaps = [], []
    # the whole test set's headline metrics, replicate by replicate, so AUROC costs across ε pair too
    replicate_frames = [
        pd.DataFrame(
            {
                "attribute": OVERALL,
                "metric": m,
                "group": OVERALL,
                "replicate": np.arange(len(reps[m])),
                "value": reps[m],
            }
        )
        for m in headline_metrics()
    ]
    for spec in [*attributes, *intersections]:
        columns = [spec] if isinstance(spec, str) else list(spec)
        name = INTERSECTION_SEP.join(columns)
        features = test[columns].astype(str)
        table = MetricFrame(
            metrics=functions,
            y_true=y,
            y_pred=s,
            sensitive_features=features[columns[0]] if len(columns) == 1 else features,
        ).by_group
        table = table[table["n"].fillna(0) > 0]  # an empty intersection does not appear
        keys = [key if isinstance(key, tuple) else (key,) for key in table.index]
        table = table.set_axis([INTERSECTION_SEP.join(map(str, k)) for k in keys]).astype(float)
        order = sorted(range(len(keys)), key=lambda i: tuple(group_sort_key(c, v) for c, v in zip(columns, keys[i])))
        table = table.iloc[order]
        groups = list(table.index)
        row_group = features[columns[0]].to_numpy(dtype=object)
        for column in columns[1:]:
            row_group = row_group + INTERSECTION_SEP + features[column].to_numpy(dtype=object)
        flagged = table["n"] < min_group_size
        small_class = (table["n_positive"] < min_class_size) | (table["n"] - table["n_positive"] < min_class_size)
        flags = {m: flagged | small_class if is_label_conditional(m) else flagged for m in metric_names()}
        masks = {g: row_group == g for g in groups}
        boot = {g: {} for g in groups}
        perm = {g: {} for g in groups}
        for kind, names in by_kind.items():
            strata = pd.DataFrame({"group": row_group, "label": y}) if kind == "label" else row_group
            blocks = {g: [] for g in groups}
            for w in weight_blocks(
                strata=strata,
                n_boot=n_boot,
                stream=stream(seed, name if kind == "label" else f"{name}|group"),
                clusters=units,
            ):
                for g, mask in masks.items():
                    blocks[g].append(
                        weighted_metrics(
                            y_true=y[mask],
                            score=s[mask],
                            weights=w[:, mask],
                            threshold=threshold,
                            n_bins=n_bins,
                            metrics=names,
                        )
                    )
            for g in groups:
                boot[g].update(concat_blocks(blocks[g]))
        # permutations: one draw per (strata kind, groups left out); the stream depends on the kind only,
        # so the metrics of a kind keep their permutations when another kind's metrics change
        by_null: dict[tuple, list[str]] = {}
        for m in metric_names():
            key = (get_metric(m).permutation_strata, tuple(g for g in groups if flags[m][g]))
            by_null.setdefault(key, []).append(m)
        for (kind, left_out), names in by_null.items():
            kept = [g for g in groups if g not in left_out]
            if len(kept) < 2:
                continue
            codes = np.full(len(y), -1)
            for g in kept:
                codes[masks[g]] = groups.index(g)
            nulls = {g: [] for g in kept}
            for p in permutation_blocks(
                groups=codes,
                strata=null_strata[kind],
                n_perm=n_perm,
                stream=stream(seed, f"{name}|null|{kind}"),
                clusters=units,
            ):
                for g in kept:
                    w = (p == groups.index(g)).astype(float)
                    nulls[g].append(
                        weighted_metrics(
                            y_true=y, score=s, weights=w, threshold=threshold, n_bins=n_bins, metrics=names
                        )
                    )
            for g in kept:
                perm[g].update(concat_blocks(nulls[g]))
        for g, mask in masks.items():
            for m in metric_names():
                low, high = interval(boot[g][m], q)
                group_rows.append(
                    {
                        "attribute": name,
                        "group": g,
                        "n": int(table.at[g, "n"]),
                        "n_positive": int(table.at[g, "n_positive"]),
                        "flagged": bool(flags[m][g]),
                        "metric": m,
                        "value": float(table.at[g, m]),
                        "ci_low": low,
                        "ci_high": high,
                    }
                )
            reliability.append(
                reliability_table(y_true=y[mask], score=s[mask], n_bins=n_bins).assign(attribute=name, group=g)
            )
        # gap_rows takes one flag per group: a group flagged for some metrics only (small classes) is handed
        # to it as undefined for those metrics, which leaves it out of their gaps just as a flag does
        usable = table.copy()
        for m in metric_names():
            usable.loc[flags[m] & ~flagged, m] = np.nan
        rows, gap_reps = gap_rows(attribute=name, table=usable, flagged=flagged, boot=boot, perm=perm, q=q, level=level)
        all_gaps.extend(rows)
        for m, r in gap_reps.items():
            replicate_frames.append(
                pd.DataFrame({"attribute": name, "metric": m, "group": "", "replicate": np.arange(len(r["gap"])), **r})
            )
        for m in headline_metrics():
            for g in groups:
                r = boot[g][m]
                replicate_frames.append(
                    pd.DataFrame(
                        {"attribute": name, "metric": m, "group": g, "replicate": np.arange(len(r)), "value": r}
                    )
                )

    return FairnessReport(
        threshold=float(threshold),
        threshold_method=method,
        overall=overall,
        groups=pd.DataFrame(group_rows, columns=GROUP_COLUMNS),
        gaps=pd.DataFrame(all_gaps, columns=GAP_COLUMNS),
        reliability=pd.concat(reliability, ignore_index=True)[RELIABILITY_COLUMNS],
        gap_replicates=(
            pd.concat(replicate_frames, ignore_index=True).reindex(columns=REPLICATE_COLUMNS)
            if replicate_frames
            else pd.DataFrame(columns=REPLICATE_COLUMNS)
        ),
    )
