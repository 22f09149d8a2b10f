"""Each method against ``dpsgd`` at the same ε, with intervals over seeds and test resamples.

The methods compared are a dataset's others beside ``dpsgd`` (fairness mitigations, patient-level or tuned
arms, federated methods) at every finite ε; a federated method also at ε = ∞, where FedAvg against central
training is the cost of federation alone.

Compared: the AUROC difference, the headline-gap difference and the per-group AUROC differences.
The one place that defines the comparison (swap the gap definition here). The headline gap is the
**excess** AUROC gap of the attribute the mitigation targets (``mitigation.attribute``): the max − min gap
over groups with at least ``min_group_size`` test rows minus the run's own permutation ``null_gap``, as in
:mod:`dpfair.fairness.gap_changes`. The raw gap's noise floor grows as AUROC falls, so comparing raw gaps
would credit a less accurate method with a larger "disparity"; subtracting each run's null removes that.
Gaps and null gaps come from every run's ``gaps.csv`` and its bootstrap replicates
(``gap_replicates.csv.gz``: the same resamples of the same test rows in every run); the raw gaps are
reported beside (``method_gap``, ``baseline_gap``, ``raw_gap_diff``). AUROC and
per-group AUROC replicates are computed here from the runs' test scores with one set of resamples for all
runs (stratified by label, and by group and label for the groups), so they pair across runs too.

Each difference is a contrast of seed means over runs that share one test set
(:func:`dpfair.fairness.contrasts.seed_contrast`): se² = S²/k + c̄, S² the spread of the per-seed
differences (paired by seed: a seed gives both methods the same initial weights and Poisson batches; Welch
when the seed sets differ), c̄ the mean between-seed covariance of the runs' bootstrap replicates (the part
of the test-set noise that the seeds share and S² cannot see; a run's own test noise is already in S², so
its bootstrap variance is not added again). Interval, ``*_p_value`` and ``*_mde`` (the smallest true
difference the level-``alpha`` test detects with probability ``power``) from the contrast's test at
``*_df`` = k − 1 and its nuisance-ratio bound ``*_ratio``, from which
:func:`~dpfair.fairness.contrasts.interval_of` rebuilds any interval of the row. Class per quantity
(:func:`dpfair.fairness.contrasts.classify`): a change (gap ``narrowed`` / ``widened``, AUROC ``gained`` /
``lost``) when p < ``alpha``; ``equivalent`` within ±``margin`` when the 1 − 2α interval lies inside it
(two one-sided tests); else ``inconclusive`` (with its MDE). ``*_within_margin``: that 1 − 2α interval lies
inside ±``margin`` (false without a verdict); a change that is also within the margin keeps its class and the
sentence calls it practically negligible. One seed per arm: ``one model``, no verdict (the interval then
carries one trained model's test-set noise only, and p and MDE are empty). The p-values are per row, not
adjusted over methods, ε or groups.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from dpfair.fairness import stratified_bootstrap_weights, weighted_metrics
from dpfair.fairness.contrasts import (
    DOWN,
    EQUIVALENT,
    INCONCLUSIVE,
    ONE_MODEL,
    UP,
    Contrast,
    classify,
    interval_of,
    seed_contrast,
)

log = logging.getLogger(__name__)

BASELINE = "dpsgd"
COLUMNS = [
    "dataset",
    "model",
    "attribute",
    "epsilon",
    "method",
    "auroc_diff",
    "auroc_diff_ci_low",
    "auroc_diff_ci_high",
    "auroc_diff_se",
    "auroc_diff_df",
    "auroc_diff_ratio",
    "auroc_diff_p_value",
    "auroc_diff_mde",
    "auroc_diff_within_margin",
    "auroc_class",
    "gap_diff",
    "gap_diff_ci_low",
    "gap_diff_ci_high",
    "gap_diff_se",
    "gap_diff_df",
    "gap_diff_ratio",
    "gap_diff_p_value",
    "gap_diff_mde",
    "gap_diff_within_margin",
    "gap_class",
    "margin",
    "baseline",
    "n_seeds",
    "paired_by_seed",
    "method_auroc",
    "baseline_auroc",
    "method_gap",
    "baseline_gap",
    "method_null_gap",
    "baseline_null_gap",
    "raw_gap_diff",
    "verdict",
]
GROUP_COLUMNS = [
    "dataset",
    "model",
    "attribute",
    "epsilon",
    "method",
    "group",
    "n_test",
    "auroc_diff",
    "auroc_diff_ci_low",
    "auroc_diff_ci_high",
    "auroc_diff_se",
    "auroc_diff_df",
    "auroc_diff_ratio",
    "auroc_diff_p_value",
    "auroc_diff_mde",
    "auroc_diff_within_margin",
    "auroc_class",
    "method_auroc",
    "baseline_auroc",
    "verdict",
]
#: A quantity's class names, from :func:`~dpfair.fairness.contrasts.classify`'s.
GAP_CLASSES = {UP: "widened", DOWN: "narrowed"}
AUROC_CLASSES = {UP: "gained", DOWN: "lost"}
ONE_MODEL_TEXT = "one trained model per arm: no verdict"
_KEYS = ["dataset", "model", "method", "epsilon", "seed"]


def difference_contrast(arm: pd.DataFrame, base: pd.DataFrame) -> Contrast:
    """The contrast of ``arm`` minus ``base`` (:func:`~dpfair.fairness.contrasts.seed_contrast`).

    ``arm``/``base``: one row per seed (index), column ``point`` the run's estimate and the other columns
    its replicates on the shared resamples (only the replicates both arms have are used). Paired by seed
    when both arms have the same seeds.
    """
    reps = [c for c in arm.columns if c != "point" and c in set(base.columns) - {"point"}]
    paired = set(arm.index) == set(base.index)
    if paired:
        base = base.reindex(arm.index)
    return seed_contrast(
        arm["point"].to_numpy(dtype=float),
        base["point"].to_numpy(dtype=float),
        arm[reps].to_numpy(dtype=float),
        base[reps].to_numpy(dtype=float),
        paired=paired,
    )


def paired_difference(
    arm: pd.DataFrame, base: pd.DataFrame, *, level: float = 0.95
) -> tuple[float, float, float, bool]:
    """(difference of seed means, interval low, high, paired by seed) of two arms (:func:`difference_contrast`).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> test = rng.normal(0, 0.01, 500)  # one test set: the same resample moves every run alike
        >>> arm = pd.DataFrame(np.c_[0.80 + rng.normal(0, 0.01, 4)], columns=["point"])
        >>> base = pd.DataFrame(np.c_[0.70 + rng.normal(0, 0.01, 4)], columns=["point"])
        >>> arm, base = (pd.concat([t, pd.DataFrame(t["point"].to_numpy()[:, None] + test)], axis=1) for t in (arm, base))
        >>> d, low, high, paired = paired_difference(arm, base)
        >>> round(d, 3), round(low, 3), round(high, 3), paired  # the shared test noise cancels
        (0.093, 0.079, 0.108, True)
    """
    contrast = difference_contrast(arm, base)
    low, high = contrast.interval(level)
    return contrast.estimate, low, high, contrast.paired


def _statistics(
    prefix: str, contrast: Contrast, names: dict, *, level: float, alpha: float, margin: float, power: float
):
    """(the ``prefix`` columns of a contrast, its class name)."""
    kind = classify(contrast, alpha=alpha, margin=margin)
    judged = kind != ONE_MODEL
    low, high = contrast.interval(level)
    tost_low, tost_high = contrast.interval(1 - 2 * alpha)
    inside = all(math.isfinite(v) for v in (tost_low, tost_high)) and -margin < tost_low and tost_high < margin
    columns = {
        prefix: contrast.estimate,
        f"{prefix}_ci_low": low,
        f"{prefix}_ci_high": high,
        f"{prefix}_se": contrast.se,
        f"{prefix}_df": contrast.df,
        f"{prefix}_ratio": contrast.ratio,
        f"{prefix}_p_value": contrast.p_value if judged else math.nan,
        f"{prefix}_mde": contrast.mde(alpha=alpha, power=power) if judged else math.nan,
        f"{prefix}_within_margin": bool(judged and contrast.defined and inside),
    }
    return columns, names.get(kind, kind)


def compare_methods(
    *,
    records: Iterable[str | Path],
    scores: Iterable[str | Path],
    gaps: pd.DataFrame,
    replicates: pd.DataFrame,
    attributes: dict[str, str],
    n_boot: int = 1000,
    bootstrap_seed: int = 0,
    min_group_size: int = 30,
    level: float = 0.95,
    margin: float = 0.03,
    alpha: float = 0.05,
    power: float = 0.8,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The comparison tables (``method_comparison.csv`` and its per-group companion).

    Args:
        records: every run's ``run.json``.
        scores: every run's ``scores.csv``, in the order of ``records``.
        gaps: the runs' stacked ``gaps.csv``.
        replicates: the runs' stacked ``gap_replicates.csv.gz`` (the bootstrap replicates of those gaps).
        attributes: per dataset, the attribute compared (a mitigation's target; a federated method's site
            attribute); datasets without one are skipped.
        n_boot: test-set resamples for the AUROC and per-group AUROC differences.
        bootstrap_seed: seed of those resamples (one set for every run of a cell, so they pair).
        min_group_size: the fewest test rows (with both labels) a group needs for its per-group AUROC difference.
        level: the intervals' coverage.
        margin: the equivalence margin of every difference (AUROC and excess gap units).
        alpha: the level of each test; equivalence reads the 1 − 2α interval.
        power: the power at which the ``*_mde`` columns are stated.
    """
    runs = _load_runs(records, scores, attributes)
    rows, group_rows = [], []
    if runs.empty:
        return pd.DataFrame(columns=COLUMNS), pd.DataFrame(columns=GROUP_COLUMNS)
    gaps = gaps.assign(epsilon=gaps["epsilon"].astype(float))
    replicates = replicates.assign(epsilon=replicates["epsilon"].astype(float))
    judge = {"level": level, "alpha": alpha, "margin": margin, "power": power}
    for (dataset, model), cell in runs.groupby(["dataset", "model"], sort=True):
        attribute = attributes[dataset]
        utility, per_group = _score_replicates(
            cell, attribute, n_boot=n_boot, seed=bootstrap_seed, min_group_size=min_group_size
        )
        gap_table = _gap_table(gaps, replicates, dataset, model, attribute)
        for eps in sorted(cell["epsilon"].unique()):
            here = cell[cell["epsilon"] == eps]
            if BASELINE not in set(here["method"]):
                continue
            for method in sorted(set(here["method"]) - {BASELINE}):
                if not math.isfinite(eps) and not _federated(method):
                    continue
                arm, base = utility[(method, eps)], utility[(BASELINE, eps)]
                auroc = difference_contrast(arm, base)
                auroc_columns, auroc_class = _statistics("auroc_diff", auroc, AUROC_CLASSES, **judge)
                g_arm, g_base = gap_table.get((method, eps)), gap_table.get((BASELINE, eps))
                if g_arm is not None and g_base is not None:
                    (g_arm, arm_null), (g_base, base_null) = g_arm, g_base
                    gap_contrast = difference_contrast(g_arm, g_base)
                    method_null, base_null = float(arm_null.mean()), float(base_null.mean())
                    method_gap = float(g_arm["point"].mean()) + method_null
                    base_gap = float(g_base["point"].mean()) + base_null
                else:
                    nan = math.nan
                    gap_contrast = Contrast(nan, nan, nan, len(arm), set(arm.index) == set(base.index), nan, nan, nan)
                    method_gap = base_gap = method_null = base_null = nan
                gap_columns, gap_class = _statistics("gap_diff", gap_contrast, GAP_CLASSES, **judge)
                row = {
                    "dataset": dataset,
                    "model": model,
                    "attribute": attribute,
                    "epsilon": eps,
                    "method": method,
                    **auroc_columns,
                    "auroc_class": auroc_class,
                    **gap_columns,
                    "gap_class": gap_class,
                    "margin": margin,
                    "baseline": BASELINE,
                    "n_seeds": len(arm),
                    "paired_by_seed": auroc.paired,
                    "method_auroc": float(arm["point"].mean()),
                    "baseline_auroc": float(base["point"].mean()),
                    "method_gap": method_gap,
                    "baseline_gap": base_gap,
                    "method_null_gap": method_null,
                    "baseline_null_gap": base_null,
                    "raw_gap_diff": method_gap - base_gap,
                }
                row["verdict"] = verdict(row, alpha=alpha, power=power)
                rows.append(row)
                for group, (n_test, reps) in per_group.items():
                    contrast = difference_contrast(reps[(method, eps)], reps[(BASELINE, eps)])
                    columns, kind = _statistics("auroc_diff", contrast, AUROC_CLASSES, **judge)
                    group_rows.append(
                        {
                            "dataset": dataset,
                            "model": model,
                            "attribute": attribute,
                            "epsilon": eps,
                            "method": method,
                            "group": group,
                            "n_test": n_test,
                            **columns,
                            "auroc_class": kind,
                            "method_auroc": float(reps[(method, eps)]["point"].mean()),
                            "baseline_auroc": float(reps[(BASELINE, eps)]["point"].mean()),
                            "verdict": _group_verdict(kind, columns, margin, power),
                        }
                    )
    return pd.DataFrame(rows, columns=COLUMNS), pd.DataFrame(group_rows, columns=GROUP_COLUMNS)


