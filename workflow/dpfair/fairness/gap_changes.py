"""Change of each gap from ε = ∞ to each finite ε: estimate, interval, p, MDE and a three-way verdict.

**Estimand** (per dataset, model, method, attribute, metric), chosen from what every run of the row has:

* ``signed``: two usable groups, value(comparison) − value(reference), the larger group the reference in
  every run (:mod:`dpfair.fairness.gaps`). The difference of two estimates is unbiased, so its change is
  too; max − min is not (it understates a change of 0.10 by 39% and drifts towards "narrowing" as noise
  grows, in a statistics review of this code).
* ``tau2``: three or more usable groups, the untruncated DerSimonian–Laird τ² (unbiased; τ truncated at
  0 is not).
* ``excess``: otherwise (derived gaps such as equalized odds, older tables): max − min minus the run's
  permutation ``null_gap``. Max − min stays in every row as a description: ``excess_gap_change`` and
  ``raw_gap_change``.

**Variance**: :func:`dpfair.fairness.contrasts.seed_contrast` — seed means over one shared test set,
se² = S²/k + the mean between-seed bootstrap covariance (floored at 0), t with Satterthwaite df. (Adding the bootstrap variance to the
seed spread, as before, counted the test noise twice: 1.8× the true variance.) p-values come from the
t distribution, not from counting replicates.

**Family**: a declared *primary* family per dataset (:class:`PrimaryFamily`; default ``dpsgd``, AUROC,
every single attribute, every finite ε against ∞, every model) that does not grow when exploratory arms are
added. Holm's step-down adjustment (Holm, Scand J Stat 1979; any dependence) runs over the primary family of
each dataset only; everything else is *exploratory*, with its unadjusted p.

**Verdict** (:func:`dpfair.fairness.contrasts.classify`): "widens"/"narrows" when the (adjusted) p is below
α — widens meaning the arm's gap is further from 0 than the baseline's; "equivalent within ±m" when the
1 − 2α interval lies inside ±``margin`` (TOST; for τ², ±margin², the τ² of a two-group gap of ``margin``);
otherwise "inconclusive" with the row's minimum detectable change (``mde``) at ``power``: at α/m for a
primary row (m the family size; Holm's first step, so a conservative figure), α otherwise. One seed: no
verdict (the interval would carry the test noise of one trained model only).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dpfair.fairness._inputs import require
from dpfair.fairness.contrasts import DOWN, EQUIVALENT, INCONCLUSIVE, ONE_MODEL, UP, Contrast, classify, seed_contrast
from dpfair.fairness.metrics_registry import gap_label
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
    "family",
    "estimand",
    "reference_group",
    "comparison_group",
    "baseline_value",
    "arm_value",
    "gap_change",
    "ci_low",
    "ci_high",
    "se",
    "df",
    "n_seeds",
    "p_value",
    "p_adjusted",
    "mde",
    "verdict_class",
    "verdict",
    "reference_change",
    "comparison_change",
    "excess_gap_change",
    "raw_gap_change",
    "var_seed",
    "var_test",
    "cov_test",
]
PRIMARY, EXPLORATORY = "primary", "exploratory"
SIGNED, TAU2, EXCESS = "signed", "tau2", "excess"
WIDENS, NARROWS = "widens", "narrows"
#: The baseline method when the inputs have no ``method`` column.
DEFAULT_METHOD = "dpsgd"


@dataclass(frozen=True)
class PrimaryFamily:
    """A dataset's primary family: ``method``'s ``metric`` gap of ``attributes`` at every finite ε vs ∞.

    ``attributes`` None: every single attribute (not intersections) the runs have.

    Example:
        >>> PrimaryFamily(attributes=("site",)).covers(method="dpsgd", attribute="site", metric="auroc")
        True
    """

    method: str = DEFAULT_METHOD
    metric: str = "auroc"
    attributes: tuple[str, ...] | None = None

    def covers(self, *, method: str, attribute: str, metric: str) -> bool:
        """Whether a gap-change row of this method, attribute and metric belongs to the family."""
        named = attribute in self.attributes if self.attributes is not None else ":" not in attribute
        return method == self.method and metric == self.metric and named

    @classmethod
    def from_config(cls, spec: Mapping | None) -> PrimaryFamily:
        """From a dataset's ``primary`` block of the benchmark YAML (missing keys take the defaults)."""
        spec = dict(spec or {})
        attributes = spec.get("attributes")
        return cls(
            method=spec.get("method", DEFAULT_METHOD),
            metric=spec.get("metric", "auroc"),
            attributes=tuple(attributes) if attributes is not None else None,
        )


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
    groups: pd.DataFrame | None = None,
    primary: Mapping[str, PrimaryFamily] | None = None,
    margin: float = 0.03,
    alpha: float = 0.05,
    power: float = 0.8,
    level: float = 0.95,
    digits: int = 2,
) -> pd.DataFrame:
    """Gap changes vs ε = ∞ (see the module docstring) from the runs' gaps and their replicates.

    ``estimates``: dataset, model, [method,] epsilon, seed, attribute, metric, gap, null_gap and, where
    the runs have them, signed_gap, reference_group, comparison_group, tau2 (the runs' gaps tables);
    ``replicates``: the same keys, group, replicate and the replicated statistics (the runs' gap
    replicates, all runs of a dataset evaluated with one bootstrap seed). ``groups`` (the runs' subgroups
    tables) adds each group's own change of the metric beside a two-group row. ``primary``: per dataset
    its :class:`PrimaryFamily` (default for any dataset not named). ``epsilon`` is a float, ``inf`` for
    non-private.

    Example:
        >>> rng = np.random.default_rng(0); seeds = range(5)
        >>> est = pd.DataFrame([{"dataset": "d", "model": "m", "epsilon": e, "seed": s, "attribute": "site",
        ...     "metric": "auroc", "gap": abs(g), "null_gap": 0.01, "signed_gap": g, "reference_group": "A",
        ...     "comparison_group": "B", "tau2": np.nan} for e in (np.inf, 1.0) for s in seeds
        ...     for g in [(-0.05 if e == np.inf else -0.15) + rng.normal(0, 0.01)]])
        >>> shared = rng.normal(0, 0.01, 1000)
        >>> rep = pd.concat([est.assign(replicate=b, signed_gap=est["signed_gap"] + shared[b]) for b in range(1000)])
        >>> gap_changes(estimates=est, replicates=rep.assign(group=np.nan)).loc[0, "verdict_class"]
        'widens'
    """
    keys = [k for k in KEY_COLUMNS if k in estimates.columns]
    require(estimates, [*keys, "epsilon", "seed", "gap", "null_gap"], "estimates")
    require(replicates, [*keys, "epsilon", "seed", "replicate", "gap"], "replicates")
    primary = dict(primary or {})
    estimates = estimates.assign(
        epsilon=estimates["epsilon"].astype(float),
        excess=estimates["gap"].astype(float) - estimates["null_gap"].astype(float),
    )
    if estimates.duplicated([*keys, "epsilon", "seed"]).any():
        raise ValueError(f"estimates has more than one row for a ({', '.join(keys)}, epsilon, seed)")
    tables = _Replicates(_gap_replicates(replicates), [*keys, "epsilon", "seed"])
    group_table = _GroupValues(groups, keys) if groups is not None and not groups.empty else None
    rows = []
    for key, cell in estimates.groupby(keys, sort=True):
        named = dict(zip(keys, key))
        base = cell[np.isinf(cell["epsilon"])].set_index("seed").sort_index()
        if base.empty:
            log.warning("gap_changes: no epsilon=inf run for %s; skipped", named)
            continue
        estimand = _estimand(cell)
        family = primary.get(named["dataset"], PrimaryFamily())
        in_family = estimand != EXCESS and family.covers(
            method=named.get("method", DEFAULT_METHOD), attribute=named["attribute"], metric=named["metric"]
        )
        base_point = _point(base, estimand)
        base_reps = tables.get(key, math.inf, base.index, estimand, base)
        for eps in sorted(e for e in cell["epsilon"].unique() if not math.isinf(e)):
            arm = cell[cell["epsilon"] == eps].set_index("seed").sort_index()
            arm_point = _point(arm, estimand)
            arm_reps = tables.get(key, eps, arm.index, estimand, arm)
            paired = list(arm.index) == list(base.index)
            contrast = seed_contrast(arm_point, base_point, arm_reps, base_reps, paired=paired)
            excess = _contrast_estimate(arm["excess"], base["excess"])
            raw = _contrast_estimate(arm["gap"].astype(float), base["gap"].astype(float))
            row = {
                **named,
                "epsilon": eps,
                "family": PRIMARY if in_family else EXPLORATORY,
                "estimand": estimand,
                "reference_group": _label(cell, "reference_group") if estimand == SIGNED else "",
                "comparison_group": _label(cell, "comparison_group") if estimand == SIGNED else "",
                "baseline_value": float(np.mean(base_point)),
                "arm_value": float(np.mean(arm_point)),
                "contrast": contrast,
                "excess_gap_change": excess,
                "raw_gap_change": raw,
            }
            if group_table is not None and estimand == SIGNED:
                row["reference_change"] = group_table.change(key, eps, row["reference_group"])
                row["comparison_change"] = group_table.change(key, eps, row["comparison_group"])
            rows.append(row)
    return _finish(rows, keys, margin=margin, alpha=alpha, power=power, level=level, digits=digits)


