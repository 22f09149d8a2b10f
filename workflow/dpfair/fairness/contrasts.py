"""A contrast of two arms over seeds that share one test set: its estimate, standard error, verdict and MDE.

Every comparison the tables make (a gap or AUROC at ε against ε = ∞, a mitigation against ``dpsgd``) is a
difference of seed means, each run scored on **the same test rows**. A run's estimate is
X_s = μ + t_s + e_s: t_s from training (seed), e_s from the test sample. The test errors of two seeds are
correlated (same rows), so

    Var(mean_s X_s) = σ_t²/k + v/k + (k − 1)/k · c,

v the test variance of one run, c the test covariance of two seeds' runs. The between-seed spread
S² = var_s(X_s) estimates σ_t² + v − c: it already holds each run's own test noise, so adding the
bootstrap variance v on top counts it twice (the old interval, 1.8× too wide in a statistics review).
What S² misses is the shared part c, hence

    se² = S²/k + c̄,

c̄ the mean over seed pairs s ≠ s' of the bootstrap covariance of their replicates (replicate b is the
same resample of the same rows in every run, so the bootstrap estimates c directly), floored at 0: two runs
scored on the same rows do not have negatively correlated test errors, and an unfloored c̄ near 0 made se²
vanish or turn negative at k = 3 (coverage 0.88 in a seeded simulation; 0.95–0.97 floored).

**The test at few seeds.** c̄ rests on B replicates and is treated as known; S² has ν = k − 1 df. With
σ² the true between-seed variance and r = c/(σ²/k) the *nuisance ratio*, the statistic is exactly

    T_r = Z·√(1 + r) / √(W/ν + r),     Z ~ N(0, 1), W ~ χ²_ν independent,

which is Student's t(ν) at r = 0 and N(0, 1) as r → ∞. r is unknown. Referring T to t with the
Welch–Satterthwaite df (Satterthwaite, Biometrics Bulletin 1946), which plugs in r̂, rejected 5.0–7.5% of
true nulls at k = 3 when seed noise dominated (a statistics review; tests/test_contrasts.py), because the df
move with S², the statistic's own denominator. Plain t(ν) is valid for every r but at k = 3 never rejected
when c̄ was most of se². So p-values are maximised over a confidence set for r (Berger & Boos, "P values
maximized over a confidence set for the nuisance parameter", JASA 1994;89:1012-1016):

    p = sup_{r ≥ r_low} P(|T_r| ≥ |t|) + 2γ,    r_low = c̄·k·χ²_{γ,ν} / (ν·S²),

[r_low, ∞) being a 1 − γ confidence set for r (S²ν/σ² ~ χ²_ν), γ = :data:`GAMMA`; 2γ, not γ, so that
each one-sided p (equivalence tests, interval ends) is a Berger–Boos p with γ. The tail is an expectation
over W, computed by Gauss–Legendre quadrature on W's probability scale (t(ν)'s own tail to 1e-5 at r → 0). The
interval inverts the same test (a critical value, :func:`critical_value`) and the MDE is that critical
value's exact power (:func:`minimum_detectable`). Tables carry ν (``df``) and r_low (``ratio``), from which
:func:`interval_of` rebuilds any interval. Paired by seed (a seed gives both arms the same initial weights and
batches) this applies to the per-seed differences. With different seed sets the arms' terms add
(S²_a/k_a + S²_b/k_b plus the shared covariance of the difference, floored as a whole) and the test is
t(min(k_a, k_b) − 1) at r = 0, Hsu's conservative df for two variances. This is the variance of a mean of
correlated estimates (e.g. Searle, Casella & McCulloch, *Variance Components* 1992, §3).

With one seed S² does not exist: the interval would carry the test noise of one trained model only, so
:func:`classify` gives no verdict ("one model").

Verdicts (:func:`classify`), the three-way reading of an interval (Schuirmann's two one-sided tests for
equivalence, J Pharmacokinet Biopharm 1987; Lakens, Soc Psychol Personal Sci 2017):

* a change ("up"/"down") when the (family-adjusted) p-value is below α;
* "equivalent" within ±margin when the 1 − 2α interval lies inside (−margin, margin);
* otherwise "inconclusive", with the row's minimum detectable change (MDE) at the stated power,
  the δ its test detects with that power, at the row's se, ν and plug-in r̂ = c̄·k/S² (:func:`minimum_detectable`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

UP, DOWN, EQUIVALENT, INCONCLUSIVE, ONE_MODEL, UNDEFINED = (
    "up",
    "down",
    "equivalent",
    "inconclusive",
    "one model",
    "undefined",
)
#: Miss probability of the confidence set for the nuisance ratio (Berger & Boos 1994); p-values add 2γ.
GAMMA = 0.0005
_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(96)
# Gauss–Legendre in v on (0, 1) with u = v³: nodes crowd towards small W, where T's far tail comes from
# (relative error ≤ 1e-5 against t(ν)'s own tail down to 1e-8, ν = 1..100; tests/test_contrasts.py).
_U = ((_NODES + 1) / 2) ** 3
_W = _WEIGHTS / 2 * 3 * ((_NODES + 1) / 2) ** 2
_RATIO_GRID = np.concatenate([[0.0], np.geomspace(1e-3, 1e4, 43)])


@dataclass(frozen=True)
class Contrast:
    """Difference of two arms' seed means with the variance parts it was built from.

    ``var_seed``: S² of the per-seed differences (paired) or the arms' S²/k summed (unpaired);
    ``var_test``/``cov_test``: mean bootstrap variance of one run and mean covariance of two seeds' runs;
    ``n_seeds``: seeds per arm (the smaller arm when unpaired).
    """

    estimate: float
    se: float
    df: float
    n_seeds: int
    paired: bool
    var_seed: float
    var_test: float
    cov_test: float
    ratio: float = 0.0

    def interval(self, level: float = 0.95) -> tuple[float, float]:
        """Estimate ± c · se, c the critical value of the two-sided test at 1 − ``level`` (NaN when undefined)."""
        if not self.defined:
            return math.nan, math.nan
        half = critical_value(1 - level, self.df, self.ratio) * self.se
        return self.estimate - half, self.estimate + half

    @property
    def defined(self) -> bool:
        """A finite estimate with a positive, finite standard error."""
        return math.isfinite(self.estimate) and math.isfinite(self.se) and self.se > 0

    @property
    def p_value(self) -> float:
        """Two-sided p of "no difference" (module docstring; from T's distribution, not from counting replicates)."""
        if not self.defined:
            return math.nan
        return float(min(1.0, _sup_tail(abs(self.estimate) / self.se, self.df, self.ratio) + 2 * GAMMA))

    def equivalence_p(self, margin: float) -> float:
        """TOST p of "|difference| ≥ margin": the larger of the two one-sided p-values (Schuirmann 1987)."""
        if not self.defined or not math.isfinite(margin):
            return math.nan
        lower = _one_sided((self.estimate + margin) / self.se, self.df, self.ratio)  # H0: difference ≤ −margin
        upper = _one_sided((margin - self.estimate) / self.se, self.df, self.ratio)  # H0: difference ≥ margin
        return float(max(lower, upper))

    def mde(self, *, alpha: float = 0.05, power: float = 0.8) -> float:
        """Smallest true difference the two-sided level-``alpha`` test detects with probability ``power``."""
        r = _floor(self.cov_test) * self.n_seeds / self.var_seed if self.paired and self.var_seed > 0 else 0.0
        return minimum_detectable(self.se, self.df, alpha=alpha, power=power, ratio=r, bounded=self.paired)


def interval_of(
    estimate: float, se: float, df: float, ratio: float = 0.0, *, level: float = 0.95
) -> tuple[float, float]:
    """The interval a table row's (estimate, se, df, ratio) columns stand for (what :meth:`Contrast.interval` gives).

    Example:
        >>> lo, hi = interval_of(0.1, 0.02, 4, 0.0, level=0.95)  # r = 0: t(4), up to the 2γ of the test
        >>> round(hi - 0.1, 4), round(float(stats.t.ppf(0.975, 4)) * 0.02, 4)
        (0.0559, 0.0555)
    """
    ratio = float(ratio) if ratio is not None and not math.isnan(float(ratio)) else 0.0  # older tables: none
    c = Contrast(float(estimate), float(se), float(df), 2, True, math.nan, math.nan, math.nan, ratio)
    return c.interval(level)


def critical_value(alpha: float, df: float, ratio: float = 0.0) -> float:
    """The c with sup_{r ≥ ratio} P(|T_r| ≥ c) + 2γ = ``alpha`` (inf when alpha ≤ 2γ).

    Example:
        >>> round(critical_value(0.05, math.inf), 3), round(critical_value(0.05, 2), 2)  # ≈ z and t(2) at 0.049
        (1.969, 4.35)
    """
    mass = alpha - 2 * GAMMA
    if mass <= 0:
        return math.inf
    if mass >= 1:
        return 0.0
    if not math.isfinite(df) or ratio == math.inf:
        return float(stats.norm.isf(mass / 2))
    if ratio <= 0:
        return float(stats.t.isf(mass / 2, df))
    high = float(stats.t.isf(mass / 2, df))  # r = 0 has the heaviest tail
    low = float(stats.norm.isf(mass / 2))
    if _sup_tail(low, df, ratio) <= mass:
        return low
    if _sup_tail(high, df, ratio) >= mass:  # r_low ≈ 0: t(ν) up to the quadrature's error
        return high
    return float(optimize.brentq(lambda c: _sup_tail(c, df, ratio) - mass, low, high, xtol=1e-10))


def ratio_bound(cov: float, spread: float, seeds: int) -> float:
    """r_low = c̄·k·χ²_{γ,ν}/(ν·S²): the lower end of the 1 − γ confidence set for r (module docstring)."""
    nu = seeds - 1
    if nu < 1 or not (math.isfinite(cov) and math.isfinite(spread)) or cov <= 0:
        return 0.0
    if spread <= 0:
        return math.inf
    return float(cov * seeds * stats.chi2.ppf(GAMMA, nu) / (nu * spread))


def minimum_detectable(
    sd: float, df: float, *, alpha: float = 0.05, power: float = 0.8, ratio: float = 0.0, bounded: bool = True
) -> float:
    """The true difference δ the two-sided level-``alpha`` test rejects with probability ``power``.

    ``sd``: the estimate's true standard deviation √V (a row's se stands in for it); ``ratio``: the true
    nuisance ratio r = c/(σ²/k) (a row's plug-in c̄·k/S²); ``bounded``: the test maximises over r ≥ r_low
    from S² (paired), else it refers to t(ν) (unpaired, r_low = 0). Power is exact over the seed spread:
    given W (S² = σ²W/ν), se/√V = √((W/ν + r)/(1 + r)), r_low = r·χ²_{γ,ν}/W and the test rejects when
    |Z + δ/√V| exceeds its critical value times se/√V; the expectation over W is the same quadrature as
    the p-value's. (The textbook (t_{1−α/2,ν} + t_{power,ν})·se falls short of its power at ν = 2: 0.75.)

    Example:
        >>> round(minimum_detectable(0.01, math.inf), 4)  # (1.969 + 0.842) · 0.01, the normal test
        0.0281
        >>> round(minimum_detectable(0.01, 2) / 0.01, 2)  # t(2) at r = 0: more than t_{.975,2} + t_{.8,2} = 5.36
        5.71
    """
    if not (math.isfinite(sd) and sd > 0):
        return math.nan
    if not math.isfinite(df):
        return float((critical_value(alpha, df) + stats.norm.ppf(power)) * sd)
    ratio = float(ratio) if math.isfinite(ratio) and ratio > 0 else (math.inf if ratio == math.inf else 0.0)
    if ratio == math.inf:
        return float((critical_value(alpha, math.inf) + stats.norm.ppf(power)) * sd)
    w = _chi2_nodes(df)
    spread = np.sqrt((w / df + ratio) / (1 + ratio))
    r_low = ratio * stats.chi2.ppf(GAMMA, df) / w if bounded and ratio > 0 else np.zeros_like(w)
    bound = _critical_curve(alpha, df)(r_low) * spread

    def shortfall(lam: float) -> float:
        return float((stats.norm.sf(bound - lam) + stats.norm.cdf(-bound - lam)) @ _W) - power

    if shortfall(0.0) >= 0:  # a test that loose rejects that often with no difference at all
        return 0.0
    high = 1.0
    while shortfall(high) < 0:
        high *= 2
        if high > 1e6:
            return math.nan
    return float(optimize.brentq(shortfall, 0.0, high, xtol=1e-10) * sd)


@functools.lru_cache(maxsize=512)
def _chi2_nodes(df: float) -> np.ndarray:
    """W ~ χ²_ν at the quadrature's nodes (the ppf is the slow part of every tail; ν repeats)."""
    return stats.chi2.ppf(_U, df)


@functools.lru_cache(maxsize=256)
def _critical_curve(alpha: float, df: float):
    """r_low ↦ :func:`critical_value` for one (α, ν), tabulated on a log grid of r and interpolated."""
    grid = np.concatenate([[0.0], np.geomspace(1e-4, 1e4, 49)])
    values = np.array([critical_value(alpha, df, r) for r in grid])
    x = np.log(grid + 1e-4)
    normal = critical_value(alpha, math.inf)
    return lambda r: np.where(np.asarray(r) > grid[-1], normal, np.interp(np.log(np.asarray(r) + 1e-4), x, values))


def seed_contrast(arm_point, base_point, arm_reps, base_reps, *, paired: bool) -> Contrast:
    """The contrast of ``arm`` minus ``base`` (see the module docstring).

    ``*_point``: (k,) per-seed estimates; ``*_reps``: (k, B) their bootstrap replicates on the shared
    resamples (columns pair across runs). ``paired``: the arms' seeds match row by row.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> shared = rng.normal(0, 0.02, 2000)  # one test set: every run's replicates move together
        >>> arm = 0.10 + rng.normal(0, 0.01, 5); base = rng.normal(0, 0.01, 5)
        >>> c = seed_contrast(arm, base, arm[:, None] + shared, base[:, None] + 0.5 * shared, paired=True)
        >>> round(c.estimate, 3), c.n_seeds, round(c.cov_test / 0.5**2 / 0.02**2, 2)  # c̄ = var(0.5·shared)
        (0.097, 5, 1.0)
    """
    a, b = np.asarray(arm_point, dtype=float), np.asarray(base_point, dtype=float)
    ra, rb = np.atleast_2d(np.asarray(arm_reps, dtype=float)), np.atleast_2d(np.asarray(base_reps, dtype=float))
    estimate = float(a.mean() - b.mean()) if len(a) and len(b) else math.nan
    if paired:
        if a.shape != b.shape or ra.shape != rb.shape:
            raise ValueError("paired arms need the same seeds and replicates")
        d, rd = a - b, ra - rb
        k = len(d)
        s2, (v, c) = _spread(d), _test_moments(rd, rd)
        if k < 2 or not math.isfinite(s2):
            return Contrast(estimate, math.sqrt(v) if v > 0 else math.nan, math.inf, k, True, math.nan, v, c)
        se2 = s2 / k + _floor(c)
        return Contrast(estimate, _root(se2), float(k - 1), k, True, s2, v, c, ratio_bound(_floor(c), s2, k))
    ka, kb = len(a), len(b)
    s2a, s2b = _spread(a), _spread(b)
    va, ca = _test_moments(ra, ra)
    vb, cb = _test_moments(rb, rb)
    _, cab = _test_moments(ra, rb, cross=True)
    if min(ka, kb) < 2 or not (math.isfinite(s2a) and math.isfinite(s2b)):
        v = va / max(ka, 1) + vb / max(kb, 1) - 2 * cab
        return Contrast(estimate, _root(v), math.inf, min(ka, kb), False, math.nan, (va + vb) / 2, cab)
    seed_part = s2a / ka + s2b / kb
    se2 = seed_part + _floor(ca + cb - 2 * cab)  # the shared covariance of the difference, floored as a whole
    return Contrast(estimate, _root(se2), float(min(ka, kb) - 1), min(ka, kb), False, seed_part, (va + vb) / 2, cab)


def _floor(c: float) -> float:
    return max(c, 0.0) if math.isfinite(c) else c


def classify(
    contrast: Contrast,
    *,
    p_value: float | None = None,
    alpha: float = 0.05,
    margin: float | None = None,
    p_equivalence: float | None = None,
) -> str:
    """:data:`UP`, :data:`DOWN`, :data:`EQUIVALENT`, :data:`INCONCLUSIVE`, :data:`ONE_MODEL` or :data:`UNDEFINED`.

    ``p_value``: the family-adjusted p (default the contrast's own); ``margin``: the equivalence margin
    (None: no equivalence reading); ``p_equivalence``: the family-adjusted TOST p (default the contrast's
    own :meth:`Contrast.equivalence_p`), equivalent when below α.

    Example:
        >>> c = Contrast(0.004, 0.005, 9.0, 10, True, 2e-4, 1e-4, 5e-5)
        >>> classify(c, margin=0.03), classify(c, margin=0.01)
        ('equivalent', 'inconclusive')
    """
    if not math.isfinite(contrast.estimate):
        return UNDEFINED
    if contrast.n_seeds < 2:
        return ONE_MODEL
    if not contrast.defined:
        return UNDEFINED
    p = contrast.p_value if p_value is None else p_value
    if math.isfinite(p) and p < alpha:
        return UP if contrast.estimate > 0 else DOWN
    if margin is not None:
        p_eq = contrast.equivalence_p(margin) if p_equivalence is None else p_equivalence
        if math.isfinite(p_eq) and p_eq < alpha:
            return EQUIVALENT
    return INCONCLUSIVE


def _tails(c: float, df: float, ratios: np.ndarray) -> np.ndarray:
    """P(|T_r| ≥ c) for each r: E_W[2·Φ̄(c·√((W/ν + r)/(1 + r)))] by quadrature over W's quantiles."""
    w = _chi2_nodes(df)[None, :] / df
    r = np.asarray(ratios, dtype=float)[:, None]
    scale = np.sqrt((w + r) / (1 + r))
    return 2 * stats.norm.sf(c * scale) @ _W


def _sup_tail(c: float, df: float, ratio: float) -> float:
    """Sup over r ≥ ``ratio`` of P(|T_r| ≥ c) (on a grid of r; r = 0 is t(ν) exactly, r = ∞ the normal)."""
    if not math.isfinite(c):
        return 0.0
    if not math.isfinite(df) or ratio == math.inf:
        return float(2 * stats.norm.sf(c))
    if ratio <= 0:
        return float(2 * stats.t.sf(c, df))
    grid = ratio + _RATIO_GRID * max(ratio, 1.0)
    return float(max(_tails(c, df, grid).max(), 2 * stats.norm.sf(c)))


def _one_sided(x: float, df: float, ratio: float) -> float:
    """sup_r P(T_r ≥ x) + γ (T_r is symmetric: half the two-sided tail above 0, one minus it below)."""
    tail = _sup_tail(abs(x), df, ratio) if x >= 0 else _inf_tail(abs(x), df, ratio)
    return float(min(1.0, (tail / 2 if x >= 0 else 1 - tail / 2) + GAMMA))


def _inf_tail(c: float, df: float, ratio: float) -> float:
    if not math.isfinite(df) or ratio == math.inf or c == 0:
        return float(2 * stats.norm.sf(c))
    grid = ratio + _RATIO_GRID * max(ratio, 1.0)
    return float(min(_tails(c, df, grid).min(), 2 * stats.norm.sf(c)))


def _root(x: float) -> float:
    return math.sqrt(x) if math.isfinite(x) and x > 0 else math.nan


def _spread(x: np.ndarray) -> float:
    return float(np.var(x, ddof=1)) if len(x) > 1 and not np.isnan(x).any() else math.nan


def _test_moments(x: np.ndarray, y: np.ndarray, *, cross: bool = False) -> tuple[float, float]:
    """(mean bootstrap variance of a run, mean covariance of two different seeds' runs) over replicates.

    ``cross``: x and y are two arms; every (x run, y run) pair counts as "different" (second value).
    Replicates that are NaN in any run are dropped.
    """
    keep = ~(np.isnan(x).any(axis=0) | np.isnan(y).any(axis=0))
    x, y = x[:, keep], y[:, keep]
    if x.shape[1] < 2:
        return math.nan, math.nan
    xc, yc = x - x.mean(axis=1, keepdims=True), y - y.mean(axis=1, keepdims=True)
    cov = xc @ yc.T / (x.shape[1] - 1)
    if cross:
        return math.nan, float(cov.mean())
    k = len(cov)
    var = float(np.trace(cov) / k)
    off = float((cov.sum() - np.trace(cov)) / (k * (k - 1))) if k > 1 else 0.0
    return var, off