def _federated(method: str) -> bool:
    from dpfair.training.mechanisms import get_mechanism
    from dpfair.training.tuning.names import split_method

    return get_mechanism(split_method(method)[0]).federated


def _load_runs(records, scores, attributes: dict[str, str]) -> pd.DataFrame:
    rows = []
    for record, score in zip(records, scores):
        run = json.loads(Path(record).read_text())
        if run["dataset"] not in attributes or not attributes[run["dataset"]]:
            continue
        rows.append(
            {
                "dataset": run["dataset"],
                "model": run["model"],
                "method": run.get("method", BASELINE),
                "epsilon": float(run["epsilon"]),
                "seed": int(run["seed"]),
                "scores": str(score),
            }
        )
    return pd.DataFrame(rows, columns=[*_KEYS, "scores"])


def _score_replicates(cell: pd.DataFrame, attribute: str, *, n_boot: int, seed: int, min_group_size: int):
    """Per (method, ε): a seed × [point, replicates] frame of test AUROC; per group the same for its AUROC."""
    parts = attribute.split(":")
    tables = {}
    for r in cell.itertuples():
        t = pd.read_csv(r.scores, dtype={p: str for p in parts}, keep_default_na=False)
        tables[(r.method, r.epsilon, r.seed)] = t[t["split"] == "test"].reset_index(drop=True)
    first = next(iter(tables.values()))
    y = first["label"].to_numpy()
    group = first[parts].astype(str).agg(":".join, axis=1).to_numpy()
    for key, t in tables.items():  # pairing needs the same test rows in the same order
        if len(t) != len(y) or not np.array_equal(t["label"].to_numpy(), y):
            raise ValueError(f"run {key} was scored on other test rows than its comparison partners")
    weights = stratified_bootstrap_weights(strata=y, n_boot=n_boot, seed=seed)
    group_weights = stratified_bootstrap_weights(strata=pd.DataFrame({"g": group, "y": y}), n_boot=n_boot, seed=seed)
    levels = [g for g in sorted(set(group)) if (group == g).sum() >= min_group_size and len(set(y[group == g])) == 2]
    overall: dict = {}
    per_group: dict = {g: ((group == g).sum(), {}) for g in levels}
    for (method, eps, s), t in tables.items():
        score = t["score"].to_numpy(dtype=float)
        value = weighted_metrics(y_true=y, score=score, metrics=("auroc",))["auroc"][0]
        reps = weighted_metrics(y_true=y, score=score, weights=weights, metrics=("auroc",))["auroc"]
        overall.setdefault((method, eps), {})[s] = np.r_[value, reps]
        for g in levels:
            rows = group == g
            point = weighted_metrics(y_true=y[rows], score=score[rows], metrics=("auroc",))["auroc"][0]
            greps = weighted_metrics(
                y_true=y[rows], score=score[rows], weights=group_weights[:, rows], metrics=("auroc",)
            )["auroc"]
            per_group[g][1].setdefault((method, eps), {})[s] = np.r_[point, greps]

    def frame(d):
        return {k: pd.DataFrame.from_dict(v, orient="index", columns=["point", *range(n_boot)]) for k, v in d.items()}

    return frame(overall), {g: (int(n), frame(d)) for g, (n, d) in per_group.items()}


