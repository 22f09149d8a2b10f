"""``findings.csv``: the review's three findings, per dataset and pooled across datasets, each with a verdict.

The 2026 scoping review of DP in medical deep learning reports (1) at ε ≈ 10 DP-SGD keeps clinically
acceptable performance, particularly in imaging; (2) at ε ≈ 1 it often costs a lot, more on smaller or
heterogeneous datasets; (3) DP can widen subgroup performance gaps. Each is read here from the per-dataset
contrasts (:mod:`dpfair.findings.effects`) pooled by random effects (:mod:`dpfair.findings.meta`), because
the claims are about datasets in general: datasets, not seeds, are the replicates that matter, and the
between-dataset τ² is the review's "heterogeneous".

One row per (finding, scope, ε): ``scope`` is a dataset, ``pooled: imaging``, ``pooled: tabular``, ``pooled:
all`` or (finding 2) ``meta-regression on log n_train``. Verdict classes:

* finding 1, non-inferiority at ``margin`` (default 0.02 AUROC): ``non-inferior`` when the interval's lower
  end is above −margin (a one-sided test at (1 − level)/2), ``inferior`` when its upper end is below −margin,
  else ``inconclusive``;
* finding 2: ``costs beyond the margin`` (upper end below −margin), ``costs`` (below 0), ``equivalent``
  (the 1 − 2α interval inside ±margin), else ``inconclusive``; the slope on log(n_train) reads ``smaller
  datasets lose more`` (slope's interval above 0), ``larger datasets lose more`` or ``no detected dependence``;
* finding 3, the oriented gap change (positive widens): ``widens`` / ``narrows`` (interval excludes 0),
  ``equivalent`` (the 1 − 2α interval inside ±``equivalence_margin``), else ``inconclusive`` with the change it
  would detect at ``power`` (``mde``). Per-dataset rows keep their own table's verdict (``gap_changes.csv``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy import stats

from dpfair.findings.effects import gap_effects, utility_effects
from dpfair.findings.meta import meta_regression, random_effects
from dpfair.findings.sentences import dataset_gap, dataset_utility, pooled_gap, pooled_utility, slope_sentence

FINDINGS_COLUMNS = [
    "finding",
    "claim",
    "scope",
    "kind",
    "modality",
    "dataset",
    "model",
    "method",
    "attribute",
    "epsilon",
    "k",
    "n_train",
    "n_seeds",
    "estimate",
    "se",
    "ci_low",
    "ci_high",
    "df",
    "p_value",
    "tau2",
    "i2",
    "q",
    "margin",
    "mde",
    "better_change",
    "worse_change",
    "verdict_class",
    "verdict",
    "datasets",
]
CLAIMS = {
    1: "at epsilon ~ 10 DP-SGD keeps clinically acceptable performance, particularly in imaging",
    2: "at epsilon ~ 1 DP-SGD often costs a lot, more on smaller or heterogeneous datasets",
    3: "DP can widen subgroup performance gaps",
}
POOLED = {"image": "pooled: imaging", "tabular": "pooled: tabular", None: "pooled: all"}
SLOPE_SCOPE = "meta-regression on log n_train"


def findings_table(
    *,
    auroc_changes: pd.DataFrame,
    gap_changes: pd.DataFrame,
    info: pd.DataFrame,
    models: Mapping[str, str],
    attributes: Mapping[str, str],
    method: str = "auto",
    margin: float = 0.02,
    equivalence_margin: float = 0.03,
    level: float = 0.95,
    alpha: float = 0.05,
    power: float = 0.8,
    tau2_method: str = "reml",
    interval: str = "hksj_floored",
    epsilons: Mapping[int, object] | None = None,
) -> pd.DataFrame:
    """Every finding's per-dataset and pooled rows (see the module docstring for the classes)."""
    eps = {1: 10.0, 2: 1.0, 3: (1.0, 10.0), **(epsilons or {})}
    opts = {"level": level, "tau2_method": tau2_method, "interval": interval}
    utility = utility_effects(auroc_changes, info, models=models, method=method)
    gaps = gap_effects(gap_changes, info, models=models, attributes=attributes, method=method)
    rows: list[dict] = []
    rows += _utility_rows(1, utility, eps[1], margin=margin, alpha=alpha, **opts)
    rows += _utility_rows(2, utility, eps[2], margin=margin, alpha=alpha, **opts)
    rows += _slope_rows(utility, eps[2], **opts)
    for epsilon in _gap_epsilons(gaps, eps[3]):
        rows += _gap_rows(gaps, epsilon, margin=equivalence_margin, alpha=alpha, power=power, **opts)
    out = pd.DataFrame(rows, columns=FINDINGS_COLUMNS)
    out["claim"] = out["finding"].map(CLAIMS)
    return out


