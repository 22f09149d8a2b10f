"""The report's summary: per dataset, a few sentences with numbers that link to the rows they come from.

Sentences are built as escaped HTML (:class:`markupsafe.Markup`): every number is a link to a table
row whose id :func:`dpfair.report.frames.slug` gives, so the template renders them as they are.

What DP costs in AUROC is read from the verdicts of ``auroc_changes.csv``
(:func:`dpfair.tables.utility_changes.auroc_changes`): ε = 10 "keeps AUROC within ±m" only where the
verdict is *equivalent* (its 1 − 2α interval inside ±m, m the benchmark's
``evaluation.equivalence_margin``), "costs" only where it is *costs*, and otherwise the sentence says the
comparison is inconclusive and which change it would have detected. Result folders written before that
table keep the older point-estimate wording, marked as such (:data:`KEEPS_PERFORMANCE`).
"""

from __future__ import annotations

import math

import pandas as pd
from markupsafe import Markup, escape

from dpfair.fairness import gap_label, headline_metrics
from dpfair.fairness.contrasts import interval_of
from dpfair.fairness.gap_changes import margin_for
from dpfair.report.fmt import epsilon_label, number
from dpfair.report.frames import RUN_KEYS, slug
from dpfair.tables.seeds import seed_summary
from dpfair.training.tuning.names import split_method

#: Only for result folders without ``auroc_changes.csv``: the point-estimate cut of the older cross-dataset
#: sentence (an AUROC cost of at most this much read "within"), printed there as a point estimate, not a verdict.
KEEPS_PERFORMANCE = 0.02
#: How the report marks the sentences of a result folder without ``auroc_changes.csv``.
POINT_ESTIMATES = "point estimates, no verdict: this run has no auroc_changes.csv"
#: Said under the cost sentences of a dataset none of whose arms was tuned (docs/tuning.md).
FIXED_RECIPE_ONLY = (
    "These numbers come from one fixed recipe (the benchmark's training settings) at every ε, ε = ∞ included. "
    "DP-SGD wants other batches, steps and learning rates than non-private training, so part of a cost may be "
    "the recipe's, not privacy's; tuning.enabled runs each arm with its own privately tuned recipe."
)
#: Gap metrics whose change is the headline question (the fairness statistics' headline family).
SIGNIFICANCE = 0.05


def group_privacy_text(value) -> str:
    """The card's group-privacy entry as a sentence (a string is kept; a mapping is spelled out)."""
    if not isinstance(value, dict):
        return str(value)
    for key in ("text", "statement"):
        if value.get(key):
            return str(value[key])
    k = value.get("k", value.get("max_records_per_unit", value.get("max_records_per_patient")))
    eps, delta = value.get("epsilon"), value.get("delta")
    text = f"a patient with up to {k} rows is protected at ε = {number(eps, 3)}, δ = {number(delta, 3)} (group privacy)"
    if value.get("meaningful") is False or value.get("no_patient_guarantee") or value.get("flag"):
        text += "; no meaningful patient-level guarantee"
    return text


def link(text: str, anchor: str) -> Markup:
    """A number in a sentence that links to the table row it comes from."""
    return Markup('<a class="num" href="#{}">{}</a>').format(anchor, text)


def estimate(mean, low, high, anchor: str, *, signed: bool = False, digits: int = 3) -> Markup:
    """``mean [low, high]`` as one link."""
    f = lambda v, d=digits: number(v, d, signed=signed)  # noqa: E731
    text = f(mean) if any(math.isnan(float(v)) for v in (low, high)) else f"{f(mean)} [{f(low, 2)}, {f(high, 2)}]"
    return link(text, anchor)


def _join(parts: list) -> Markup:
    parts = [Markup(p) if isinstance(p, Markup) else escape(p) for p in parts]
    if len(parts) <= 1:
        return Markup("").join(parts)
    return Markup(", ").join(parts[:-1]) + Markup(" and ") + parts[-1]


