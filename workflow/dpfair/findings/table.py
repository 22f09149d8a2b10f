"""``findings.csv``: the review's three findings, per dataset and pooled across datasets, each with a verdict.

The 2026 scoping review of DP in medical deep learning reports (1) at ε ≈ 10 DP-SGD keeps clinically
acceptable performance, particularly in imaging; (2) at ε ≈ 1 it often costs a lot, more on smaller or
heterogeneous datasets; (3) DP can widen subgroup performance gaps. Each is read here from the per-dataset
contrasts (:mod:`dpfair.findings.effects`) pooled by random effects (:mod:`dpfair.findings.meta`), because
the claims are about datasets in general: datasets, not seeds, are the replicates that matter.

One row per (finding, scope, ε). ``scope`` is a dataset, ``pooled: imaging``, ``pooled: tabular``, ``pooled:
all`` (both modalities, when both appear), ``imaging − tabular`` (a meta-regression on the modality: does the
change differ between them, the review's "particularly in imaging") or, for finding 2, ``meta-regression on
log n_train`` (its "more on smaller datasets"). Pooled rows carry τ², I² and a 95% prediction interval for a
new dataset's true change (Higgins, Thompson & Spiegelhalter 2009, J R Stat Soc A 172:137-159: μ ± t_{k−2}
√(τ² + se²)), which says more than the mean when τ is large. The classes: :mod:`dpfair.findings.verdicts`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy import stats

import dpfair.findings.verdicts as verdicts
from dpfair.findings.effects import gap_effects, utility_effects
from dpfair.findings.meta import meta_regression, random_effects
from dpfair.findings.sentences import (
    dataset_gap,
    dataset_utility,
    moderator_sentence,
    pooled_gap,
    pooled_utility,
)

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
    "pi_low",
    "pi_high",
    "margin",
    "mde",
    "better_group",
    "worse_group",
    "oriented_by",
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
SIZE_SCOPE = "meta-regression on log n_train"
MODALITY_SCOPE = "imaging − tabular"


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
    validation: Mapping[tuple, Mapping[str, float]] | None = None,
    better_off: Mapping[str, str] | None = None,
    epsilons: Mapping[int, object] | None = None,
) -> pd.DataFrame:
    """Every finding's per-dataset, pooled and moderator rows (classes: :mod:`dpfair.findings.verdicts`).

    ``validation`` and ``better_off`` orient finding 3 (:func:`dpfair.findings.effects.gap_effects`);
    ``epsilons`` replaces the ε a finding reads ({1: 10, 2: 1, 3: (1, 10)}).
    """
    eps = {1: 10.0, 2: 1.0, 3: (1.0, 10.0), **(epsilons or {})}
    pool = {"level": level, "tau2_method": tau2_method, "interval": interval}
    utility = utility_effects(auroc_changes, info, models=models, method=method)
    gaps = gap_effects(gap_changes, info, models=models, attributes=attributes, method=method,
                       validation=validation, better_off=better_off)  # fmt: skip
    rows: list[dict] = []
    for finding in (1, 2):
        part = utility[utility["epsilon"] == eps[finding]] if not utility.empty else utility
        rows += _utility_rows(finding, part, eps[finding], margin=margin, **pool)
        if finding == 2:
            rows += _moderator_rows(2, part, "size", eps[2], **pool)
        rows += _moderator_rows(finding, part, "modality", eps[finding], **pool)
    for epsilon in _gap_epsilons(gaps, eps[3]):
        rows += _gap_rows(gaps[gaps["epsilon"] == epsilon], epsilon, margin=equivalence_margin, alpha=alpha,
                          power=power, **pool)  # fmt: skip
    out = pd.DataFrame(rows, columns=FINDINGS_COLUMNS)
    out["claim"] = out["finding"].map(CLAIMS)
    return out


def _utility_rows(finding, part, epsilon, *, margin, level, tau2_method, interval) -> list[dict]:
    classify = verdicts.non_inferiority if finding == 1 else verdicts.cost
    rows = []
    for r in part.itertuples(index=False):
        cls = classify(r.ci_low, r.ci_high, margin)
        rows.append({**_dataset_keys(r, finding), **_contrast(r), "margin": margin, "verdict_class": cls,
                     "verdict": dataset_utility(finding, r, cls, margin=margin)})  # fmt: skip
    for modality, sub in _scopes(part):
        p = _pool(sub, level=level, tau2_method=tau2_method, interval=interval)
        if p is None:
            continue
        cls = classify(p.ci_low, p.ci_high, margin)
        keys = _pooled_keys(finding, modality, epsilon, sub, p, level=level)
        rows.append({**keys, "margin": margin, "verdict_class": cls,
                     "verdict": pooled_utility(finding, p, cls, scope=POOLED[modality], margin=margin,
                                               epsilon=epsilon, pi=(keys["pi_low"], keys["pi_high"]), level=level)})  # fmt: skip
    return rows


def _moderator_rows(finding, part, moderator, epsilon, *, level, tau2_method, interval) -> list[dict]:
    """A meta-regression slope: the change on log n_train, or imaging against tabular (1 for an image set)."""
    if part.empty or len(part) < 3:
        return []
    if moderator == "size":
        x, scope = np.log(part["n_train"].to_numpy(float)), SIZE_SCOPE
        above, below = "smaller datasets lose more", "larger datasets lose more"
    else:
        x, scope = (part["modality"] == "image").to_numpy(float), MODALITY_SCOPE
        above, below = "imaging keeps more", "imaging loses more"
    if np.ptp(x) == 0:
        return []
    fit = meta_regression(part["estimate"].to_numpy(float), part["se"].to_numpy(float), x,
                          method=tau2_method, ci_level=level, interval=interval)  # fmt: skip
    cls = verdicts.moderator(fit.slope_ci_low, fit.slope_ci_high, above=above, below=below)
    return [
        {
            "finding": finding,
            "scope": scope,
            "kind": "moderator",
            "method": ";".join(sorted(set(part["method"]))),
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
            "verdict": moderator_sentence(fit, cls, moderator=moderator, epsilon=epsilon, level=level),
            "datasets": ";".join(part["dataset"]),
        }
    ]


def _gap_rows(part, epsilon, *, margin, alpha, power, level, tau2_method, interval) -> list[dict]:
    rows = []
    for r in part.itertuples(index=False):
        cls = verdicts.gap_change(r.ci_low, r.ci_high, margin)
        rows.append({**_dataset_keys(r, 3), **_contrast(r), "attribute": r.attribute, "margin": margin,
                     "mde": r.mde, "better_group": r.better_group, "worse_group": r.worse_group,
                     "oriented_by": r.oriented_by, "better_change": r.better_change, "worse_change": r.worse_change,
                     "verdict_class": cls, "verdict": dataset_gap(r, cls)})  # fmt: skip
    for modality, sub in _scopes(part):
        p = _pool(sub, level=level, tau2_method=tau2_method, interval=interval)
        if p is None:
            continue
        better, worse = _weighted_mean(sub, "better_change"), _weighted_mean(sub, "worse_change")
        cls = verdicts.gap_change(p.ci_low, p.ci_high, margin)
        mde = verdicts.detectable(p.se, p.df, alpha=alpha, power=power)
        keys = _pooled_keys(3, modality, epsilon, sub, p, level=level)
        rows.append({**keys, "attribute": ";".join(sorted(set(sub["attribute"]))), "margin": margin, "mde": mde,
                     "better_change": better, "worse_change": worse, "verdict_class": cls,
                     "verdict": pooled_gap(p, cls, scope=POOLED[modality], epsilon=epsilon, margin=margin, mde=mde,
                                           better=better, worse=worse, pi=(keys["pi_low"], keys["pi_high"]))})  # fmt: skip
    return rows


def _gap_epsilons(gaps: pd.DataFrame, wanted) -> list[float]:
    """Finding 3's ε: the review's 1 and 10 where the grid has them, else every finite ε it has."""
    have = sorted(set(gaps["epsilon"])) if not gaps.empty else []
    chosen = [e for e in have if e in wanted]
    return chosen or have


def _scopes(part: pd.DataFrame) -> list[tuple]:
    """Pooled scopes: each modality with two or more datasets, and all datasets when both modalities appear."""
    if part.empty:
        return []
    counts = part["modality"].value_counts()
    scopes = [(m, part[part["modality"] == m]) for m in ("image", "tabular") if counts.get(m, 0) >= 2]
    if len(counts) > 1:
        scopes.append((None, part))
    return scopes


def _pool(sub: pd.DataFrame, *, level, tau2_method, interval):
    if len(sub) < 2:
        return None
    return random_effects(sub["estimate"].to_numpy(float), sub["se"].to_numpy(float), method=tau2_method,
                          ci_level=level, interval=interval)  # fmt: skip


def _prediction_interval(p, level: float) -> tuple[float, float]:
    """The range a new dataset's true change falls in with probability ``level`` (Higgins et al. 2009); k ≥ 3."""
    if p.k < 3 or not math.isfinite(p.tau2):
        return math.nan, math.nan
    half = stats.t.ppf(0.5 + level / 2, p.k - 2) * math.sqrt(p.tau2 + p.se**2)
    return p.estimate - half, p.estimate + half


def _weighted_mean(sub, column) -> float:
    """A per-group change across datasets, weighted as the gap changes are (1/se²).

    The tables carry no se of the groups' own changes, so this is descriptive, beside the pooled gap, to show
    levelling down.
    """
    values, se = sub[column].to_numpy(float), sub["se"].to_numpy(float)
    ok = np.isfinite(values)
    if ok.sum() == 0:
        return float("nan")
    w = 1 / se[ok] ** 2
    return float(np.sum(w * values[ok]) / np.sum(w))


def _contrast(r) -> dict:
    return {"estimate": r.estimate, "se": r.se, "ci_low": r.ci_low, "ci_high": r.ci_high, "df": r.df,
            "p_value": r.p_value}  # fmt: skip


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


def _pooled_keys(finding, modality, epsilon, sub, p, *, level) -> dict:
    pi_low, pi_high = _prediction_interval(p, level)
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
        "pi_low": pi_low,
        "pi_high": pi_high,
        "datasets": ";".join(sub["dataset"]),
    }
