"""The contrast's small-k test (:mod:`dpfair.fairness.contrasts`): its tail against Student's t, its
inversions, and its size, coverage and power by seeded simulation of the seed-mean model it assumes.

The simulation draws what :func:`~dpfair.fairness.contrasts.seed_contrast` sees: k seeds' per-seed
differences d_s = δ + t_s + u + w_s (seed noise t_s ~ N(0, σ_t²), the test set's shared error u ~ N(0, c),
each run's own test error w_s ~ N(0, v − c)) and B bootstrap replicates of each, replicate b moving every
run by the same shared resample u_b ~ N(0, c) plus its own w_{s,b} ~ N(0, v − c), so c̄ is estimated from
B replicates as in the pipeline. The nuisance ratio r = c/((σ_t² + v − c)/k) sets how much of se² is the
seeds' spread (r = 0) or the shared test noise (r → ∞). ``python tests/test_contrasts.py`` prints the size
table for the committed test beside the Welch–Satterthwaite t it replaced.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from dpfair.fairness import contrasts
from dpfair.fairness.contrasts import Contrast, critical_value, interval_of, ratio_bound, seed_contrast
from scipy import stats

RATIOS = (0.0, 0.3, 1.0, 3.0, 10.0)


def _draw(rng, *, k: int, ratio: float, delta: float = 0.0, reps: int = 100, c: float = 1e-4):
    """Per-seed differences and their replicates (k, reps) at nuisance ratio ``ratio`` (module docstring).

    The seeds' spread σ_t² + (v − c) = c·k/r is split evenly between training and own test noise.
    """
    spread = c * k / ratio if ratio > 0 else 1e-3
    c = c if ratio > 0 else 0.0
    train, own = spread / 2, spread / 2
    point = delta + rng.normal(0, math.sqrt(train), k) + rng.normal(0, math.sqrt(c)) + rng.normal(0, math.sqrt(own), k)
    replicates = point[:, None] + rng.normal(0, math.sqrt(c), (1, reps)) + rng.normal(0, math.sqrt(own), (k, reps))
    return point, replicates, math.sqrt(train / k + own / k + c)


def _contrast(point, replicates) -> Contrast:
    zeros = np.zeros_like(point)
    return seed_contrast(point, zeros, replicates, np.zeros_like(replicates), paired=True)


def _satterthwaite_p(c: Contrast) -> float:
    """The test this one replaced: t with df se⁴ / ((S²/k)² / (k − 1)) (Satterthwaite 1946)."""
    part = c.var_seed / c.n_seeds
    df = c.se**4 / (part**2 / (c.n_seeds - 1)) if part > 0 else math.inf
    return float(2 * stats.t.sf(abs(c.estimate) / c.se, df))


def _rates(k: int, ratio: float, sims: int, seed: int, *, delta: float = 0.0, alpha: float = 0.05) -> dict:
    rng = np.random.default_rng(seed)
    rejected = satterthwaite = covered = 0
    for _ in range(sims):
        point, replicates, _ = _draw(rng, k=k, ratio=ratio, delta=delta)
        c = _contrast(point, replicates)
        rejected += c.p_value < alpha
        satterthwaite += _satterthwaite_p(c) < alpha
        low, high = c.interval(1 - alpha)
        covered += low <= delta <= high
    return {"reject": rejected / sims, "satterthwaite": satterthwaite / sims, "coverage": covered / sims}


def test_the_tail_is_students_t_at_no_shared_noise_and_the_normal_at_all_shared_noise():
    for df in (1, 2, 4, 11, 40):
        for c in (0.5, 2.0, 4.0, 8.0):
            exact = 2 * stats.t.sf(c, df)
            assert contrasts._tails(c, df, [1e-12])[0] == pytest.approx(exact, rel=1e-4)
        assert contrasts._tails(2.0, df, [1e9])[0] == pytest.approx(2 * stats.norm.sf(2.0), rel=1e-6)


def test_the_critical_value_inverts_the_p_value_and_shrinks_with_the_ratio():
    for df in (2, 5, 11):
        values = [critical_value(0.05, df, r) for r in (0.0, 0.5, 5.0, math.inf)]
        assert values == sorted(values, reverse=True)  # more shared noise: closer to the normal
        for r, value in zip((0.0, 0.5, 5.0), values):
            at_critical = Contrast(value, 1.0, df, df + 1, True, 1.0, 1.0, 0.5, r)  # estimate/se = the value
            assert at_critical.p_value == pytest.approx(0.05, abs=1e-6)


def test_intervals_rebuilt_from_a_row_are_the_contrasts_own_and_tost_agrees_with_them():
    rng = np.random.default_rng(3)
    for ratio in RATIOS:
        point, replicates, _ = _draw(rng, k=5, ratio=ratio, delta=0.004)
        c = _contrast(point, replicates)
        assert interval_of(c.estimate, c.se, c.df, c.ratio, level=0.9) == pytest.approx(c.interval(0.9))
        low, high = c.interval(0.9)
        margin = max(abs(low), abs(high))
        # TOST at α = 0.05 rejects exactly when the 90% interval lies inside ±margin
        assert c.equivalence_p(margin * 1.001) < 0.05 < c.equivalence_p(margin * 0.999)


def test_the_nuisance_bound_is_a_lower_confidence_bound_for_the_ratio():
    """r_low = c·k·χ²_{γ,ν}/(ν·S²) falls below the true r in all but about γ of draws of S²."""
    rng, k, c, sigma2 = np.random.default_rng(5), 4, 1e-4, 3e-4
    s2 = sigma2 * rng.chisquare(k - 1, 200_000) / (k - 1)
    bounds = np.array([ratio_bound(c, x, k) for x in s2[:20_000]])
    assert np.mean(bounds > c * k / sigma2) <= 3 * contrasts.GAMMA


@pytest.mark.slow
@pytest.mark.parametrize("k", [3, 5, 10])
def test_size_is_at_most_nominal_and_coverage_at_least_it_for_every_ratio(k):
    """2,000 draws per (k, r) at no difference: the share with p < 0.05 is ≤ 0.05 + 2 binomial SEs (0.060)
    and the 95% interval covers 0 in ≥ 0.93 of them, for r from 0 (the seeds' spread is all of se²) to 10.
    """
    for i, ratio in enumerate(RATIOS):
        rates = _rates(k, ratio, 2000, seed=100 * k + i)
        assert rates["reject"] <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / 2000), (k, ratio, rates)
        assert rates["coverage"] >= 0.93, (k, ratio, rates)


@pytest.mark.slow
@pytest.mark.parametrize("k", [3, 10])
def test_a_difference_at_the_rows_own_mde_is_found_with_its_power(k):
    """At δ = the MDE a row reports for its own se, ν and plug-in r̂, power is at least 0.8 − 3 SE.

    The MDE is computed at the true components (the design's view, :func:`minimum_detectable`).
    """
    for i, ratio in enumerate((0.0, 1.0, 10.0)):
        rng = np.random.default_rng(7 + i)
        _, _, sd = _draw(rng, k=k, ratio=ratio)
        mde = contrasts.minimum_detectable(sd, k - 1, alpha=0.05, power=0.8, ratio=ratio)
        power = _rates(k, ratio, 1000, seed=11 + i + k, delta=mde)["reject"]
        assert power >= 0.8 - 3 * math.sqrt(0.16 / 1000), (k, ratio, mde, power)


if __name__ == "__main__":
    print("k  r     size (this test)  size (Satterthwaite t)  coverage")
    for k in (3, 5, 10):
        for i, ratio in enumerate(RATIOS):
            rates = _rates(k, ratio, 6000, seed=100 * k + i)
            print(f"{k:<2} {ratio:<5} {rates['reject']:.3f}             {rates['satterthwaite']:.3f}"
                  f"                   {rates['coverage']:.3f}")  # fmt: skip