def utility_rows(table: pd.DataFrame | None, metric: str = "auroc") -> pd.DataFrame | None:
    """``auroc_changes.csv``'s rows of one metric (None when the run has no such table).

    Example:
        >>> t = pd.DataFrame({"metric": ["auroc", "tpr"], "epsilon": ["10", "10"]})
        >>> utility_rows(t)["epsilon"].tolist(), utility_rows(None)
        ([10.0], None)
    """
    if table is None:
        return None
    if "metric" not in table.columns:
        return table.iloc[:0]
    rows = table[table["metric"].astype(str) == metric]
    return rows.assign(epsilon=rows["epsilon"].astype(float))


def equivalence_interval(row: dict, *, alpha: float = 0.05) -> tuple[float, float]:
    """The row's 1 − 2α interval (:func:`~dpfair.fairness.contrasts.interval_of` of its change, se, df, ratio).

    It is the interval the equivalence verdict read; a row without ``ratio`` (an older table) reads r = 0.

    Example:
        >>> [round(v, 4) for v in equivalence_interval({"change": 0.01, "se": 0.005, "df": float("inf")})]
        [0.0018, 0.0182]
    """
    change, se, df = (float(row.get(k, math.nan)) for k in ("change", "se", "df"))
    if not (math.isfinite(change) and math.isfinite(se) and se > 0):
        return math.nan, math.nan
    return interval_of(change, se, df, _number_or(row.get("ratio"), 0.0), level=1 - 2 * alpha)


def _number_or(value, default: float) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return default
    return value if math.isfinite(value) or value == math.inf else default


def _true(value) -> bool:
    """A boolean cell, also as read back from CSV ("True"); missing (older tables) is False."""
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return value is True or (value is not None and not isinstance(value, float) and bool(value))


def detects(mde, power: float, anchor: str | None = None) -> Markup:
    """The inconclusive reading: "inconclusive: would detect a change of ≥ 0.05 at 80% power" (MDE linked)."""
    text = number(float(mde))
    return Markup("inconclusive: would detect a change of ≥ {} at {} power").format(
        link(text, anchor) if anchor else text, f"{power:.0%}"
    )


def change_phrase(row: dict, *, alpha: float = 0.05, margin: float = 0.03, power: float = 0.8) -> Markup:
    """What the verdict of one ``auroc_changes.csv`` row says, as a verb phrase whose numbers link to the row.

    *costs* and *gains* give the change and its interval (and call it practically negligible where its
    1 − 2α interval is within the margin, ``within_margin``); *equivalent* the margin (the row's own, else
    ``margin``) and the 1 − 2α interval that lies inside it; *inconclusive* the change it would have
    detected at ``power`` (MDE) and the estimate; one trained model per arm or an unestimable change say so.

    Example:
        >>> row = {"dataset": "d", "model": "m", "method": "dpsgd", "epsilon": 10.0, "change": -0.05,
        ...        "ci_low": -0.07, "ci_high": -0.03, "verdict_class": "costs"}
        >>> str(change_phrase(row))
        'costs <a class="num" href="#cost-d-m-dpsgd-10">0.05 [0.03, 0.07]</a>'
    """
    anchor = slug("cost", row["dataset"], row["model"], row["method"], float(row["epsilon"]))
    kind = row.get("verdict_class")
    change, low, high = (float(row.get(k, math.nan)) for k in ("change", "ci_low", "ci_high"))
    m = _number_or(row.get("margin"), margin)
    negligible = (
        Markup(", detected but within ±{} (practically negligible)").format(number(m))
        if _true(row.get("within_margin"))
        else Markup("")
    )
    if kind == "costs":
        return Markup("costs {}{}").format(estimate(-change, -high, -low, anchor), negligible)
    if kind == "gains":
        return Markup("gains {}{}").format(estimate(change, low, high, anchor), negligible)
    if kind == "equivalent":
        lo, hi = equivalence_interval(row, alpha=alpha)
        return Markup("keeps AUROC within ±{} (equivalent, {}% interval {})").format(
            number(m),
            f"{100 * (1 - 2 * alpha):g}",
            link(f"[{number(lo, 3)}, {number(hi, 3)}]", anchor),
        )
    if kind == "inconclusive":
        return Markup("is {} (change {})").format(
            detects(row.get("mde", math.nan), power, anchor), estimate(change, low, high, anchor, signed=True)
        )
    if kind == "one model":
        return Markup("has no verdict (one trained model per arm; change {}, test-set noise only)").format(
            estimate(change, low, high, anchor, signed=True)
        )
    return Markup("has no estimable change ({})").format(link(number(change, signed=True), anchor))


