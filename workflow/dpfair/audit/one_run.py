"""The certified ε lower bound of a one-run canary audit (Steinke, Nasr & Jagielski, NeurIPS 2023).

"Privacy auditing with one (1) training run": m canaries are each included in the training data
independently with probability ½ (the bits S). After training, the auditor guesses "in" for some canaries
and abstains on the rest; W is the number of correct guesses among the r it made. If the mechanism is
(ε, δ)-DP with respect to each canary, then for every v

    P[W ≥ v] ≤ f(v) + 2·m·δ·max_{1 ≤ i ≤ v} (f(v − i) − f(v)) / i,   f(v) = P[Binomial(r, e^ε / (1 + e^ε)) ≥ v],

(the δ = 0 case is their main theorem; the δ term is their approximate-DP extension). The right side is a
p-value for the claim "(ε, δ)-DP": the certified lower bound at confidence 1 − β is the largest ε whose
p-value for the observed (r, v) is still ≤ β. It holds whatever the attack, model or data; it needs only
that the inclusion bits are independent fair coins and that the claim is made per canary (one canary = one
record, the unit a record-level guarantee protects).

The canaries are designed for the relation the audited mechanism claims (:func:`canary_design`): for
add-or-remove-one guarantees (a record, a patient) a canary is trained on or not; for a label guarantee
(``label_rr``: ``replace_one`` on one label) every canary is trained on and its bit chooses its training
label between y and 1 − y, so the guess is the label and the theorem applies to the label relation as is
(a bit changes one label, all else fixed). Either way the mechanism's parameters (sampling rate, steps,
noise) must not depend on the bits: see :func:`dpfair.audit.train_models.canary_calibration`.

Guesses are one-sided (the top-k scores are called "in", k⁻ = 0 in the paper's notation) for k in a fixed
grid, with a Bonferroni split of β over the grid, so taking the best k is paid for.

Why not a library: Google's jax-privacy (``jax_privacy.auditing.CanaryScoreAuditor.epsilon_one_run``)
implements the same p-value, but pulls jax, jaxlib, optax and chex into a CPU benchmark that has no other
use for them; riskcal (1.5.1) computes f-DP trade-off curves, not audits. The p-value is a few lines of
``scipy.stats.binom``; tests check it against the closed form for δ = 0, against a Monte Carlo of an exact
ε-DP randomized-response mechanism (the bound stays ≤ ε in ≥ 95% of replications and gets close to ε with
many canaries), and end to end against DP-SGD with and without its noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import brentq
from scipy.special import expit
from scipy.stats import binom

from dpfair.audit.bounds import DEFAULT_CONFIDENCE

#: Numbers of top-scored canaries guessed "in"; those above m are skipped (Bonferroni over the rest).
DEFAULT_GUESS_COUNTS: tuple[int, ...] = (10, 20, 50, 100, 200, 500)
#: Largest ε searched: beyond it the bound is reported as this value (no finite audit reaches it here).
EPSILON_CAP = 50.0
#: Canary designs by the (unit, neighbouring relation) of the guarantee they test.
CANARY_DESIGNS: dict[tuple[str, str], str] = {
    ("record", "add_or_remove_one"): "membership",
    ("patient", "add_or_remove_one"): "membership",
    ("label", "replace_one"): "label",
}


def canary_design(*, unit: str, relation: str) -> str:
    """The canary design that tests a guarantee of ``unit`` under ``relation``: ``membership`` or ``label``.

    Raises:
        ValueError: for a (unit, relation) no design tests (auditing it with another would test a relation
            the mechanism does not claim).

    Example:
        >>> canary_design(unit="record", relation="add_or_remove_one"), canary_design(unit="label", relation="replace_one")
        ('membership', 'label')
    """
    try:
        return CANARY_DESIGNS[(unit, relation)]
    except KeyError:
        raise ValueError(
            f"no one-run canary design tests a {unit}-level guarantee under {relation}; known: {sorted(CANARY_DESIGNS)}"
        ) from None


def one_run_p_value(*, m: int, n_guesses: int, n_correct: int, epsilon: float, delta: float) -> float:
    """P-value of "(ε, δ)-DP" after ``n_correct`` of ``n_guesses`` right guesses on ``m`` canaries.

    Example:
        >>> # δ = 0: the binomial tail. 10 of 10 right at ε = 0 has probability 2^-10.
        >>> round(one_run_p_value(m=100, n_guesses=10, n_correct=10, epsilon=0.0, delta=0.0), 6)
        0.000977
    """
    if not (0 <= n_correct <= n_guesses <= m):
        raise ValueError(f"need 0 <= n_correct <= n_guesses <= m, got {n_correct}, {n_guesses}, {m}")
    if epsilon < 0 or not 0 <= delta < 1:
        raise ValueError(f"need epsilon >= 0 and 0 <= delta < 1, got {epsilon}, {delta}")
    q = float(expit(epsilon))

    def f(v):  # P[Binomial(r, q) >= v]; 1 for v <= 0
        return binom.sf(np.asarray(v) - 1, n_guesses, q)

    tail = float(f(n_correct))
    if delta == 0 or n_correct == 0:
        return min(tail, 1.0)
    i = np.arange(1, n_correct + 1)
    slack = float(np.max((f(n_correct - i) - tail) / i))
    return min(tail + 2 * m * delta * slack, 1.0)


def epsilon_one_run(*, m: int, n_guesses: int, n_correct: int, delta: float, significance: float) -> float:
    """The largest ε whose (ε, δ) claim the observed guesses reject at level ``significance`` (0 if none).

    Example:
        >>> # 100 of 100 right: rejects every ε with (e^ε/(1+e^ε))^100 ≤ 0.05, i.e. ε up to ≈ 3.5
        >>> round(epsilon_one_run(m=1000, n_guesses=100, n_correct=100, delta=0.0, significance=0.05), 3)
        3.493
        >>> epsilon_one_run(m=1000, n_guesses=100, n_correct=55, delta=1e-5, significance=0.05)
        0.0
    """
    if not 0 < significance < 1:
        raise ValueError(f"significance must lie in (0, 1), got {significance}")
    if n_guesses == 0:
        return 0.0

    def excess(eps: float) -> float:  # > 0 while the claim is rejected; increasing in ε
        return significance - one_run_p_value(m=m, n_guesses=n_guesses, n_correct=n_correct, epsilon=eps, delta=delta)

    if excess(0.0) <= 0:
        return 0.0
    if excess(EPSILON_CAP) > 0:
        return EPSILON_CAP
    return float(brentq(excess, 0.0, EPSILON_CAP, xtol=1e-6))


@dataclass
class OneRunResult:
    """Outcome of :func:`one_run_audit`; ``by_guesses`` has one row per number of guesses tried."""

    epsilon_lower_bound: float
    n_guesses: int
    n_correct: int
    m: int
    confidence: float
    by_guesses: pd.DataFrame


def one_run_audit(
    *,
    scores,
    included,
    delta: float,
    confidence: float = DEFAULT_CONFIDENCE,
    guess_counts=DEFAULT_GUESS_COUNTS,
    seed: int = 0,
) -> OneRunResult:
    """Certified ε lower bound from canary scores (higher = "in") and the canaries' inclusion bits.

    For each k in ``guess_counts`` (k ≤ m) the k top-scored canaries are guessed "in" (ties broken by a seeded
    random order); each k is tested at ``(1 − confidence) / n_k`` and the largest bound is reported.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> included = rng.integers(0, 2, 1000)
        >>> perfect = one_run_audit(scores=included + rng.uniform(0, 0.1, 1000), included=included, delta=1e-5)
        >>> perfect.n_guesses, perfect.n_correct, perfect.epsilon_lower_bound > 4
        (500, 500, True)
        >>> one_run_audit(scores=rng.uniform(size=1000), included=included, delta=1e-5).epsilon_lower_bound
        0.0
    """
    scores = np.asarray(scores, dtype=np.float64)
    included = np.asarray(included).astype(int)
    if scores.shape != included.shape or scores.ndim != 1 or len(scores) == 0:
        raise ValueError(
            f"scores and included must be 1-D, non-empty and of one length, got {scores.shape}, {included.shape}"
        )
    if not np.all((included == 0) | (included == 1)):
        raise ValueError("included must hold 0 or 1 per canary")
    if not np.all(np.isfinite(scores)):
        raise ValueError("canary scores must be finite")
    m = len(scores)
    ks = sorted({int(k) for k in guess_counts if 0 < int(k) <= m})
    if not ks:
        raise ValueError(f"no number of guesses in {list(guess_counts)} is between 1 and m = {m}")
    significance = (1 - confidence) / len(ks)
    tiebreak = np.random.default_rng(seed).permutation(m)
    order = np.lexsort((tiebreak, -scores))  # highest score first, ties in a random order
    correct = np.cumsum(included[order])
    rows = []
    for k in ks:
        v = int(correct[k - 1])
        eps = epsilon_one_run(m=m, n_guesses=k, n_correct=v, delta=delta, significance=significance)
        rows.append({"n_guesses": k, "n_correct": v, "epsilon_lower_bound": eps})
    table = pd.DataFrame(rows)
    best = table.loc[table["epsilon_lower_bound"].idxmax()]
    return OneRunResult(
        epsilon_lower_bound=float(best["epsilon_lower_bound"]),
        n_guesses=int(best["n_guesses"]),
        n_correct=int(best["n_correct"]),
        m=m,
        confidence=confidence,
        by_guesses=table,
    )


def randomized_response_canaries(*, m: int, epsilon: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """An exactly ε-DP "training run" on m canaries, for testing: each bit is reported truthfully w.p. e^ε/(1+e^ε).

    Returns ``(scores, included)``; scores are the reported bits plus a tie-breaking uniform(0, ½) that does
    not depend on the bits.
    """
    rng = np.random.default_rng(seed)
    included = rng.integers(0, 2, m)
    truthful = rng.uniform(size=m) < (1.0 if math.isinf(epsilon) else expit(epsilon))
    reported = np.where(truthful, included, 1 - included)
    return reported + rng.uniform(0, 0.5, m), included