def _finish(rows: list[dict], keys: list[str], *, margin, alpha, power, level, digits) -> pd.DataFrame:
    columns = [*keys, *GAP_CHANGE_COLUMNS[4:]]
    if not rows:
        return pd.DataFrame(columns=columns)
    table = pd.DataFrame(rows)
    for name in ("reference_change", "comparison_change"):
        if name not in table:
            table[name] = math.nan
    contrasts: list[Contrast] = list(table.pop("contrast"))
    table["gap_change"] = [c.estimate for c in contrasts]
    table[["ci_low", "ci_high"]] = [c.interval(level) for c in contrasts]
    table["se"] = [c.se for c in contrasts]
    table["df"] = [c.df for c in contrasts]
    table["n_seeds"] = [c.n_seeds for c in contrasts]
    table["p_value"] = [c.p_value if c.n_seeds > 1 else math.nan for c in contrasts]
    table["var_seed"] = [c.var_seed for c in contrasts]
    table["var_test"] = [c.var_test for c in contrasts]
    table["cov_test"] = [c.cov_test for c in contrasts]
    table["p_adjusted"] = math.nan
    family_size = {}
    for dataset, part in table[table["family"] == PRIMARY].groupby("dataset", sort=False):
        table.loc[part.index, "p_adjusted"] = holm(part["p_value"].to_numpy())
        family_size[dataset] = len(part)
    classes, mdes = [], []
    for row, contrast in zip(table.to_dict("records"), contrasts):
        primary = row["family"] == PRIMARY
        row_alpha = alpha / family_size[row["dataset"]] if primary else alpha
        mdes.append(contrast.mde(alpha=row_alpha, power=power))
        m = margin**2 if row["estimand"] == TAU2 else margin
        verdict = classify(contrast, p_value=row["p_adjusted"] if primary else None, alpha=alpha, margin=m)
        if verdict in (UP, DOWN):  # a signed gap widens when it moves away from 0, wherever it started
            further = abs(row["arm_value"]) > abs(row["baseline_value"]) if row["estimand"] == SIGNED else verdict == UP
            verdict = WIDENS if further else NARROWS
        classes.append(verdict)
    table["mde"] = mdes
    table["verdict_class"] = classes
    table["verdict"] = [
        _sentence(r, contrast, margin=margin, alpha=alpha, power=power, digits=digits)
        for r, contrast in zip(table.to_dict("records"), contrasts)
    ]
    return table[columns]