def cost_sentences(
    dataset: str,
    costs: pd.DataFrame,
    metrics: pd.DataFrame,
    *,
    level: float,
    utility: pd.DataFrame | None = None,
    alpha: float = 0.05,
    margin: float = 0.03,
    power: float = 0.8,
) -> list[Markup]:
    """Per (model, method): the non-private AUROC and the verdict of what DP does to it at each ε.

    ``utility``: ``auroc_changes.csv`` (its AUROC rows are read; :func:`change_phrase`). Without it (a
    result folder written before that table) the sentence gives ``costs``'s point estimates with their
    intervals and says it has no verdicts.

    Where a method runs privately tuned too (``m-tuned``, tuned at every ε and at ε = ∞ with the same
    effort), the tuned arm's sentence comes first, as the headline, and the fixed recipe's follows as a
    reference; a dataset with no tuned arm ends with :data:`FIXED_RECIPE_ONLY`.
    """
    rows = utility_rows(utility)
    if rows is None:
        return _point_cost_sentences(dataset, costs, metrics, level=level)
    out = []
    plain_runs = metrics.drop_duplicates(RUN_KEYS)
    plain_runs = plain_runs[plain_runs["epsilon"].map(math.isinf)]
    mine = rows[rows["dataset"] == dataset]
    tuned_bases = {split_method(m)[0] for m in mine["method"].unique() if split_method(m)[1]}

    def order(key):  # tuned arms first (the headline), then each fixed recipe, in name order
        return (not split_method(key[1])[1], key)

    groups = sorted(mine.groupby(["model", "method"], sort=True), key=lambda g: order(g[0]))
    for (model, method), part in groups:
        part = part.sort_values("epsilon")
        ref_method = str(part["reference_method"].iloc[0]) if "reference_method" in part.columns else method
        plain = plain_runs[(plain_runs["model"] == model) & (plain_runs["method"] == ref_method)]
        against = "ε = ∞" if ref_method == method else f"{ref_method} at ε = ∞"
        if plain.empty:
            reference = Markup("{}").format(number(float(part["reference_value"].iloc[0])))
        else:
            ref = seed_summary(plain.drop_duplicates("seed"), "auroc", ["model"], level).iloc[0]
            reference = estimate(
                ref["mean"], ref["low"], ref["high"], slug("util", dataset, model, ref_method, math.inf)
            )
        changes = [
            Markup("ε = {} {}").format(
                epsilon_label(r["epsilon"]), change_phrase(r, alpha=alpha, margin=margin, power=power)
            )
            for r in part.to_dict("records")
        ]
        if split_method(method)[1]:
            label = Markup("{} ({}, privately tuned at every ε and at ε = ∞)").format(model, method)
        elif method in tuned_bases:
            label = Markup("{} ({}, one fixed recipe: reference)").format(model, method)
        else:
            label = Markup("{} ({})").format(model, method)
        out.append(
            Markup("<strong>{}</strong>: test AUROC {} without privacy ({}); against it, {}.").format(
                label, reference, against, _join(changes)
            )
        )
    if out and not tuned_bases:
        out.append(Markup("{}").format(FIXED_RECIPE_ONLY))
    return out