def _gap_table(gaps: pd.DataFrame, replicates: pd.DataFrame, dataset: str, model: str, attribute: str) -> dict:
    """Per (method, ε): (seed × [point, replicates] of the excess AUROC gap of ``attribute``, per-seed null gap).

    Each run's null gap is a constant of that run (its permutation mean), so it shifts the point and every
    replicate alike.
    """

    def pick(t):
        return t[
            (t["dataset"] == dataset) & (t["model"] == model) & (t["attribute"] == attribute) & (t["metric"] == "auroc")
        ]

    est, reps = pick(gaps), pick(replicates)
    out = {}
    for (method, eps), part in est.groupby(["method", "epsilon"]):
        wide = reps[(reps["method"] == method) & (reps["epsilon"] == eps)].pivot_table(
            index="seed", columns="replicate", values="gap", aggfunc="first", dropna=False
        )
        point = part.set_index("seed")["gap"].astype(float)
        null = part.set_index("seed")["null_gap"].astype(float)
        table = pd.concat([point.rename("point"), wide.reindex(point.index)], axis=1)
        out[(method, eps)] = (table.sub(null, axis=0), null)
    return out


def _num(x: float, digits: int = 3) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:+.{digits}f}"


def _p(p: float) -> str:
    return "p = —" if not math.isfinite(p) else "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def _equivalence_interval(row: dict, prefix: str, alpha: float) -> str:
    """The 1 − 2α interval of a row's ``prefix`` difference, as text (TOST reads it against ±margin)."""
    ratio = row.get(f"{prefix}_ratio", 0.0)  # older tables have no ratio column: r_low = 0
    low, high = interval_of(row[prefix], row[f"{prefix}_se"], row[f"{prefix}_df"], ratio, level=1 - 2 * alpha)
    return f"{1 - 2 * alpha:.0%} interval [{_num(low)}, {_num(high)}]"