class _Replicates:
    """Seed × replicate arrays of one statistic, looked up by (row key, ε); pivoted once per statistic."""

    def __init__(self, replicates: pd.DataFrame, index: list[str]):
        self._frame, self._index, self._wide = replicates, index, {}

    def get(self, key: tuple, eps: float, seeds: pd.Index, estimand: str, runs: pd.DataFrame) -> np.ndarray:
        column = {SIGNED: "signed_gap", TAU2: "tau2", EXCESS: "gap"}[estimand]
        if column not in self._wide:
            self._wide[column] = self._frame.set_index([*self._index, "replicate"])[column].astype(float).unstack()
        wide = self._wide[column]
        rows = [(*key, eps, s) for s in seeds]
        missing = [r for r in rows if r not in wide.index]
        if missing:
            raise ValueError(f"replicates lack seeds {[r[-1] for r in missing]} for {key} at ε = {eps}")
        values = wide.loc[rows].to_numpy(dtype=float)
        if estimand == EXCESS:  # the run's null gap is a constant of the run: shift every replicate alike
            values = values - runs["null_gap"].astype(float).to_numpy()[:, None]
        return values


class _GroupValues:
    """Each group's own change of the row's metric: mean over seeds at ε minus mean at ∞ (a description).

    It sits beside a two-group row so that levelling down (both groups falling) is visible. ``groups``:
    the runs' subgroups tables, one column per metric (``subgroups.csv``).
    """

    def __init__(self, groups: pd.DataFrame, keys: list[str]):
        self._all, self._keys = keys, [k for k in keys if k != "metric"]
        self._groups = groups.assign(epsilon=groups["epsilon"].astype(float), group=groups["group"].astype(str))
        self._means: dict[str, pd.Series] = {}

    def change(self, key: tuple, eps: float, group: str) -> float:
        named = dict(zip(self._all, key))
        metric = named["metric"]
        if metric not in self._groups.columns:
            return math.nan
        if metric not in self._means:
            self._means[metric] = self._groups.groupby([*self._keys, "epsilon", "group"])[metric].mean()
        means = self._means[metric]
        prefix = tuple(named[k] for k in self._keys)
        arm, base = (*prefix, eps, group), (*prefix, math.inf, group)
        if arm not in means.index or base not in means.index:
            return math.nan
        return float(means[arm] - means[base])


