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
vanish or turn negative at k = 3 (coverage 0.88 in a seeded simulation; 0.95–0.97 floored). The estimate
over its se is referred to Student's t with the Welch–Satterthwaite df of se², se⁴ / ((S²/k)² / (k − 1)):
S² has k − 1 df and c̄ rests on B replicates (treated as known), so the df lie between k − 1 (seed noise
dominates) and ∞ (shared test noise dominates). Plain t(k − 1) never rejected at k = 3 when c̄ was most
of se² (size 0.00; Satterthwaite 0.035–0.05; tests/test_utility_changes.py). Paired by seed (a seed gives
both arms the same initial weights and batches) the formula applies to the per-seed differences; with
different seed sets the two arms' terms add, minus twice their test covariance, with the same df rule.
This is the variance of a mean of correlated estimates (e.g. Searle, Casella & McCulloch, *Variance
Components* 1992, §3) and Satterthwaite's approximation (Biometrics Bulletin 1946).

With one seed S² does not exist: the interval would carry the test noise of one trained model only, so
:func:`classify` gives no verdict ("one model").

Verdicts (:func:`classify`), the three-way reading of an interval (Schuirmann's two one-sided tests for
equivalence, J Pharmacokinet Biopharm 1987; Lakens, Soc Psychol Personal Sci 2017):

* a change ("up"/"down") when the (family-adjusted) p-value is below α;
* "equivalent" within ±margin when the 1 − 2α interval lies inside (−margin, margin);
* otherwise "inconclusive", with the row's minimum detectable change (MDE) at the stated power,
  (t_{1−α/2} + t_{power}) · se at the row's own se and df.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

UP, DOWN, EQUIVALENT, INCONCLUSIVE, ONE_MODEL, UNDEFINED = (
    "up",
    "down",
    "equivalent",
    "inconclusive",
    "one model",
    "undefined",
)


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
        """Estimate ± t_{(1+level)/2, df} · se (NaN when the se is not defined)."""
        if not self.defined:
            return math.nan, math.nan
        half = _t(1 - (1 - level) / 2, self.df) * self.se
        return self.estimate - half, self.estimate + half

    @property
    def defined(self) -> bool:
        """A finite estimate with a positive, finite standard error."""
        return math.isfinite(self.estimate) and math.isfinite(self.se) and self.se > 0

    @property
    def p_value(self) -> float:
        """Two-sided p of "no difference" from t(df) (not from counting replicates: no 1/(B+1) floor)."""
        if not self.defined:
            return math.nan
        return float(2 * stats.t.sf(abs(self.estimate) / self.se, self.df))

    def equivalence_p(self, margin: float) -> float:
        """TOST p of "|difference| ≥ margin": the larger of the two one-sided p-values (Schuirmann 1987)."""
        if not self.defined or not math.isfinite(margin):
            return math.nan
        lower = stats.t.sf((self.estimate + margin) / self.se, self.df)
        upper = stats.t.cdf((self.estimate - margin) / self.se, self.df)
        return float(max(lower, upper))

    def mde(self, *, alpha: float = 0.05, power: float = 0.8) -> float:
        """Smallest true difference the two-sided level-``alpha`` test detects with probability ``power``."""
        return minimum_detectable(self.se, self.df, alpha=alpha, power=power)


def interval_of(estimate: float, se: float, df: float, ratio: float = 0.0, *, level: float = 0.95) -> tuple[float, float]:
    """The interval a table row's (estimate, se, df, ratio) columns stand for (what :meth:`Contrast.interval` gives)."""
    c = Contrast(float(estimate), float(se), float(df), 2, True, math.nan, math.nan, math.nan, float(ratio))
    return c.interval(level)


def minimum_detectable(se: float, df: float, *, alpha: float = 0.05, power: float = 0.8) -> float:
    """(t_{1−α/2, df} + t_{power, df}) · se: the usual MDE of a two-sided t test (ignoring the far tail).

    Example:
        >>> round(minimum_detectable(0.01, math.inf), 4)  # (1.960 + 0.842) · 0.01
        0.028
    """
    if not (math.isfinite(se) and se > 0):
        return math.nan
    return float((_t(1 - alpha / 2, df) + _t(power, df)) * se)


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
        return Contrast(estimate, _root(se2), _satterthwaite(se2, [(s2 / k, k)]), k, True, s2, v, c)
    ka, kb = len(a), len(b)
    s2a, s2b = _spread(a), _spread(b)
    va, ca = _test_moments(ra, ra)
    vb, cb = _test_moments(rb, rb)
    _, cab = _test_moments(ra, rb, cross=True)
    if min(ka, kb) < 2 or not (math.isfinite(s2a) and math.isfinite(s2b)):
        v = va / max(ka, 1) + vb / max(kb, 1) - 2 * cab
        return Contrast(estimate, _root(v), math.inf, min(ka, kb), False, math.nan, (va + vb) / 2, cab)
    seed_part = s2a / ka + s2b / kb
    se2 = seed_part + _floor(ca) + _floor(cb) - 2 * cab
    df = _satterthwaite(se2, [(s2a / ka, ka), (s2b / kb, kb)])
    return Contrast(estimate, _root(se2), df, min(ka, kb), False, seed_part, (va + vb) / 2, cab)


def _floor(c: float) -> float:
    return max(c, 0.0) if math.isfinite(c) else c


def _satterthwaite(se2: float, parts: list[tuple[float, int]]) -> float:
    """Welch–Satterthwaite df of se² whose estimated parts are (S²/k, k); the rest is treated as known."""
    denominator = sum(part**2 / (k - 1) for part, k in parts)
    if not (math.isfinite(se2) and se2 > 0) or denominator <= 0:
        return math.inf
    return float(se2**2 / denominator)


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


def _t(q: float, df: float) -> float:
    return float(stats.norm.ppf(q) if not math.isfinite(df) else stats.t.ppf(q, df))


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