def _detects(mde: float, power: float) -> str:
    """The inconclusive reading: "inconclusive: would detect a change of ≥ 0.081 at 80% power"."""
    return f"inconclusive: would detect a change of ≥ {mde:.3f} at {power:.0%} power"


def _negligible(row: dict, prefix: str, margin: float) -> str:
    """The sentence tail for a change inside the margin ("detected but within ±m, practically negligible"), else ""."""
    value = row.get(f"{prefix}_within_margin", False)
    inside = value.strip().lower() == "true" if isinstance(value, str) else value is True or value == 1
    return f", detected but within ±{margin:g} (practically negligible)" if inside else ""


def _group_verdict(kind: str, columns: dict, margin: float, power: float = 0.8) -> str:
    """A per-group row's verdict: gained / lost / equivalent within ±m / inconclusive (would detect ≥ MDE) / ..."""
    if kind == EQUIVALENT:
        return f"equivalent within ±{margin:g}"
    if kind == INCONCLUSIVE:
        return _detects(columns["auroc_diff_mde"], power)
    if kind == ONE_MODEL:
        return ONE_MODEL_TEXT
    return kind + _negligible(columns, "auroc_diff", margin)


def verdict(row: dict, *, alpha: float = 0.05, power: float = 0.8) -> str:
    """One sentence: did the method narrow the headline gap against dpsgd at this ε, and what did it cost?

    Each quantity reads as its class says (``gap_class``, ``auroc_class``): a change with its size,
    interval and p; "equivalent within ±margin" with the 1 − 2α interval; "inconclusive" with the interval
    and the smallest change the comparison detects at ``power`` (MDE); a change inside ±margin is called
    practically negligible; one seed per arm gives no verdict.

    Example:
        >>> row = {"epsilon": 1.0, "method": "dpsgd_f", "baseline": "dpsgd", "attribute": "sex", "margin": 0.03,
        ...        "gap_class": "narrowed", "gap_diff": -0.05, "gap_diff_ci_low": -0.08, "gap_diff_ci_high": -0.02,
        ...        "gap_diff_se": 0.01, "gap_diff_df": 9.0, "gap_diff_p_value": 0.001, "gap_diff_mde": 0.03,
        ...        "auroc_class": "equivalent", "auroc_diff": 0.004, "auroc_diff_ci_low": -0.007,
        ...        "auroc_diff_ci_high": 0.015, "auroc_diff_se": 0.005, "auroc_diff_df": 9.0,
        ...        "auroc_diff_p_value": 0.44, "auroc_diff_mde": 0.016}
        >>> verdict(row)  # doctest: +NORMALIZE_WHITESPACE
        'At ε = 1, dpsgd_f narrowed the excess sex AUROC gap by 0.050 (-0.050 [-0.080, -0.020], p = 0.001)
        against dpsgd, with AUROC equivalent within ±0.03 (90% interval [-0.005, +0.013])'
    """
    eps, margin = f"{row['epsilon']:g}", row["margin"]
    where = f"At ε = {eps}, {row['method']}"
    gap_name = f"the excess {row['attribute']} AUROC gap"

    def interval(prefix: str) -> str:
        return f"{_num(row[prefix])} [{_num(row[f'{prefix}_ci_low'])}, {_num(row[f'{prefix}_ci_high'])}]"

    if ONE_MODEL in (row["gap_class"], row["auroc_class"]):
        return (
            f"{where} against {row['baseline']}: {ONE_MODEL_TEXT} (excess gap {interval('gap_diff')}, "
            f"AUROC {interval('auroc_diff')}; test-set noise only)"
        )
    gap = row["gap_class"]
    if gap in ("narrowed", "widened"):
        gap_text = (
            f"{gap} {gap_name} by {abs(row['gap_diff']):.3f} ({interval('gap_diff')}, {_p(row['gap_diff_p_value'])})"
            + _negligible(row, "gap_diff", margin)
        )
    elif gap == EQUIVALENT:
        gap_text = f"left {gap_name} equivalent within ±{margin:g} ({_equivalence_interval(row, 'gap_diff', alpha)})"
    elif gap == INCONCLUSIVE:
        gap_text = f"changed {gap_name} by {interval('gap_diff')} ({_detects(row['gap_diff_mde'], power)})"
    else:
        gap_text = f"has no defined difference in {gap_name}"
    auroc = row["auroc_class"]
    if auroc == "lost":
        auroc_text = (
            f"at a cost of {abs(row['auroc_diff']):.3f} AUROC ({interval('auroc_diff')}, "
            f"{_p(row['auroc_diff_p_value'])})" + _negligible(row, "auroc_diff", margin)
        )
    elif auroc == "gained":
        auroc_text = (
            f"with a gain of {abs(row['auroc_diff']):.3f} AUROC ({interval('auroc_diff')}, "
            f"{_p(row['auroc_diff_p_value'])})" + _negligible(row, "auroc_diff", margin)
        )
    elif auroc == EQUIVALENT:
        auroc_text = f"with AUROC equivalent within ±{margin:g} ({_equivalence_interval(row, 'auroc_diff', alpha)})"
    elif auroc == INCONCLUSIVE:
        auroc_text = f"with an AUROC change of {interval('auroc_diff')} ({_detects(row['auroc_diff_mde'], power)})"
    else:
        auroc_text = "with no defined AUROC difference"
    return f"{where} {gap_text} against {row['baseline']}, {auroc_text}"


def report_rows(table: pd.DataFrame, groups: pd.DataFrame) -> list[dict]:
    """Rows of the report's method-comparison section: the verdict and each group's move (gained, lost, ...)."""
    out = []
    for row in table.to_dict("records"):
        g = groups[
            (groups["dataset"] == row["dataset"])
            & (groups["model"] == row["model"])
            & (groups["method"] == row["method"])
            & (groups["epsilon"] == row["epsilon"])
        ]
        moves = [_group_move(r) for r in g.to_dict("records")]
        out.append({**row, "groups_text": "; ".join(moves) or "—"})
    return out


def _group_move(r: dict) -> str:
    """A group's move: its verdict and interval.

    Example: "B gained (+0.146 [+0.046, +0.246])",
    "A inconclusive: would detect a change of ≥ 0.081 at 80% power (+0.020 [−0.040, +0.090])".
    """
    kind = r.get("auroc_class")
    interval = f"{_num(r['auroc_diff'])} [{_num(r['auroc_diff_ci_low'])}, {_num(r['auroc_diff_ci_high'])}]"
    if kind in (ONE_MODEL, "undefined"):
        return f"{r['group']}: {r['verdict']} ({interval})"
    return f"{r['group']} {r['verdict']} ({interval})"