def _point_cost_sentences(dataset: str, costs: pd.DataFrame, metrics: pd.DataFrame, *, level: float) -> list[Markup]:
    """An older result folder's sentences: the point estimates of ``costs``, marked as such."""
    out = []
    runs = metrics.drop_duplicates(RUN_KEYS)
    for (model, method), part in costs[costs["dataset"] == dataset].groupby(["model", "method"], sort=True):
        plain = runs[(runs["model"] == model) & runs["epsilon"].map(math.isinf)]
        plain = plain[plain["method"] == method] if (plain["method"] == method).any() else plain
        ref = seed_summary(plain.drop_duplicates("seed"), "auroc", ["model"], level).iloc[0]
        ref_method = plain["method"].iloc[0]
        changes = [
            Markup("{} at ε = {}").format(
                estimate(r.cost, r.cost_low, r.cost_high, slug("cost", dataset, model, method, r.epsilon), signed=True),
                epsilon_label(r.epsilon),
            )
            for r in part.sort_values("epsilon").itertuples()
        ]
        out.append(
            Markup("<strong>{} ({})</strong>: test AUROC {} without privacy (ε = ∞); DP changes it by {} ({}).").format(
                model,
                method,
                estimate(ref["mean"], ref["low"], ref["high"], slug("util", dataset, model, ref_method, math.inf)),
                _join(changes),
                POINT_ESTIMATES,
            )
        )
    return out


def gap_sentence(dataset: str, changes: pd.DataFrame, *, power: float = 0.8) -> Markup:
    """The primary family's verdicts, counted by class, each widening, narrowing or reversal listed with its link.

    Older tables (no ``verdict_class``) keep their headline-family sentence. ``power``: the MDE's.
    """
    rows = changes[changes["dataset"] == dataset]
    if "verdict_class" not in rows.columns:
        return _old_gap_sentence(dataset, rows)
    primary = rows[rows["family"] == "primary"]
    if primary.empty:
        return Markup(
            "Fairness: no primary gap changes (no ε = ∞ reference, no sensitive attributes, or a primary family "
            "that names none of this dataset's attributes); every gap change is exploratory."
        )
    method_col = "method" in rows.columns
    table = slug("fairness", dataset)

    def anchor(r):
        method = r["method"] if method_col else "dpsgd"
        return slug("gc", dataset, r["model"], method, r["attribute"], r["metric"], r["epsilon"])

    counts = primary["verdict_class"].value_counts()
    parts = []
    for cls, text in (
        ("widens", "widen"),
        ("narrows", "narrow"),
        ("reverses", "reverse sign"),
        ("equivalent", "equivalent within the margin"),
        ("inconclusive", "inconclusive"),
        ("one model", "without a verdict (one seed)"),
        ("undefined", "not estimable"),
    ):
        if counts.get(cls, 0):
            parts.append(f"{counts[cls]} {text}")
    first = primary.iloc[0]
    family = Markup("{} gap in {} of {}").format(
        first["method"] if method_col else "dpsgd",
        gap_label(first["metric"]),
        ", ".join(sorted(primary["attribute"].unique())),
    )
    text = Markup("Fairness, primary family ({}, each finite ε against ∞, Holm-adjusted): of {} tests, {}.").format(
        family, link(str(len(primary)), table), _join(parts)
    )
    moved = primary[primary["verdict_class"].isin(["widens", "narrows"])]
    if not moved.empty:
        text += Markup(" ") + _join([link(v, anchor(r)) for v, r in zip(moved["verdict"], moved.to_dict("records"))])
        text += Markup(".")
    reversed_rows = primary[primary["verdict_class"] == "reverses"]
    if not reversed_rows.empty:
        listed = [link(v, anchor(r)) for v, r in zip(reversed_rows["verdict"], reversed_rows.to_dict("records"))]
        text += Markup(" Reversed: ") + _join(listed) + Markup(".")
    open_rows = primary[primary["verdict_class"] == "inconclusive"]
    if not open_rows.empty:
        best = open_rows.sort_values("mde").iloc[0]
        low, high = open_rows["mde"].min(), open_rows["mde"].max()
        span = link(number(float(low)), anchor(best))
        if len(open_rows) > 1 and number(float(high)) != number(float(low)):
            span += Markup("–") + number(float(high))
        text += Markup(" {} would detect a change of ≥ {} at {} power.").format(
            "The inconclusive row" if len(open_rows) == 1 else "The inconclusive rows", span, f"{power:.0%}"
        )
    return text


