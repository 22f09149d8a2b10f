"""Each fairness mitigation against ``dpsgd`` at the same ε, with intervals over seeds and test resamples.

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

Interval (as ``dpfair.fairness.gap_changes`` does for ε against ∞): with k seeds per arm,
D_b = mean_s value_method,s,b − mean_s value_dpsgd,s,b per resample b (paired: same test rows); the
seed-to-seed term se · T_b, se the standard error of the per-seed differences (paired by seed: a seed gives
both methods the same initial weights and Poisson batches), T_b ~ Student t with k − 1 df; percentiles of
D_b + se·T_b at ``level``. One seed: test-set variance only.
"""

from __future__ import annotations

import json
import logging
import math
import zlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from dpfair.fairness import stratified_bootstrap_weights, weighted_metrics

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
    "gap_diff",
    "gap_diff_ci_low",
    "gap_diff_ci_high",
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
    "method_auroc",
    "baseline_auroc",
    "verdict",
]
_KEYS = ["dataset", "model", "method", "epsilon", "seed"]


def paired_difference(
    arm: pd.DataFrame, base: pd.DataFrame, *, level: float = 0.95, rng: np.random.Generator
) -> tuple[float, float, float, bool]:
    """(difference of seed means, interval low, high, paired by seed) of two arms.

    ``arm``/``base``: one row per seed (index), column ``point`` the run's estimate and columns 0..B-1 its
    replicates on the shared resamples.

    Example:
        >>> reps = np.random.default_rng(0).normal(0, 0.01, (1, 500))
        >>> a = pd.DataFrame(np.c_[[0.8], 0.8 + reps], columns=["point", *range(500)])
        >>> b = pd.DataFrame(np.c_[[0.7], 0.7 + reps], columns=["point", *range(500)])
        >>> d, low, high, paired = paired_difference(a, b, rng=np.random.default_rng(1))
        >>> round(d, 3), round(low, 3), round(high, 3), paired
        (0.1, 0.1, 0.1, True)
    """
    reps = [c for c in arm.columns if c != "point"]
    d_test = (arm[reps].mean(axis=0, skipna=False) - base[reps].mean(axis=0, skipna=False)).to_numpy(dtype=float)
    diff = float(arm["point"].mean(skipna=False) - base["point"].mean(skipna=False))
    paired = set(arm.index) == set(base.index)
    if paired:
        d = (arm["point"] - base["point"].reindex(arm.index)).to_numpy(dtype=float)
        se, df = (
            (float(np.std(d, ddof=1) / math.sqrt(len(d))), len(d) - 1)
            if len(d) > 1 and not np.isnan(d).any()
            else (0.0, 1)
        )
    else:  # Welch
        parts = [
            (np.var(x, ddof=1) / len(x), len(x))
            for x in (arm["point"].to_numpy(), base["point"].to_numpy())
            if len(x) > 1
        ]
        var = sum(v for v, _ in parts)
        se = math.sqrt(var) if parts and not np.isnan(var) else 0.0
        df = var**2 / sum(v**2 / (k - 1) for v, k in parts) if se > 0 else 1.0
    values = d_test + (se * rng.standard_t(df, len(d_test)) if se > 0 else 0.0)
    values = values[~np.isnan(values)]
    if not len(values) or math.isnan(diff):
        return diff, math.nan, math.nan, paired
    low, high = np.quantile(values, [(1 - level) / 2, 1 - (1 - level) / 2])
    return diff, float(low), float(high), paired


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
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The comparison tables (``method_comparison.csv`` and its per-group companion).

    Args:
        records: every run's ``run.json``.
        scores: every run's ``scores.csv``, in the order of ``records``.
        gaps: the runs' stacked ``gaps.csv``.
        replicates: the runs' stacked ``gap_replicates.csv.gz`` (the bootstrap replicates of those gaps).
        attributes: per dataset, the attribute its mitigations target (datasets without one are skipped).
        n_boot: test-set resamples for the AUROC and per-group AUROC differences.
        bootstrap_seed: seed of those resamples (one set for every run of a cell, so they pair) and of the
            seed-to-seed t draws of each comparison.
        min_group_size: the fewest test rows (with both labels) a group needs for its per-group AUROC difference.
        level: the intervals' coverage.
    """
    runs = _load_runs(records, scores, attributes)
    rows, group_rows = [], []
    if runs.empty:
        return pd.DataFrame(columns=COLUMNS), pd.DataFrame(columns=GROUP_COLUMNS)
    gaps = gaps.assign(epsilon=gaps["epsilon"].astype(float))
    replicates = replicates.assign(epsilon=replicates["epsilon"].astype(float))
    for (dataset, model), cell in runs.groupby(["dataset", "model"], sort=True):
        attribute = attributes[dataset]
        utility, per_group = _score_replicates(
            cell, attribute, n_boot=n_boot, seed=bootstrap_seed, min_group_size=min_group_size
        )
        gap_table = _gap_table(gaps, replicates, dataset, model, attribute)
        for eps in sorted(e for e in cell["epsilon"].unique() if math.isfinite(e)):
            here = cell[cell["epsilon"] == eps]
            if BASELINE not in set(here["method"]):
                continue
            for method in sorted(set(here["method"]) - {BASELINE}):
                rng = np.random.default_rng([bootstrap_seed, zlib.crc32(f"{dataset}|{model}|{method}|{eps}".encode())])
                arm, base = utility[(method, eps)], utility[(BASELINE, eps)]
                a_diff, a_low, a_high, paired = paired_difference(arm, base, level=level, rng=rng)
                g_arm, g_base = gap_table.get((method, eps)), gap_table.get((BASELINE, eps))
                if g_arm is not None and g_base is not None:
                    (g_arm, arm_null), (g_base, base_null) = g_arm, g_base
                    g_diff, g_low, g_high, _ = paired_difference(g_arm, g_base, level=level, rng=rng)
                    method_null, base_null = float(arm_null.mean()), float(base_null.mean())
                    method_gap = float(g_arm["point"].mean()) + method_null
                    base_gap = float(g_base["point"].mean()) + base_null
                else:
                    g_diff = g_low = g_high = method_gap = base_gap = method_null = base_null = math.nan
                row = {
                    "dataset": dataset,
                    "model": model,
                    "attribute": attribute,
                    "epsilon": eps,
                    "method": method,
                    "auroc_diff": a_diff,
                    "auroc_diff_ci_low": a_low,
                    "auroc_diff_ci_high": a_high,
                    "gap_diff": g_diff,
                    "gap_diff_ci_low": g_low,
                    "gap_diff_ci_high": g_high,
                    "baseline": BASELINE,
                    "n_seeds": len(arm),
                    "paired_by_seed": paired,
                    "method_auroc": float(arm["point"].mean()),
                    "baseline_auroc": float(base["point"].mean()),
                    "method_gap": method_gap,
                    "baseline_gap": base_gap,
                    "method_null_gap": method_null,
                    "baseline_null_gap": base_null,
                    "raw_gap_diff": method_gap - base_gap,
                }
                row["verdict"] = verdict(row)
                rows.append(row)
                for group, (n_test, reps) in per_group.items():
                    d, low, high, _ = paired_difference(
                        reps[(method, eps)], reps[(BASELINE, eps)], level=level, rng=rng
                    )
                    group_rows.append(
                        {
                            "dataset": dataset,
                            "model": model,
                            "attribute": attribute,
                            "epsilon": eps,
                            "method": method,
                            "group": group,
                            "n_test": n_test,
                            "auroc_diff": d,
                            "auroc_diff_ci_low": low,
                            "auroc_diff_ci_high": high,
                            "method_auroc": float(reps[(method, eps)]["point"].mean()),
                            "baseline_auroc": float(reps[(BASELINE, eps)]["point"].mean()),
                            "verdict": _direction(low, high, up="gained", down="lost"),
                        }
                    )
    return pd.DataFrame(rows, columns=COLUMNS), pd.DataFrame(group_rows, columns=GROUP_COLUMNS)


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


def _direction(low: float, high: float, *, up: str, down: str) -> str:
    if low > 0:
        return up
    if high < 0:
        return down
    return "no change detected"


def _num(x: float, digits: int = 3) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:+.{digits}f}"


def verdict(row: dict) -> str:
    """One sentence: did the method narrow the headline gap against dpsgd at this ε, and what did it cost?"""
    gap = _direction(row["gap_diff_ci_low"], row["gap_diff_ci_high"], up="widened", down="narrowed")
    auroc = _direction(row["auroc_diff_ci_low"], row["auroc_diff_ci_high"], up="gained", down="lost")
    eps = f"{row['epsilon']:g}"
    gap_text = (
        f"{gap} the excess {row['attribute']} AUROC gap by {abs(row['gap_diff']):.3f}"
        if gap != "no change detected"
        else f"did not change the excess {row['attribute']} AUROC gap detectably"
    )
    gap_text += f" ({_num(row['gap_diff'])} [{_num(row['gap_diff_ci_low'])}, {_num(row['gap_diff_ci_high'])}])"
    auroc_text = {"gained": "gained", "lost": "cost", "no change detected": "changed"}[auroc]
    auroc_text = (
        f"{auroc_text} {abs(row['auroc_diff']):.3f} AUROC"
        if auroc != "no change detected"
        else "no detectable AUROC change"
    )
    auroc_text += f" ({_num(row['auroc_diff'])} [{_num(row['auroc_diff_ci_low'])}, {_num(row['auroc_diff_ci_high'])}])"
    return f"At ε = {eps}, {row['method']} {gap_text} against {row['baseline']}, with {auroc_text}"


def report_rows(table: pd.DataFrame, groups: pd.DataFrame) -> list[dict]:
    """Rows of the report's method-comparison section: the verdict and which group gained or lost."""
    out = []
    for row in table.to_dict("records"):
        g = groups[
            (groups["dataset"] == row["dataset"])
            & (groups["model"] == row["model"])
            & (groups["method"] == row["method"])
            & (groups["epsilon"] == row["epsilon"])
        ]
        moves = [
            f"{r['group']} {r['verdict']} ({_num(r['auroc_diff'])} [{_num(r['auroc_diff_ci_low'])}, "
            f"{_num(r['auroc_diff_ci_high'])}])"
            for r in g.to_dict("records")
        ]
        out.append({**row, "groups_text": "; ".join(moves) or "—"})
    return out
