"""The one-run audit's certified bound (Steinke, Nasr & Jagielski 2023) against closed forms, a slow reference
and a Monte Carlo of an exactly ε-DP mechanism."""

import math

import numpy as np
import pytest
from dpfair.audit.one_run import (
    epsilon_one_run,
    one_run_audit,
    one_run_p_value,
    randomized_response_canaries,
)
from scipy.special import expit
from scipy.stats import binom


def slow_p_value(m, r, v, eps, delta):
    """The paper's bound written out term by term: max over every i in 1..m, f(w) = 1 for w <= 0."""
    q = math.exp(eps) / (1 + math.exp(eps))

    def f(w):
        return 1.0 if w <= 0 else sum(math.comb(r, j) * q**j * (1 - q) ** (r - j) for j in range(w, r + 1))

    slack = max((f(v - i) - f(v)) / i for i in range(1, m + 1))
    return min(f(v) + 2 * m * delta * slack, 1.0)


@pytest.mark.parametrize(
    "m, r, v, eps, delta",
    [
        (50, 20, 15, 0.5, 1e-3),
        (100, 40, 33, 1.0, 1e-4),
        (30, 30, 30, 2.0, 1e-2),
        (200, 10, 3, 0.1, 1e-5),
        (20, 5, 0, 1.0, 1e-2),
    ],
)
def test_p_value_matches_the_slow_reference(m, r, v, eps, delta):
    assert one_run_p_value(m=m, n_guesses=r, n_correct=v, epsilon=eps, delta=delta) == pytest.approx(
        slow_p_value(m, r, v, eps, delta), rel=1e-9
    )


def test_pure_dp_p_value_is_the_binomial_tail():
    for r, v, eps in ((100, 70, 0.3), (20, 20, 1.5), (500, 260, 0.0)):
        expected = binom.sf(v - 1, r, expit(eps))
        assert one_run_p_value(m=1000, n_guesses=r, n_correct=v, epsilon=eps, delta=0.0) == pytest.approx(
            expected, rel=1e-12
        )


def test_bound_is_where_the_p_value_reaches_the_significance():
    eps = epsilon_one_run(m=1000, n_guesses=200, n_correct=170, delta=1e-5, significance=0.05)
    assert eps > 0
    assert one_run_p_value(m=1000, n_guesses=200, n_correct=170, epsilon=eps, delta=1e-5) == pytest.approx(
        0.05, abs=1e-5
    )
    # all correct with δ = 0 has a closed form: q^r = β
    q = 0.05 ** (1 / 100)
    assert epsilon_one_run(m=1000, n_guesses=100, n_correct=100, delta=0.0, significance=0.05) == pytest.approx(
        math.log(q / (1 - q)), abs=1e-5
    )


def test_bound_grows_with_correct_guesses_and_shrinks_with_delta_and_confidence():
    bounds = [
        epsilon_one_run(m=1000, n_guesses=100, n_correct=v, delta=1e-5, significance=0.05)
        for v in (50, 60, 70, 80, 90, 100)
    ]
    assert bounds == sorted(bounds) and bounds[0] == 0.0 and bounds[-1] > 3
    assert epsilon_one_run(m=1000, n_guesses=100, n_correct=90, delta=1e-3, significance=0.05) < bounds[4]
    assert epsilon_one_run(m=1000, n_guesses=100, n_correct=90, delta=1e-5, significance=0.001) < bounds[4]


@pytest.mark.parametrize("epsilon", [0.5, 2.0])
def test_bound_stays_below_the_true_epsilon_of_randomized_response(epsilon):
    """An exactly ε-DP mechanism: the certified bound must be ≤ ε in at least 95% of replications."""
    bounds = np.array(
        [
            one_run_audit(scores=s, included=i, delta=1e-5, seed=k).epsilon_lower_bound
            for k in range(100)
            for s, i in [randomized_response_canaries(m=1000, epsilon=epsilon, seed=k)]
        ]
    )
    assert np.mean(bounds <= epsilon) >= 0.95
    assert np.mean(bounds) > 0.5 * epsilon  # and it is not vacuous


def test_bound_approaches_epsilon_with_many_canaries():
    counts = (100, 200, 500, 1000, 2000, 5000)
    bounds = [
        one_run_audit(scores=s, included=i, delta=1e-5, guess_counts=counts, seed=k).epsilon_lower_bound
        for k in range(10)
        for s, i in [randomized_response_canaries(m=10_000, epsilon=2.0, seed=k)]
    ]
    assert 0.85 * 2.0 < np.median(bounds) <= 2.0


def test_non_private_canaries_give_a_large_bound_and_independent_scores_none():
    scores, included = randomized_response_canaries(m=1000, epsilon=math.inf, seed=0)
    assert one_run_audit(scores=scores, included=included, delta=1e-5).epsilon_lower_bound > 4
    rng = np.random.default_rng(1)
    zeros = [
        one_run_audit(scores=rng.normal(size=500), included=rng.integers(0, 2, 500), delta=1e-5).epsilon_lower_bound
        for _ in range(20)
    ]
    assert max(zeros) == 0.0


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="n_correct"):
        one_run_p_value(m=10, n_guesses=5, n_correct=6, epsilon=1.0, delta=0.0)
    with pytest.raises(ValueError, match="0 or 1"):
        one_run_audit(scores=[0.1, 0.2], included=[0, 2], delta=1e-5)
    with pytest.raises(ValueError, match="finite"):
        one_run_audit(scores=[0.1, np.nan], included=[0, 1], delta=1e-5)
    with pytest.raises(ValueError, match="between 1 and m"):
        one_run_audit(scores=[0.1, 0.2], included=[0, 1], delta=1e-5, guess_counts=(10,))