def _utility_rows(finding, effects, epsilon, *, margin, alpha, level, tau2_method, interval) -> list[dict]:
    part = effects[effects["epsilon"] == epsilon] if not effects.empty else effects
    rows = []
    for r in part.itertuples(index=False):
        cls = _non_inferiority(r.ci_low, r.ci_high, margin) if finding == 1 else _cost(r, margin)
        rows.append(
            {
                **_dataset_keys(r, finding),
                "estimate": r.estimate,
                "se": r.se,
                "ci_low": r.ci_low,
                "ci_high": r.ci_high,
                "df": r.df,
                "p_value": r.p_value,
                "margin": margin,
                "verdict_class": cls,
                "verdict": dataset_utility(finding, r, cls, margin=margin),
            }
        )
    for modality in _scopes(part):
        sub = part if modality is None else part[part["modality"] == modality]
        pooled = _pool(sub, level=level, tau2_method=tau2_method, interval=interval)
        if pooled is None:
            continue
        p, names = pooled
        if finding == 1:
            cls = _non_inferiority(p.ci_low, p.ci_high, margin)
        else:
            cls = _cost_pooled(p, margin, alpha)
        rows.append(
            {
                **_pooled_keys(finding, modality, epsilon, sub, p, names),
                "margin": margin,
                "verdict_class": cls,
                "verdict": pooled_utility(finding, p, cls, scope=POOLED[modality], margin=margin, epsilon=epsilon),
            }
        )
    return rows


def _slope_rows(effects, epsilon, *, level, tau2_method, interval) -> list[dict]:
    part = (
        effects[(effects["epsilon"] == epsilon) & np.isfinite(effects["se"]) & (effects["se"] > 0)]
        if not effects.empty
        else effects
    )
    if len(part) < 3:
        return []
    fit = meta_regression(
        part["estimate"].to_numpy(float),
        part["se"].to_numpy(float),
        np.log(part["n_train"].to_numpy(float)),
        method=tau2_method,
        ci_level=level,
        interval=interval,
    )
    if fit.slope_ci_low > 0:
        cls = "smaller datasets lose more"
    elif fit.slope_ci_high < 0:
        cls = "larger datasets lose more"
    else:
        cls = "no detected dependence"
    return [
        {
            "finding": 2,
            "scope": SLOPE_SCOPE,
            "kind": "slope",
            "epsilon": epsilon,
            "k": fit.k,
            "estimate": fit.slope,
            "se": fit.slope_se,
            "ci_low": fit.slope_ci_low,
            "ci_high": fit.slope_ci_high,
            "df": fit.df,
            "p_value": fit.slope_p_value,
            "tau2": fit.tau2,
            "verdict_class": cls,
            "verdict": slope_sentence(fit, cls, epsilon=epsilon),
            "datasets": ";".join(part["dataset"]),
        }
    ]


def _gap_rows(gaps, epsilon, *, margin, alpha, power, level, tau2_method, interval) -> list[dict]:
    part = gaps[gaps["epsilon"] == epsilon]
    rows = []
    for r in part.itertuples(index=False):
        rows.append(
            {
                **_dataset_keys(r, 3),
                "attribute": r.attribute,
                "estimate": r.estimate,
                "se": r.se,
                "ci_low": r.ci_low,
                "ci_high": r.ci_high,
                "df": r.df,
                "p_value": r.p_value,
                "margin": margin,
                "mde": r.mde,
                "better_change": r.better_change,
                "worse_change": r.worse_change,
                "verdict_class": r.table_verdict_class,
                "verdict": dataset_gap(r),
            }
        )
    for modality in _scopes(part):
        sub = part if modality is None else part[part["modality"] == modality]
        pooled = _pool(sub, level=level, tau2_method=tau2_method, interval=interval)
        if pooled is None:
            continue
        p, names = pooled
        kept = sub[sub["dataset"].isin(names)]
        better = _weighted_mean(kept, "better_change")
        worse = _weighted_mean(kept, "worse_change")
        cls, mde = _gap_class(p, margin=margin, alpha=alpha, power=power)
        rows.append(
            {
                **_pooled_keys(3, modality, epsilon, sub, p, names),
                "attribute": ";".join(sorted(set(kept["attribute"]))),
                "margin": margin,
                "mde": mde,
                "better_change": better,
                "worse_change": worse,
                "verdict_class": cls,
                "verdict": pooled_gap(
                    p, cls, scope=POOLED[modality], epsilon=epsilon, margin=margin, mde=mde, better=better, worse=worse
                ),  # fmt: skip
            }
        )
    return rows