def _old_gap_sentence(dataset: str, rows: pd.DataFrame) -> Markup:
    """An older table's sentence: whether any headline gap changed, and whether it controls for multiplicity."""
    if "family" in rows.columns:
        rows = rows[rows["family"] == "headline"]
    else:
        rows = rows[rows["metric"].isin(headline_metrics())]
    if rows.empty:
        return Markup("Fairness: no gap changes to report (no ε = ∞ reference, or no sensitive attributes).")
    verdicts = rows["verdict"].astype(str)
    changed = rows[verdicts.str.contains(r"\b(?:widens|narrows)\b", regex=True)]
    if "p_adjusted" in rows.columns:
        control = Markup("after multiplicity control (adjusted p &lt; {})").format(SIGNIFICANCE)
    else:
        control = Markup(
            "with <em>no</em> multiplicity control (this run's tables have no adjusted p-values; at {}% per "
            "comparison about {} would exclude 0 by chance)"
        ).format(100 - int(100 * SIGNIFICANCE), number(SIGNIFICANCE * len(rows), 1))
    method_col = "method" in rows.columns
    table = slug("fairness", dataset)
    listed = [
        link(
            v,
            slug(
                "gc",
                dataset,
                r["model"],
                r["method"] if method_col else "dpsgd",
                r["attribute"],
                r["metric"],
                r["epsilon"],
            ),
        )
        for v, r in zip(changed["verdict"], changed.to_dict("records"))
    ]
    family = " and ".join(gap_label(m) for m in headline_metrics())
    if not listed:
        return Markup("Fairness: none of {} headline gap changes ({} gap per attribute and ε) is detected, {}.").format(
            link(str(len(rows)), table), family, control
        )
    return Markup("Fairness: {} of {} headline gap changes ({} gap per attribute and ε) detected, {}: {}.").format(
        len(listed), link(str(len(rows)), table), family, control, _join(listed)
    )


def audit_sentence(dataset: str, metrics: pd.DataFrame, audit: pd.DataFrame | None) -> Markup | None:
    """What the membership audits found against the claimed ε (``audit.csv`` when the run has it)."""
    anchor = slug("audit", dataset)
    if audit is not None and not audit.empty and dataset in set(audit["dataset"]):
        part = audit[(audit["dataset"] == dataset) & audit["epsilon"].map(math.isfinite)]
        part = part[part["attribute"].isna()] if "attribute" in part.columns else part
        bits = []
        bounds = part[part["metric"] == "epsilon_lower_bound"]
        for eps, g in bounds.groupby("epsilon", sort=True):
            worst = g["value"].max()
            flag = Markup(" <strong>above the claim</strong>") if worst > eps else Markup("")
            bits.append(
                Markup("certified ε ≥ {} at claimed ε = {}{}").format(
                    link(number(worst, 2), anchor), epsilon_label(eps), flag
                )
            )
        aurocs = part[part["metric"] == "auroc"]
        if not aurocs.empty:
            bits.append(
                Markup("the strongest attack's AUROC at a finite ε was {} (0.5 = no leakage detected)").format(
                    link(number(aurocs["value"].max()), anchor)
                )
            )
        if not bits:
            return None
        return Markup("Privacy audit ({}): {}.").format(", ".join(sorted(set(part["attack"]))), _join(bits))
    if "mia_auroc" not in metrics.columns or metrics["mia_auroc"].notna().sum() == 0:
        return Markup("Privacy audit: not available for this run (membership inference switched off).")
    runs = metrics.drop_duplicates(RUN_KEYS)
    private = runs[runs["epsilon"].map(math.isfinite)]
    plain = runs[runs["epsilon"].map(math.isinf)]
    violated = (
        private["mia_bound_violated"].astype(str).str.lower().eq("true").sum() if "mia_bound_violated" in runs else 0
    )
    empirical = next((c for c in ("mia_epsilon_empirical", "mia_epsilon_lower_bound") if c in runs.columns), None)
    text = Markup("Privacy audit (loss-threshold attack): attack AUROC {} to {} at finite ε").format(
        link(number(private["mia_auroc"].min()), anchor), link(number(private["mia_auroc"].max()), anchor)
    )
    if not plain.empty:
        text += Markup(" ({} without privacy)").format(link(number(plain["mia_auroc"].mean()), anchor))
    text += Markup("; {} of {} private runs broke their (ε, δ) bound").format(
        link(str(int(violated)), anchor), len(private)
    )
    if empirical and private[empirical].notna().any():
        worst = private.loc[private[empirical].idxmax()]
        text += Markup("; the largest empirical ε lower bound was {} (claimed ε = {})").format(
            link(number(worst[empirical], 2), anchor), epsilon_label(worst["epsilon"])
        )
    return text + Markup(". A loss attack is weak: passing it does not confirm the claimed ε.")


