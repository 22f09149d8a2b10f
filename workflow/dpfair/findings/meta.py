"""Random-effects meta-analysis of per-dataset effect estimates: pooling and a one-moderator meta-regression.

This module owns the maths that pools one effect estimate per dataset (for example the AUROC change of
DP-SGD at epsilon = 10 against the non-private model, ``y_i`` with standard error ``se_i``, for k = 2..10
datasets) into one random-effects estimate, and that regresses such estimates on one dataset-level
moderator (for example log n_train). It reads and writes no files and knows nothing of the workflow.

Model: ``y_i = mu + u_i + e_i`` (or ``beta0 + beta1 * x_i + u_i + e_i``) with ``e_i ~ N(0, se_i**2)``
known and ``u_i ~ N(0, tau2)``. Estimates are weighted with ``w_i = 1 / (se_i**2 + tau2)``.

Estimators of tau2 (``method``):

* ``"dl"``: DerSimonian & Laird (1986), "Meta-analysis in clinical trials", Controlled Clinical Trials 7,
  177-188; with a moderator, its generalisation, the method-of-moments estimator of Raudenbush (2009),
  "Analyzing effect sizes: random-effects models", in Cooper, Hedges & Valentine (eds.), The Handbook of
  Research Synthesis and Meta-Analysis, 2nd ed. (metafor's ``method="DL"`` with ``mods``):
  ``tau2 = (Q_E - (k - p)) / tr(P)`` with ``P = W - W X (X' W X)^-1 X' W``, ``W = diag(1 / se_i**2)``.
  Truncated at 0.
* ``"reml"``: restricted maximum likelihood by Fisher scoring, Viechtbauer (2005), "Bias and efficiency of
  meta-analytic variance estimators in the random-effects model", J. Educ. Behav. Stat. 30, 261-293:
  ``tau2 <- tau2 + (y' P P y - tr(P)) / tr(P P)`` with ``W = diag(w_i)``, started at the DL value, each
  step truncated at 0; full steps can alternate around the maximum for hundreds of steps when the se_i
  differ a lot, so once two iterates bracket the root of the score, Brent's method (scipy) finishes. The
  estimate is the REML maximum on ``tau2 >= 0`` (0 when the score is negative there).

Intervals (``interval``):

* ``"hksj"``: Hartung & Knapp (2001), "A refined method for the meta-analysis of controlled clinical trials
  with binary outcome", Stat. Med. 20, 3875-3889; Sidik & Jonkman (2002), "A simple confidence interval for
  meta-analysis", Stat. Med. 21, 3153-3159: ``se**2 = sum w_i (y_i - mu)**2 / ((k - 1) sum w_i)`` and a t
  quantile with k - 1 degrees of freedom. For the meta-regression, Knapp & Hartung (2003), "Improved tests
  for a random effects meta-regression with a single covariate", Stat. Med. 22, 2693-2710: the
  covariance ``s**2 (X' W X)^-1`` with ``s**2 = sum w_i e_i**2 / (k - 2)`` and t with k - 2 degrees of
  freedom (metafor's ``test="knha"``). The untruncated form is used: the adjusted variance is *not* floored
  at the unadjusted one (that floor is metafor's ``test="adhoc"``, Jackson et al. 2017), so with little
  spread among the ``y_i`` the HKSJ interval can be narrower than the Wald one. HKSJ is close to nominal
  when the se_i are comparable, but undercovers when they differ a lot (Roever, Knapp & Friede 2015, BMC
  Med. Res. Methodol. 15:99): in tests/test_meta_analysis.py, k = 7 with se from 0.01 to 0.05 and
  tau = 0.02 gives 0.908 for a 95% HKSJ interval (Wald 0.88); se from 0.02 to 0.04 gives 0.949.
* ``"hksj_floored"``: the HKSJ interval with its variance floored at the Wald variance (the scale factor
  ``s**2`` replaced by ``max(1, s**2)``), t with k - 1 (k - 2) degrees of freedom: Knapp & Hartung's (2003)
  ad hoc modification, studied by Jackson, Law, Rücker & Schwarzer (2017), "The Hartung-Knapp modification
  for random-effects meta-analysis: a useful refinement but are there any residual concerns?", Stat. Med.
  36, 3923-3934 (metafor's ``test="adhoc"``). It never is narrower than the Wald interval; in the design above
  (se 0.01 to 0.05, tau 0.02) it covers 0.944. The findings use it by default.
* ``"z"``: the Wald interval, ``se**2 = 1 / sum w_i`` (``(X' W X)^-1``) and a normal quantile.

Heterogeneity: Cochran's Q (``sum (y_i - mu_FE)**2 / se_i**2``) and I**2 as metafor reports it, Higgins &
Thompson (2002), Stat. Med. 21, 1539-1558: ``I2 = tau2 / (tau2 + s2)`` with the "typical" sampling
variance ``s2 = (k - 1) sum w_i / ((sum w_i)**2 - sum w_i**2)``, ``w_i = 1 / se_i**2`` (a fraction here,
not a percentage). For DL this equals ``(Q - (k - 1)) / Q`` when that is positive.

The reference implementation whose published output the tests match is metafor, Viechtbauer (2010),
"Conducting meta-analyses in R with the metafor package", J. Stat. Softw. 36(3), 1-48
(``rma.uni``), on the BCG vaccine data (Colditz et al. 1994).

What comes from a library and what is written here:

* ``statsmodels.stats.meta_analysis.combine_effects`` (statsmodels 0.15) gives Cochran's Q, the
  DerSimonian-Laird tau2, and, when called with the variances ``se_i**2 + tau2``, the inverse-variance
  pooled estimate, its variance ``1 / sum w_i``, its HKSJ variance (``var_hksj_fe``, the untruncated form
  above) and both intervals (``conf_int``: its ``fe`` row is the Wald interval, its ``fe_wls`` row, with
  ``use_t=True``, the HKSJ one with k - 1 degrees of freedom). Its *fixed-effect* rows are used because,
  with ``se_i**2 + tau2`` as the variances, they are the random-effects rows for that tau2; its own
  random-effects rows are not used because it offers no REML (its ``method_re`` is ``"iterated"``/``"pm"``,
  Paule-Mandel, or ``"chi2"``/``"dl"``) and because it does not truncate the DL tau2 at 0 (a negative tau2
  there would give weights above ``1 / se_i**2``).
* ``statsmodels.regression.linear_model.WLS`` fits the meta-regression with weights ``1 / (se_i**2 +
  tau2)``: its default (estimated-scale) covariance with t on ``k - 2`` degrees of freedom is the
  Knapp-Hartung adjustment, its ``cov_type="fixed scale"`` (scale 1) covariance the Wald one.
* Hand-written, because statsmodels has neither: the REML tau2 (with or without the moderator) and the
  method-of-moments tau2 with a moderator, with its ``Q_E`` (a few lines of matrix algebra each), the input
  checks, the metafor-style I**2 (statsmodels' ``i2`` is ``1 - (k - 1) / Q``, not truncated and tied to DL), and the
  p-values (from the estimate, its standard error and scipy's t or normal distribution).

One dataset (k = 1): :func:`random_effects` returns the dataset's own estimate with its own Wald
interval, ``single=True``, ``interval="z"`` whatever was asked, and NaN for tau2, I**2 and Q: nothing can
be said about heterogeneity, and nothing is pooled. :func:`meta_regression` needs k >= 3.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special, stats
from statsmodels.regression.linear_model import WLS
from statsmodels.stats.meta_analysis import combine_effects

#: The tau2 estimators: ``"reml"`` (Viechtbauer 2005) and ``"dl"`` (DerSimonian & Laird 1986 / Raudenbush 2009).
METHODS = ("reml", "dl")
#: The intervals: ``"hksj"`` (Hartung-Knapp-Sidik-Jonkman / Knapp-Hartung, t), ``"hksj_floored"`` (the same
#: with its variance floored at the Wald one, t) and ``"z"`` (Wald, normal).
INTERVALS = ("hksj", "hksj_floored", "z")

_FISHER_STEPS = 50
_REML_RTOL = 1e-10


@dataclass(frozen=True)
class Pooled:
    """A random-effects pooled estimate (see :func:`random_effects`).

    Attributes:
        estimate: The pooled estimate ``mu``.
        se: Its standard error (HKSJ or Wald, per ``interval``).
        ci_low: Lower end of the ``ci_level`` interval.
        ci_high: Upper end of the ``ci_level`` interval.
        df: Degrees of freedom of the reference t distribution: ``k - 1`` for ``"hksj"``, ``inf`` for
            ``"z"`` (the normal distribution).
        p_value: Two-sided p-value of the test of ``mu = 0``.
        tau2: Between-dataset variance estimate (NaN when ``k == 1``).
        i2: I**2 as a fraction in [0, 1) (NaN when ``k == 1``).
        q: Cochran's Q with ``k - 1`` degrees of freedom (NaN when ``k == 1``).
        k: Number of datasets.
        method: The tau2 estimator, ``"reml"`` or ``"dl"``.
        interval: ``"hksj"`` or ``"z"`` (always ``"z"`` when ``k == 1``).
        single: True when ``k == 1``: the estimate is the one dataset's own, not a pooled one.
    """

    estimate: float
    se: float
    ci_low: float
    ci_high: float
    df: float
    p_value: float
    tau2: float
    i2: float
    q: float
    k: int
    method: str
    interval: str
    single: bool = False


@dataclass(frozen=True)
class MetaRegression:
    """A mixed-effects meta-regression on one moderator (see :func:`meta_regression`).

    Attributes:
        intercept: Estimated intercept ``beta0`` (the effect at ``x = 0``).
        intercept_se: Its standard error (Knapp-Hartung or Wald, per ``interval``).
        slope: Estimated slope ``beta1`` (change of the effect per unit of ``x``).
        slope_se: Its standard error (Knapp-Hartung or Wald, per ``interval``).
        slope_ci_low: Lower end of the slope's ``ci_level`` interval.
        slope_ci_high: Upper end of the slope's ``ci_level`` interval.
        slope_p_value: Two-sided p-value of the test of ``beta1 = 0``.
        df: Degrees of freedom of the reference t distribution: ``k - 2`` for ``"hksj"``, ``inf`` for
            ``"z"`` (the normal distribution).
        tau2: Residual between-dataset variance estimate.
        qe: Test statistic of residual heterogeneity ``Q_E`` (``k - 2`` degrees of freedom).
        k: Number of datasets.
        method: The tau2 estimator, ``"reml"`` or ``"dl"``.
        interval: ``"hksj"`` or ``"z"``.
    """

    intercept: float
    intercept_se: float
    slope: float
    slope_se: float
    slope_ci_low: float
    slope_ci_high: float
    slope_p_value: float
    df: float
    tau2: float
    qe: float
    k: int
    method: str
    interval: str


def random_effects(y, se, *, method: str = "reml", ci_level: float = 0.95, interval: str = "hksj") -> Pooled:
    """Pool per-dataset estimates ``y`` with standard errors ``se`` in a random-effects model.

    Args:
        y: One effect estimate per dataset (1-D, finite).
        se: Their standard errors (same length, finite, > 0).
        method: tau2 estimator: ``"reml"`` (default) or ``"dl"`` (DerSimonian-Laird).
        ci_level: Confidence level of the interval, in (0, 1).
        interval: ``"hksj"`` (default; Hartung-Knapp-Sidik-Jonkman, t with ``k - 1`` df), ``"hksj_floored"``
            (its variance floored at the Wald one) or ``"z"`` (Wald).

    Returns:
        A :class:`Pooled`. With one dataset, its own estimate and Wald interval, ``single=True`` and NaN
        tau2, I**2 and Q (see the module docstring).

    Raises:
        ValueError: On empty or mismatched inputs, a non-finite ``y``, a non-finite or non-positive ``se``,
            an unknown ``method`` or ``interval``, or ``ci_level`` outside (0, 1).

    Example:
        >>> r = random_effects([0.10, 0.30, 0.20, 0.50], [0.10, 0.10, 0.10, 0.10], method="dl")
        >>> round(r.estimate, 4), round(r.tau2, 4), round(r.q, 2), r.df
        (0.275, 0.0192, 8.75, 3)
        >>> round(r.ci_low, 3), round(r.ci_high, 3)
        (0.003, 0.547)
        >>> random_effects([0.2], [0.1]).single
        True
    """
    yv, var = _check_effects(y, se)
    _check_options(method, interval, ci_level)
    k = yv.size
    alpha = 1.0 - ci_level
    if k == 1:
        est, sd = float(yv[0]), float(math.sqrt(var[0]))
        crit = float(stats.norm.isf(alpha / 2))
        return Pooled(
            estimate=est,
            se=sd,
            ci_low=est - crit * sd,
            ci_high=est + crit * sd,
            df=math.inf,
            p_value=float(2 * stats.norm.sf(abs(est / sd))),
            tau2=math.nan,
            i2=math.nan,
            q=math.nan,
            k=1,
            method=method,
            interval="z",
            single=True,
        )

    # combine_effects' own random-effects rows (unused) take square roots of an untruncated, possibly negative
    # DL tau2 and divide by se**2 + tau2 (0 for identical y's with equal se), and its i2 divides by Q (0 then)
    quiet = {"invalid": "ignore", "divide": "ignore"}
    with np.errstate(**quiet):
        base = combine_effects(yv, var, method_re="dl")
    q = max(0.0, float(base.q))  # its sum w y**2 - (sum w y)**2 / sum w can round to just below 0
    tau2 = max(0.0, float(base.tau2))  # statsmodels leaves the DL estimate untruncated
    if method == "reml":
        tau2 = _tau2_reml(yv, var, np.ones((k, 1)), start=tau2)

    # with variances se**2 + tau2 the "fixed-effect" rows of combine_effects are the random-effects ones
    with np.errstate(**quiet):
        fit = combine_effects(yv, var + tau2, method_re="dl")
        ci_fe, _, ci_fe_wls, _ = fit.conf_int(alpha=alpha, use_t=interval == "hksj")
    estimate = float(fit.mean_effect_fe)
    if interval == "hksj":
        sd, df, ci = float(np.sqrt(fit.var_hksj_fe)), k - 1, ci_fe_wls
    elif interval == "hksj_floored":
        sd, df = float(np.sqrt(max(fit.var_hksj_fe, fit.sd_eff_w_fe**2))), k - 1
        crit = float(stats.t.isf(alpha / 2, df))
        ci = (estimate - crit * sd, estimate + crit * sd)
    else:
        sd, df, ci = float(fit.sd_eff_w_fe), math.inf, ci_fe
    w = 1.0 / var
    typical = float((k - 1) * w.sum() / (w.sum() ** 2 - (w**2).sum()))
    return Pooled(
        estimate=estimate,
        se=sd,
        ci_low=float(ci[0]),
        ci_high=float(ci[1]),
        df=df,
        p_value=_p_value(estimate, sd, df),
        tau2=tau2,
        i2=float(tau2 / (tau2 + typical)),
        q=q,
        k=k,
        method=method,
        interval=interval,
    )


def meta_regression(
    y, se, x, *, method: str = "reml", ci_level: float = 0.95, interval: str = "hksj"
) -> MetaRegression:
    """Mixed-effects meta-regression of per-dataset estimates ``y`` on one moderator ``x``.

    Fits ``y_i = beta0 + beta1 * x_i + u_i + e_i`` with ``u_i ~ N(0, tau2)`` (residual heterogeneity) by
    weighted least squares with weights ``1 / (se_i**2 + tau2)``.

    Args:
        y: One effect estimate per dataset (1-D, finite).
        se: Their standard errors (same length, finite, > 0).
        x: The moderator, one value per dataset (finite, not all equal), e.g. log n_train.
        method: Residual tau2 estimator: ``"reml"`` (default) or ``"dl"`` (the method-of-moments
            estimator, metafor's ``method="DL"`` with moderators).
        ci_level: Confidence level of the slope's interval, in (0, 1).
        interval: ``"hksj"`` (default; Knapp-Hartung, t with ``k - 2`` df), ``"hksj_floored"`` (its scale
            floored at 1, the Wald one) or ``"z"`` (Wald).

    Returns:
        A :class:`MetaRegression`.

    Raises:
        ValueError: On fewer than 3 datasets, mismatched lengths, non-finite values, a non-positive
            ``se``, a constant ``x``, an unknown ``method`` or ``interval``, or ``ci_level`` outside (0, 1).

    Example:
        >>> m = meta_regression([0.12, 0.2, 0.35, 0.41], [0.05, 0.05, 0.05, 0.05], [1.0, 2.0, 3.0, 4.0], method="dl")
        >>> round(m.slope, 4), round(m.intercept, 4), m.tau2, m.df
        (0.102, 0.015, 0.0, 2)
        >>> round(m.slope_se, 4), round(m.slope_ci_low, 3), round(m.slope_ci_high, 3)
        (0.0117, 0.051, 0.153)
    """
    yv, var = _check_effects(y, se)
    _check_options(method, interval, ci_level)
    xv = np.asarray(x, dtype=float)
    if xv.shape != yv.shape:
        raise ValueError(f"x must have one value per dataset: {xv.shape} against y's {yv.shape}")
    if not np.all(np.isfinite(xv)):
        raise ValueError(f"x must be finite; got x[{_first_bad(~np.isfinite(xv))}] = {xv[~np.isfinite(xv)][0]}")
    k = yv.size
    if k < 3:
        raise ValueError(f"a meta-regression on one moderator needs at least 3 datasets; got {k}")
    if np.ptp(xv) == 0:
        raise ValueError("x is the same for every dataset: the slope cannot be estimated")
    design = np.column_stack([np.ones(k), xv])
    tau2, qe = tau2_moments(yv, var, design)
    if method == "reml":
        tau2 = _tau2_reml(yv, var, design, start=tau2)

    model = WLS(yv, design, weights=1.0 / (var + tau2))
    if interval == "hksj":
        res = model.fit()  # estimated scale sum w e**2 / (k - 2), t with k - 2 df: Knapp-Hartung
        df = k - 2
    elif interval == "hksj_floored":
        scale = max(1.0, float(model.fit().scale))  # Knapp & Hartung's s**2, floored at the Wald scale 1
        res = model.fit(cov_type="fixed scale", cov_kwds={"scale": scale}, use_t=True)
        df = k - 2
    else:
        res = model.fit(cov_type="fixed scale", cov_kwds={"scale": 1.0}, use_t=False)
        df = math.inf
    ci = np.asarray(res.conf_int(alpha=1.0 - ci_level))
    params, bse = np.asarray(res.params), np.asarray(res.bse)
    return MetaRegression(
        intercept=float(params[0]),
        intercept_se=float(bse[0]),
        slope=float(params[1]),
        slope_se=float(bse[1]),
        slope_ci_low=float(ci[1, 0]),
        slope_ci_high=float(ci[1, 1]),
        slope_p_value=_p_value(float(params[1]), float(bse[1]), df),
        df=df,
        tau2=tau2,
        qe=qe,
        k=k,
        method=method,
        interval=interval,
    )


def _check_effects(y, se) -> tuple[np.ndarray, np.ndarray]:
    """``y`` and the sampling variances ``se**2`` as float arrays, or a ValueError naming the problem."""
    yv = np.asarray(y, dtype=float)
    sv = np.asarray(se, dtype=float)
    if yv.ndim != 1 or sv.ndim != 1:
        raise ValueError(f"y and se must be 1-D; got shapes {yv.shape} and {sv.shape}")
    if yv.size != sv.size:
        raise ValueError(f"y and se must have the same length; got {yv.size} and {sv.size}")
    if yv.size == 0:
        raise ValueError("no estimates to pool: y and se are empty")
    if not np.all(np.isfinite(yv)):
        bad = ~np.isfinite(yv)
        raise ValueError(f"y must be finite; got y[{_first_bad(bad)}] = {yv[bad][0]}")
    if not np.all(np.isfinite(sv)):
        bad = ~np.isfinite(sv)
        raise ValueError(f"se must be finite; got se[{_first_bad(bad)}] = {sv[bad][0]}")
    if not np.all(sv > 0):
        bad = ~(sv > 0)
        raise ValueError(f"se must be positive; got se[{_first_bad(bad)}] = {sv[bad][0]}")
    return yv, sv**2


def _check_options(method: str, interval: str, ci_level: float) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}")
    if interval not in INTERVALS:
        raise ValueError(f"interval must be one of {INTERVALS}; got {interval!r}")
    if not (isinstance(ci_level, int | float) and 0.0 < ci_level < 1.0):
        raise ValueError(f"ci_level must be a number in (0, 1); got {ci_level!r}")


def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _p_value(estimate: float, se: float, df: float) -> float:
    """Two-sided p-value of ``estimate / se`` against t(df), or the normal distribution when df is inf."""
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = abs(np.float64(estimate) / np.float64(se))
    # scipy.special's distribution functions (what scipy.stats' norm.sf and t.sf evaluate, without their overhead)
    if math.isinf(df):
        return float(2 * special.ndtr(-stat))
    return float(2 * special.stdtr(df, -stat))


def _residual_projection(w: np.ndarray, design: np.ndarray) -> np.ndarray:
    """``P = W - W X (X' W X)^-1 X' W`` for ``W = diag(w)``: ``P y`` are the weighted residuals."""
    wx = design * w[:, None]
    return np.diag(w) - wx @ np.linalg.solve(design.T @ wx, wx.T)


def tau2_moments(y: np.ndarray, var: np.ndarray, design: np.ndarray, *, truncate: bool = True) -> tuple[float, float]:
    """Method-of-moments tau2 (DerSimonian & Laird 1986; Raudenbush 2009 with moderators) and ``Q_E``.

    ``tau2 = (Q_E - (k - p)) / tr(P)`` with ``P`` for the weights ``1 / var``; truncated at 0 unless
    ``truncate=False`` (the untruncated estimator is unbiased: ``E[Q_E] = k - p + tau2 tr(P)``).
    """
    proj = _residual_projection(1.0 / var, design)
    qe = float(y @ proj @ y)
    tau2 = (qe - (y.size - design.shape[1])) / float(np.trace(proj))
    return (max(0.0, tau2) if truncate else tau2), qe


def _tau2_reml(y: np.ndarray, var: np.ndarray, design: np.ndarray, *, start: float) -> float:
    """REML tau2 (Viechtbauer 2005): Fisher scoring on ``tau2 >= 0``, finished by Brent's method on the score.

    When the sampling variances differ a lot, the expected information is far from the observed one and
    full Fisher steps overshoot (the iterates alternate around the maximum) or crawl (towards a maximum at
    or near 0). So once two iterates bracket the root of the score (one with a positive, one with a
    negative score), or after ``_FISHER_STEPS`` steps without convergence, the root is bracketed and
    :func:`scipy.optimize.brentq` finds it. With a negative score at ``tau2 = 0`` the maximum on
    ``tau2 >= 0`` is 0.
    """
    scale = float(np.mean(var))

    def score(t: float) -> float:
        return _reml_score(y, var, design, t)[0]

    tau2 = max(0.0, float(start))
    below, above = -math.inf, math.inf  # largest tau2 seen with a positive score, smallest with a negative one
    for _ in range(_FISHER_STEPS):
        value, info = _reml_score(y, var, design, tau2)
        if value == 0.0:
            return tau2
        if value > 0:
            below = max(below, tau2)
        else:
            above = min(above, tau2)
        if math.isfinite(below) and math.isfinite(above):
            break
        new = max(0.0, tau2 + value / info)
        if abs(new - tau2) <= _REML_RTOL * (new + scale):
            return new
        tau2 = new
    if not math.isfinite(below):  # every score seen was negative: is the maximum at 0?
        if score(0.0) <= 0:
            return 0.0
        below = 0.0
    if not math.isfinite(above):  # every score seen was positive: look further up
        above = max(2.0 * below, scale)
        for _ in range(200):
            if score(above) < 0:
                break
            below, above = above, 2.0 * above
        else:
            raise RuntimeError(f"REML estimation of tau2: the restricted likelihood still rises at tau2 = {above:g}")
    lo, hi = min(below, above), max(below, above)
    return float(optimize.brentq(score, lo, hi, xtol=_REML_RTOL * scale, rtol=1e-12))


def _reml_score(y: np.ndarray, var: np.ndarray, design: np.ndarray, tau2: float) -> tuple[float, float]:
    """Twice the REML score ``y' P P y - tr(P)`` and twice the expected information ``tr(P P)`` at ``tau2``."""
    proj = _residual_projection(1.0 / (var + tau2), design)
    py = proj @ y
    return float(py @ py - np.trace(proj)), float(np.sum(proj * proj))
