"""Each finding's verdict as one sentence a clinician can read.

A sentence gives the number, its interval, how many datasets it rests on and what would change the verdict;
a pooled one also gives the range a new dataset's change would fall in (the prediction interval), since a
mean that clears a margin says little when the datasets scatter around it.
"""

from __future__ import annotations

import math

from scipy import stats

MINUS = "\u2212"


def _n(x: float, digits: int = 3) -> str:
    if x is None or not math.isfinite(x):
        return "n/a"
    return f"{x:+.{digits}f}".replace("-", MINUS)


def _eps(epsilon: float) -> str:
    return f"\u03b5 = {epsilon:g}"


def _interval(low: float, high: float) -> str:
    return f"[{_n(low)}, {_n(high)}]"


def _tau(tau2: float) -> str:
    return "n/a" if tau2 is None or not math.isfinite(tau2) else f"{math.sqrt(max(tau2, 0.0)):.3f}"


def _pct(x: float) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{100 * x:.0f}%"


def _kind(scope: str) -> str:
    what = scope.removeprefix("pooled: ")
    return "datasets" if what == "all" else f"{what} datasets"


def _new_dataset(pi: tuple[float, float]) -> str:
    low, high = pi
    if not (math.isfinite(low) and math.isfinite(high)):
        return ""
    return f"; a new dataset like these: {_interval(low, high)} (95% prediction interval)"


def dataset_utility(finding: int, r, cls: str, *, margin: float) -> str:
    """One dataset's AUROC change at ε and its class."""
    head = (
        f"{r.dataset}: at {_eps(r.epsilon)} AUROC changed by {_n(r.estimate)} {_interval(r.ci_low, r.ci_high)} "
        f"({r.n_seeds} seeds, {r.method})"
    )
    return f"{head}; {cls} at a {margin:g} margin."


def pooled_utility(finding: int, p, cls: str, *, scope: str, margin: float, epsilon: float, pi, level: float) -> str:
    """A pooled AUROC change and its verdict.

    E.g. "Pooled over 5 tabular datasets, AUROC at ε = 10 changed by −0.012 [−0.031, +0.007] (…): inconclusive
    against a −0.02 non-inferiority margin; it would read non-inferior if the lower end rose above −0.02 (about
    9 datasets like these, if the estimate and spread held)."
    """
    head = (
        f"Pooled over {p.k} {_kind(scope)}, AUROC at {_eps(epsilon)} changed by {_n(p.estimate)} "
        f"{_interval(p.ci_low, p.ci_high)} (random effects; between-dataset \u03c4 = {_tau(p.tau2)}, "
        f"I\u00b2 = {_pct(p.i2)}{_new_dataset(pi)})"
    )
    m = f"{MINUS}{margin:g}"
    if finding == 1:
        if cls == "non-inferior":
            tail = f"non-inferior: the whole interval lies above {m}; a new dataset moving the lower end below {m} would undo it"
            if math.isfinite(pi[0]) and pi[0] < -margin:
                tail += f", and single datasets like these can still lose more than {margin:g}"
        elif cls == "inferior":
            tail = f"inferior: the whole interval lies below {m}, DP costs more than the margin"
        elif p.estimate <= -margin:
            tail = (
                f"inconclusive against a {m} non-inferiority margin, and the estimate itself lies beyond it: more "
                "datasets like these would make it inferior, not non-inferior"
            )
        else:
            more = _more_datasets(p, -margin, level)
            tail = f"inconclusive against a {m} non-inferiority margin; it would read non-inferior if the lower end rose above {m}{more}"
        return f"{head}: {tail}."
    tails = {
        "costs beyond the margin": f"DP costs more than {margin:g} (the whole interval lies below {m})",
        "costs within the margin": f"DP costs, but less than {margin:g} (the whole interval lies between {m} and 0)",
        "costs": f"DP costs; whether more than {margin:g} is open (the interval crosses {m})",
        "equivalent": f"equivalent to non-private training within \u00b1{margin:g} (the whole interval)",
        "gains": "DP gains",
    }
    tail = tails.get(cls, f"inconclusive: the interval holds 0{_more_datasets(p, 0.0, level)}")
    return f"{head}: {tail}."