def method_sentence(dataset: str, points: pd.DataFrame) -> Markup | None:
    """Which method gave the best trade-off at each ε (highest AUROC; smallest gap per attribute)."""
    part = points[(points["dataset"] == dataset) & points["epsilon"].map(math.isfinite)]
    if part.empty:
        return None
    methods = sorted(part["method"].unique())
    if len(methods) == 1:
        fronts = []
        for (model, attr), g in part.groupby(["model", "attribute"], sort=True):
            eps = [
                link(epsilon_label(r.epsilon), slug("to", dataset, model, r.method, attr, r.epsilon))
                for r in g[g["pareto"]].itertuples()
            ]
            fronts.append(Markup("{} {}: ε = {}").format(model, attr, _join(eps)))
        return Markup(
            "Best trade-off: one method ({}) ran here, so there is no comparison between methods; "
            "the private points on the AUROC–gap Pareto front are {}."
        ).format(methods[0], Markup("; ").join(fronts))
    out = []
    for (model, eps), g in part.groupby(["model", "epsilon"], sort=True):
        best = g.loc[g["auroc"].idxmax()]
        text = Markup("at ε = {} ({}), {} had the highest AUROC ({})").format(
            epsilon_label(eps),
            model,
            best["method"],
            link(number(best["auroc"]), slug("to", dataset, model, best["method"], best["attribute"], eps)),
        )
        fairest = []
        for attr, a in g.groupby("attribute", sort=True):
            a = a[a["gap"].notna()]  # no gap where every group is flagged (too small, or too few of a class)
            if a.empty:
                continue
            f = a.loc[a["gap"].idxmin()]
            fairest.append(
                Markup("{} for {} ({})").format(
                    f["method"], attr, link(number(f["gap"]), slug("to", dataset, model, f["method"], attr, eps))
                )
            )
        out.append(text + (Markup(" and the smallest AUROC gap was ") + _join(fairest) if fairest else Markup("")))
    return Markup("Best trade-off: ") + Markup("; ").join(out) + Markup(".")


