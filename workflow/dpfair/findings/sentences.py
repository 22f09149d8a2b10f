"""Each finding's verdict as one sentence a clinician can read.

A sentence gives the number, its interval, how many datasets it rests on and what would change the verdict.
"""

from __future__ import annotations

import math


def _n(x: float, digits: int = 3) -> str:
    if x is None or not math.isfinite(x):
        return "n/a"
    text = f"{x:+.{digits}f}"
    return text.replace("-", "\u2212")


def _eps(epsilon: float) -> str:
    return f"\u03b5 = {epsilon:g}"


def _interval(low: float, high: float) -> str:
    return f"[{_n(low)}, {_n(high)}]"


def dataset_utility(finding: int, r, cls: str, *, margin: float) -> str:
    """One dataset's AUROC change at ε and its class."""
    head = f"{r.dataset}: at {_eps(r.epsilon)} AUROC changed by {_n(r.estimate)} {_interval(r.ci_low, r.ci_high)} ({r.n_seeds} seeds)"
    if finding == 1:
        return f"{head}; {cls} at a {margin:g} margin."
    return f"{head}; {cls}."


def pooled_utility(finding: int, p, cls: str, *, scope: str, margin: float, epsilon: float) -> str:
    """A pooled AUROC change and its verdict.

    E.g. "Pooled over 2 imaging datasets, AUROC at ε = 10 changed by −0.012 [−0.031, +0.007] (…): inconclusive
    against a −0.02 non-inferiority margin; it would read non-inferior if the lower end rose above −0.02 (about
    6 datasets like these, if the estimate held)."
    """
    what = scope.removeprefix("pooled: ")
    kind = "datasets" if what == "all" else f"{'imaging' if what == 'imaging' else 'tabular'} datasets"
    head = (
        f"Pooled over {p.k} {kind}, AUROC at {_eps(epsilon)} changed by {_n(p.estimate)} "
        f"{_interval(p.ci_low, p.ci_high)} (random effects, between-dataset \u03c4 = {_tau(p.tau2)}, "
        f"I\u00b2 = {_pct(p.i2)})"
    )
    if finding == 1:
        if cls == "non-inferior":
            tail = f"non-inferior: the whole interval lies above \u2212{margin:g}; a new dataset moving the lower end below \u2212{margin:g} would undo it"
        elif cls == "inferior":
            tail = f"inferior: the whole interval lies below \u2212{margin:g}, DP costs more than the margin"
        elif p.estimate <= -margin:
            tail = (
                f"inconclusive against a \u2212{margin:g} non-inferiority margin, and the estimate itself lies beyond "
                "it: more datasets like these would make it inferior, not non-inferior"
            )
        else:
            tail = (
                f"inconclusive against a \u2212{margin:g} non-inferiority margin; it would read non-inferior if the "
                f"lower end rose above \u2212{margin:g}{_more_datasets(p, -margin)}"
            )
        return f"{head}: {tail}."
    if cls in ("costs", "costs beyond the margin"):
        tail = f"DP {cls}" + ("" if cls == "costs" else f" (the whole interval lies below \u2212{margin:g})")
    elif cls == "equivalent":
        tail = f"equivalent to non-private training within \u00b1{margin:g}"
    elif cls == "gains":
        tail = "DP gains"
    else:
        tail = f"inconclusive: the interval holds 0{_more_datasets(p, 0.0)}"
    return f"{head}: {tail}."


def slope_sentence(fit, cls: str, *, epsilon: float) -> str:
    """Finding 2's meta-regression of the AUROC change on log(n_train)."""
    meaning = {
        "smaller datasets lose more": "smaller datasets lose more AUROC",
        "larger datasets lose more": "larger datasets lose more AUROC",
        "no detected dependence": "no dependence on dataset size was detected",
    }[cls]
    return (
        f"Across {fit.k} datasets, the AUROC change at {_eps(epsilon)} moves by {_n(fit.slope)} per unit of "
        f"log(n_train) {_interval(fit.slope_ci_low, fit.slope_ci_high)} (mixed-effects meta-regression, residual "
        f"\u03c4 = {_tau(fit.tau2)}): {meaning}; with {fit.df} residual df a slope this uncertain needs more "
        "datasets of other sizes to settle."
        if cls == "no detected dependence"
        else f"Across {fit.k} datasets, the AUROC change at {_eps(epsilon)} moves by {_n(fit.slope)} per unit of "
        f"log(n_train) {_interval(fit.slope_ci_low, fit.slope_ci_high)} (mixed-effects meta-regression, residual "
        f"\u03c4 = {_tau(fit.tau2)}): {meaning}."
    )


def dataset_gap(r) -> str:
    """One dataset's oriented gap change, its groups' own changes and its table's verdict."""
    return (
        f"{r.dataset} ({r.attribute}, {r.better_group} better off at \u03b5 = \u221e by {r.baseline_gap:.3f}): at "
        f"{_eps(r.epsilon)} the gap changed by {_n(r.estimate)} {_interval(r.ci_low, r.ci_high)} (positive widens); "
        f"{r.better_group} {_n(r.better_change)}, {r.worse_group} {_n(r.worse_change)}; table verdict: {r.table_verdict_class}"
        + (
            f", would detect \u2265 {r.mde:.3f}"
            if r.table_verdict_class == "inconclusive" and math.isfinite(r.mde)
            else ""
        )
        + "."
    )


def pooled_gap(
    p, cls: str, *, scope: str, epsilon: float, margin: float, mde: float, better: float, worse: float
) -> str:
    """A pooled, oriented gap change, the groups' changes beside it, and its verdict."""
    what = scope.removeprefix("pooled: ")
    kind = "datasets" if what == "all" else f"{what} datasets"
    head = (
        f"Pooled over {p.k} {kind}, DP at {_eps(epsilon)} changed the primary subgroup AUROC gap by {_n(p.estimate)} "
        f"{_interval(p.ci_low, p.ci_high)} (positive widens; \u03c4 = {_tau(p.tau2)}); better-off groups "
        f"{_n(better)}, worse-off groups {_n(worse)}"
    )
    if cls == "widens":
        tail = "DP widens the gap"
    elif cls == "narrows":
        tail = "DP narrows the gap" + (" by levelling down" if better < 0 and better < worse else "")
    elif cls == "equivalent":
        tail = f"the gap is unchanged within \u00b1{margin:g}"
    else:
        tail = f"inconclusive: a change of \u2265 {mde:.3f} would have been detected at the declared power"
    return f"{head}: {tail}."


def _tau(tau2: float) -> str:
    return "n/a" if tau2 is None or not math.isfinite(tau2) else f"{math.sqrt(max(tau2, 0.0)):.3f}"


def _pct(x: float) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{100 * x:.0f}%"


def _more_datasets(p, bound: float) -> str:
    """How many datasets like these would put the interval's end past ``bound``, if the estimate held.

    The pooled se shrinks roughly as 1/√k at fixed between-dataset spread, so k' ≈ k·(se / se_needed)².
    """
    distance = abs(p.estimate - bound)
    half = p.ci_high - p.estimate
    if not (math.isfinite(distance) and math.isfinite(half)) or half <= 0 or distance == 0:
        return ""
    needed = math.ceil(p.k * (half / distance) ** 2)
    if needed <= p.k:
        return ""
    return f" (about {needed} datasets like these, if the estimate held)"