def moderator_sentence(fit, cls: str, *, moderator: str, epsilon: float, level: float) -> str:
    """A meta-regression slope: on log(n_train) (finding 2) or imaging against tabular (findings 1 and 2)."""
    what = "per unit of log(n_train)" if moderator == "size" else "for an imaging dataset against a tabular one"
    meaning = {
        "smaller datasets lose more": "smaller datasets lose more AUROC",
        "larger datasets lose more": "larger datasets lose more AUROC",
        "imaging keeps more": "imaging datasets keep more AUROC than tabular ones",
        "imaging loses more": "imaging datasets lose more AUROC than tabular ones",
        "no detected dependence": "no difference was detected",
    }.get(cls, cls)
    text = (
        f"Across {fit.k} datasets, the AUROC change at {_eps(epsilon)} differs by {_n(fit.slope)} {what} "
        f"{_interval(fit.slope_ci_low, fit.slope_ci_high)} (mixed-effects meta-regression, residual "
        f"\u03c4 = {_tau(fit.tau2)}): {meaning}"
    )
    if cls == "no detected dependence":
        text += f"; with {fit.df} residual df, a slope this uncertain needs more datasets to settle"
    return text + "."


def dataset_gap(r, cls: str) -> str:
    """One dataset's oriented gap change, its groups' own changes and its class."""
    reversed_ = r.baseline_gap > 0 > r.arm_gap
    return (
        f"{r.dataset} ({r.attribute}; {r.better_group} better off at \u03b5 = \u221e, judged on "
        f"{'the declaration' if r.oriented_by == 'declared' else 'the validation split'}): at {_eps(r.epsilon)} "
        f"{r.better_group}'s AUROC advantage changed by {_n(r.estimate)} {_interval(r.ci_low, r.ci_high)} "
        f"(from {_n(r.baseline_gap)} to {_n(r.arm_gap)} on test); {r.better_group} {_n(r.better_change)}, "
        f"{r.worse_group} {_n(r.worse_change)}: {cls}"
        + (f", would detect \u2265 {r.mde:.3f}" if cls == "inconclusive" and math.isfinite(r.mde) else "")
        + ("; the gap reversed" if reversed_ else "")
        + "."
    )


def pooled_gap(p, cls: str, *, scope: str, epsilon: float, margin: float, mde: float, better: float, worse: float,
               pi) -> str:  # fmt: skip
    """A pooled, oriented gap change, the groups' changes beside it, and its verdict."""
    head = (
        f"Pooled over {p.k} {_kind(scope)}, DP at {_eps(epsilon)} changed the better-off group's AUROC advantage by "
        f"{_n(p.estimate)} {_interval(p.ci_low, p.ci_high)} (positive: the gap widened; \u03c4 = {_tau(p.tau2)}"
        f"{_new_dataset(pi)}); better-off groups {_n(better)}, worse-off groups {_n(worse)}"
    )
    if cls == "widens":
        tail = "DP widens the gap"
    elif cls == "narrows":
        tail = "DP narrows the gap" + (" by levelling down" if better < 0 and better < worse else "")
    elif cls == "equivalent":
        tail = f"the gap is unchanged within \u00b1{margin:g} (the whole interval)"
    else:
        tail = f"inconclusive: a change of \u2265 {mde:.3f} would have been detected at the declared power"
    return f"{head}: {tail}."


def _more_datasets(p, bound: float, level: float) -> str:
    """How many datasets like these would put the interval's end past ``bound``, if estimate and spread held.

    With k datasets the pooled se is about σ/√k, σ = se·√k the spread of one dataset's estimate around the mean
    (its own error and τ together); k' datasets need t_{1−(1−level)/2, k'−1}·σ/√k' ≤ |estimate − bound|.
    """
    distance = abs(p.estimate - bound)
    if not (math.isfinite(distance) and math.isfinite(p.se)) or distance == 0 or p.se <= 0:
        return ""
    sigma = p.se * math.sqrt(p.k)
    for k in range(p.k + 1, 1001):
        if stats.t.ppf(0.5 + level / 2, k - 1) * sigma / math.sqrt(k) <= distance:
            return f" (about {k} datasets like these, if the estimate and spread held)"
    return " (more than 1,000 datasets like these: the estimate is too close to it)"