def caveats(
    dataset: str,
    *,
    meta: dict,
    metrics: pd.DataFrame,
    subgroups: pd.DataFrame,
    cards: list[dict],
    min_group_size: int,
    changes: pd.DataFrame | None = None,
    margin: float = 0.03,
) -> list[Markup]:
    """Flags a reader should see before trusting the numbers: power, small groups, record-level units, tuning, seeds.

    The power caveat fires when a primary gap change's minimum detectable change exceeds the equivalence
    margin: such a design can neither show a change of that size nor rule it out.
    """
    out = []
    if changes is not None and {"family", "mde", "estimand"} <= set(changes.columns):
        primary = changes[(changes["dataset"] == dataset) & (changes["family"] == "primary")]
        # each row against its own margin (margin_for: margin²/2 for τ², whose MDE is in squared units)
        margins = primary["estimand"].map(lambda e: margin_for(str(e), margin))
        weak = primary[primary["mde"].astype(float) > margins]
        if not weak.empty:
            worst = (weak["mde"].astype(float) / margins[weak.index]).max()
            out.append(
                Markup(
                    "Underpowered: {} of {} primary gap changes could only detect changes larger than the "
                    "equivalence margin ±{}{} (MDE up to {}× the margin); more seeds or test rows would (dpfair design)."
                ).format(
                    len(weak),
                    link(str(len(primary)), slug("fairness", dataset)),
                    margin,
                    Markup(", ±{} for τ²").format(number(margin_for("tau2", margin), 5))
                    if (primary["estimand"] == "tau2").any()
                    else "",
                    number(worst, 1),
                )
            )
    data_anchor, ps_anchor = slug("data", dataset), slug("ps", dataset)
    mine = subgroups[(subgroups["dataset"] == dataset) & subgroups["flagged"].astype(str).str.lower().eq("true")]
    # a group is flagged for its size (n < min_group_size) or, for AUROC and the other label-conditional
    # metrics, for too few positives or negatives (evaluation.min_class_size)
    flagged = mine[mine["n"] < min_group_size] if min_group_size else mine
    small_class = mine.drop(flagged.index).drop_duplicates(["attribute", "group"])
    if not small_class.empty:
        names = [
            f"{r['attribute']} = {r['group']} ({int(r['n_positive'])} positive of {int(r['n'])})"
            for r in small_class.to_dict("records")
        ]
        out.append(
            Markup(
                "Small classes: {} {} too few positives or negatives for AUROC, TPR and FPR; reported, but left "
                "out of those gaps ({})."
            ).format(len(names), "group has" if len(names) == 1 else "groups have", link(", ".join(names), data_anchor))
        )
    if not flagged.empty:
        groups = flagged.drop_duplicates(["attribute", "group"])
        names = [f"{r['attribute']} = {r['group']} (n = {int(r['n'])})" for r in groups.to_dict("records")]
        out.append(
            Markup(
                "Small groups: {} {} fewer than {} test rows; reported, but left out of gaps and worst-group values ({})."
            ).format(
                len(names),
                "group has" if len(names) == 1 else "groups have",
                min_group_size,
                link(", ".join(names), data_anchor),
            )
        )
    k = int(meta.get("max_records_per_patient", 1) or 1)
    mine = [c for c in cards if c.get("dataset") == dataset and math.isfinite(c.get("epsilon", math.inf))]
    group_cards = [c for c in mine if c.get("group_privacy")]
    record_level = [c for c in mine if str(c.get("unit", c.get("privacy_unit", "record"))) == "record"]
    if group_cards:
        detail = group_privacy_text(group_cards[0]["group_privacy"])
        out.append(
            Markup("Record-level protection on multi-row data: the guarantee is per record, and {} ({}).").format(
                detail, link("privacy statements", ps_anchor)
            )
        )
    elif k > 1 and record_level:
        out.append(
            Markup(
                "Record-level protection on multi-row data: a patient has up to {} rows, so record-level (ε, δ) "
                "protects a patient only as a group of {} rows, at (kε, k·e<sup>(k−1)ε</sup>δ) with k = {} ({})."
            ).format(k, k, k, link("privacy statements", ps_anchor))
        )
    if "tuning_trials" in metrics.columns:
        runs = metrics[(metrics["dataset"] == dataset)].drop_duplicates(RUN_KEYS)
        trials = runs["tuning_trials"].dropna()
        if not trials.empty and trials.max() > 0:
            per = runs["epsilon_per_trial"] if "epsilon_per_trial" in runs.columns else pd.Series(dtype=float)
            per = per[per.map(lambda v: isinstance(v, float) and math.isfinite(v))]
            extra = (
                Markup(", ε per trial {}").format(
                    number(per.min(), 2) if per.min() == per.max() else f"{number(per.min(), 2)}–{number(per.max(), 2)}"
                )
                if not per.empty
                else ""
            )
            out.append(
                Markup(
                    "Tuning cost: hyperparameters were tuned on private data with up to {} trials{}; the reported ε "
                    "includes the selection ({})."
                ).format(int(trials.max()), extra, link("privacy statements", ps_anchor))
            )
    seeds = metrics[metrics["dataset"] == dataset]["seed"].nunique()
    if seeds < 3:
        out.append(
            Markup("Few seeds: {} seed{} per setting, so the training-to-training spread is barely measured.").format(
                seeds, "" if seeds == 1 else "s"
            )
        )
    return out