def _gap_epsilons(gaps: pd.DataFrame, wanted) -> list[float]:
    """Finding 3's ε: the review's 1 and 10 where the grid has them, else every finite ε it has."""
    have = sorted(set(gaps["epsilon"])) if not gaps.empty else []
    chosen = [e for e in have if e in wanted]
    return chosen or have


def _scopes(part: pd.DataFrame) -> list:
    """Pooled scopes: each modality with two or more datasets, and all datasets when both modalities appear."""
    if part.empty:
        return []
    counts = part["modality"].value_counts()
    scopes = [m for m in ("image", "tabular") if counts.get(m, 0) >= 2]
    if len(counts) > 1 and len(part) >= 2:
        scopes.append(None)
    return scopes


def _pool(sub: pd.DataFrame, *, level, tau2_method, interval):
    usable = sub[np.isfinite(sub["estimate"]) & np.isfinite(sub["se"]) & (sub["se"] > 0)]
    if len(usable) < 2:
        return None
    pooled = random_effects(
        usable["estimate"].to_numpy(float),
        usable["se"].to_numpy(float),
        method=tau2_method,
        ci_level=level,
        interval=interval,
    )
    return pooled, list(usable["dataset"])


def _weighted_mean(sub, column) -> float:
    """A per-group change across datasets, weighted as the gap changes are (1/se²).

    The tables carry no se of the groups' own changes, so this is descriptive, beside the pooled gap, to show
    levelling down.
    """
    values, se = sub[column].to_numpy(float), sub["se"].to_numpy(float)
    ok = np.isfinite(values) & np.isfinite(se) & (se > 0)
    if ok.sum() == 0:
        return float("nan")
    w = 1 / se[ok] ** 2
    return float(np.sum(w * values[ok]) / np.sum(w))


def _dataset_keys(r, finding) -> dict:
    return {
        "finding": finding,
        "scope": r.dataset,
        "kind": "dataset",
        "modality": r.modality,
        "dataset": r.dataset,
        "model": r.model,
        "method": r.method,
        "epsilon": r.epsilon,
        "k": 1,
        "n_train": r.n_train,
        "n_seeds": r.n_seeds,
    }


def _pooled_keys(finding, modality, epsilon, sub, p, names) -> dict:
    return {
        "finding": finding,
        "scope": POOLED[modality],
        "kind": "pooled",
        "modality": modality or "all",
        "method": ";".join(sorted(set(sub["method"]))),
        "epsilon": epsilon,
        "k": p.k,
        "estimate": p.estimate,
        "se": p.se,
        "ci_low": p.ci_low,
        "ci_high": p.ci_high,
        "df": p.df,
        "p_value": p.p_value,
        "tau2": p.tau2,
        "i2": p.i2,
        "q": p.q,
        "datasets": ";".join(names),
    }


def _non_inferiority(low: float, high: float, margin: float) -> str:
    if not (math.isfinite(low) and math.isfinite(high)):
        return "undefined"
    if low > -margin:
        return "non-inferior"
    if high < -margin:
        return "inferior"
    return "inconclusive"


def _cost(r, margin) -> str:
    """A dataset's class: its table's verdict (``auroc_changes.csv``), sharpened when the cost passes the margin."""
    if math.isfinite(r.ci_high) and r.ci_high < -margin:
        return "costs beyond the margin"
    return r.table_verdict_class


def _cost_pooled(p, margin, alpha) -> str:
    if not (math.isfinite(p.ci_low) and math.isfinite(p.ci_high)):
        return "undefined"
    if p.ci_high < -margin:
        return "costs beyond the margin"
    if p.ci_high < 0:
        return "costs"
    if p.ci_low > 0:
        return "gains"
    if abs(p.estimate) + stats.t.ppf(1 - alpha, _df(p)) * p.se < margin:
        return "equivalent"
    return "inconclusive"


def _df(p) -> float:
    return p.df if math.isfinite(p.df) and p.df > 0 else np.inf


def _gap_class(p, *, margin, alpha, power) -> tuple[str, float]:
    df = _df(p)
    crit = stats.t.ppf(1 - alpha / 2, df)
    mde = float((crit + stats.t.ppf(power, df)) * p.se)
    if p.ci_low > 0:
        return "widens", mde
    if p.ci_high < 0:
        return "narrows", mde
    if abs(p.estimate) + stats.t.ppf(1 - alpha, df) * p.se < margin:
        return "equivalent", mde
    return "inconclusive", mde