def _gap_replicates(replicates: pd.DataFrame) -> pd.DataFrame:
    """The gap rows of a stacked replicates table (group empty); older tables have gap rows only."""
    replicates = replicates.assign(epsilon=replicates["epsilon"].astype(float))
    if "group" not in replicates.columns:
        return replicates
    return replicates[replicates["group"].isna() | (replicates["group"].astype(str) == "")]


def _estimand(cell: pd.DataFrame) -> str:
    """The estimand: signed (two groups, one reference in every run), else tau2 (every run has τ²), else excess."""
    if "signed_gap" in cell and cell["signed_gap"].notna().all() and cell["reference_group"].nunique() == 1:
        return SIGNED
    if "tau2" in cell and cell["tau2"].notna().all():
        return TAU2
    return EXCESS


def _point(runs: pd.DataFrame, estimand: str) -> np.ndarray:
    column = {SIGNED: "signed_gap", TAU2: "tau2", EXCESS: "excess"}[estimand]
    return runs[column].astype(float).to_numpy()


def _label(cell: pd.DataFrame, column: str) -> str:
    return str(cell[column].iloc[0]) if column in cell else ""


def _contrast_estimate(arm: pd.Series, base: pd.Series) -> float:
    return float(arm.mean(skipna=False) - base.mean(skipna=False))


def _sentence(row: dict, contrast: Contrast, *, margin, alpha, power, digits) -> str:
    """One sentence per row; never a bare "no change"."""
    where = f"DP at ε = {format_epsilon(row['epsilon'])}"
    what = _what(row)
    if row["estimand"] == TAU2:
        digits, margin = digits + 2, margin**2
    f = lambda x: _number(x, digits=digits)  # noqa: E731
    verdict = row["verdict_class"]
    if verdict == "undefined" or not math.isfinite(row["gap_change"]):
        return f"{where}: the {what} could not be estimated"
    low, high = row["ci_low"], row["ci_high"]
    interval = f"{f(row['gap_change'])} [{f(low)}, {f(high)}]"
    primary = row["family"] == PRIMARY
    p_text = f"Holm-adjusted p = {_p(row['p_adjusted'])}" if primary else f"unadjusted p = {_p(row['p_value'])}"
    prefix = "" if primary else "exploratory: "
    if verdict == ONE_MODEL:
        return (
            f"{prefix}{where}: one trained model per arm, no verdict on the {what} "
            f"({f(row['gap_change'])}; its interval would hold the test noise of one model only)"
        )
    if verdict in (WIDENS, NARROWS):
        return f"{prefix}{where} {verdict} the {what}: {interval} ({p_text})"
    if verdict == EQUIVALENT:
        tost_low, tost_high = contrast.interval(1 - 2 * alpha)
        return (
            f"{prefix}{where} leaves the {what} equivalent within ±{f(margin)}: "
            f"{f(row['gap_change'])}, {100 * (1 - 2 * alpha):g}% interval [{f(tost_low)}, {f(tost_high)}]"
        )
    assert verdict == INCONCLUSIVE, verdict
    return (
        f"{prefix}{where}: inconclusive for the {what}: {interval} ({p_text}); "
        f"this design detects changes ≥ {f(row['mde'])} with {100 * power:g}% power"
    )


def _what(row: dict) -> str:
    label = gap_label(row["metric"])
    if row["estimand"] == SIGNED:
        return f"{row['attribute']} gap in {label} ({row['comparison_group']} − {row['reference_group']})"
    if row["estimand"] == TAU2:
        return f"{row['attribute']} spread τ² of {label}"
    return f"{row['attribute']} excess gap in {label} (max − min beyond its null)"


def _p(p: float) -> str:
    if not math.isfinite(p):
        return "n/a"
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1g}"


def _number(x: float, *, digits: int) -> str:
    text = f"{x:.{digits}f}"
    if float(text) == 0:
        text = text.lstrip("-")
    return text.replace("-", "−")


def primary_families(datasets: Mapping[str, Mapping] | Sequence[str]) -> dict[str, PrimaryFamily]:
    """Per dataset its :class:`PrimaryFamily` from the benchmark's ``datasets`` block (``primary`` key)."""
    if not isinstance(datasets, Mapping):
        return {name: PrimaryFamily() for name in datasets}
    return {name: PrimaryFamily.from_config((spec or {}).get("primary")) for name, spec in datasets.items()}