def rule_of_thumb(
    costs: pd.DataFrame,
    utility: pd.DataFrame | None = None,
    *,
    alpha: float = 0.05,
    margin: float = 0.03,
    power: float = 0.8,
) -> Markup | None:
    """Does "ε ≈ 10 keeps performance" hold per (dataset, model, method)? Read from the verdicts.

    ``utility``: ``auroc_changes.csv``. ε = 10 keeps AUROC only where its verdict is *equivalent* within
    ±margin; a *costs* verdict says how much; anything else is inconclusive with its MDE
    (:func:`change_phrase`), and ε = 1's verdict follows where the grid has it. A method that also runs
    privately tuned is counted by its tuned arm only (the fixed recipe's verdicts stay in the per-dataset
    sentences). Without the table (an older result folder) the point estimates of ``costs`` are compared with
    :data:`KEEPS_PERFORMANCE`, marked so.
    """
    rows = utility_rows(utility)
    if rows is None:
        return _point_rule_of_thumb(costs)
    if rows.empty:
        return None
    entries, holds, total = [], 0, 0
    several = rows["method"].nunique() > 1
    margins = pd.to_numeric(rows["margin"], errors="coerce").dropna() if "margin" in rows.columns else pd.Series()
    m = float(margins.iloc[0]) if margins.nunique() == 1 else margin
    tuned = {(d, mo, split_method(me)[0]) for d, mo, me in rows[["dataset", "model", "method"]].itertuples(index=False)
             if split_method(me)[1]}  # fmt: skip
    for (dataset, model, method), part in rows.groupby(["dataset", "model", "method"], sort=True):
        if (dataset, model, method) in tuned:  # its tuned arm is the headline
            continue
        by = {float(r["epsilon"]): r for r in part.to_dict("records")}
        if 10.0 not in by:
            continue
        total += 1
        holds += by[10.0].get("verdict_class") == "equivalent"
        name = f"{dataset}/{model}" + (f" ({method})" if several else "")
        text = Markup("{}: ε = 10 {}").format(name, change_phrase(by[10.0], alpha=alpha, margin=margin, power=power))
        if 1.0 in by:
            text += Markup(", ε = 1 {}").format(change_phrase(by[1.0], alpha=alpha, margin=margin, power=power))
        entries.append(text)
    if not entries:
        return Markup("The grid has no ε = 10, so the rule of thumb “ε ≈ 10 keeps performance” cannot be checked here.")
    return Markup(
        "Across datasets, AUROC against ε = ∞ (verdicts of auroc_changes.csv: a cost where p &lt; {}, equivalent "
        "where the {}% interval lies within ±{}): {}. “ε ≈ 10 keeps AUROC within ±{}” holds for {} of {}."
    ).format(
        number(alpha), f"{100 * (1 - 2 * alpha):g}", number(m), Markup("; ").join(entries), number(m), holds, total
    )


def _point_rule_of_thumb(costs: pd.DataFrame) -> Markup | None:
    """An older result folder's check: ε = 10's point-estimate cost against :data:`KEEPS_PERFORMANCE`."""
    if costs.empty:
        return None
    holds, fails = [], []
    for (dataset, model, method), part in costs.groupby(["dataset", "model", "method"], sort=True):
        by = part.set_index("epsilon")
        name = f"{dataset}/{model}" + (f" ({method})" if costs["method"].nunique() > 1 else "")
        if 10.0 not in by.index:
            continue
        cost10 = by.loc[10.0]
        keeps = cost10["cost"] >= -KEEPS_PERFORMANCE
        text = Markup("{}: {} at ε = 10").format(
            name, link(number(cost10["cost"], signed=True), slug("cost", dataset, model, method, 10.0))
        )
        if 1.0 in by.index:
            text += Markup(", {} at ε = 1").format(
                link(number(by.loc[1.0]["cost"], signed=True), slug("cost", dataset, model, method, 1.0))
            )
        (holds if keeps else fails).append(text)
    if not holds and not fails:
        return Markup("The grid has no ε = 10, so the rule of thumb “ε ≈ 10 keeps performance” cannot be checked here.")
    parts = []
    if holds:
        parts.append(
            Markup("ε = 10 keeps AUROC within {} of non-private training for {}").format(
                KEEPS_PERFORMANCE, _join(holds)
            )
        )
    if fails:
        parts.append(Markup("it does not for {}").format(_join(fails)))
    return Markup("Across datasets ({}): ").format(POINT_ESTIMATES) + Markup("; ").join(parts) + Markup(".")
