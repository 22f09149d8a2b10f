"""The privacy cost of private hyperparameter tuning: a fixed, public number of trials, composed.

Why not a random number of trials. Papernot & Steinke ("Hyperparameter Tuning with Renyi Differential
Privacy", ICLR 2022, Thm 2; dp-accounting's ``RepeatAndSelectDpEvent``) bound the release of the single
best trial when the number of trials K is random and never revealed. A benchmark has to publish what it
ran: K shows in the run record, in the log, in how long the job took, and in the ε = ∞ arm given equal
effort; once K = k is known the release is best-of-k, whose worst case is the k-fold composition. So
dpfair runs a fixed, public K (``tuning.trials``) and charges the procedure as the composition of every
trial it ran (``ComposedDpEvent`` of the trials' DP-SGD events, replayed by dp-accounting's PLD
accountant). Every trial is then covered and publishable (its recipe, σ and validation score), and the
selection on the validation split, outside the guarantee, is post-processing of released trials.

How the budget is shared. Trials differ in batch size and epochs. Each trial gets an equal share in the
sense of the central limit theorem for DP-SGD (Bu, Dong, Long & Su, "Deep Learning with Gaussian
Differential Privacy", HDSR 2020: T steps of a Poisson-subsampled Gaussian at rate q are about
μ-GDP with μ = q·sqrt(T·(exp(σ⁻²) − 1))): trial h's σ_h is the σ that makes its μ equal a common μ_t, and
μ_t is the largest for which the PLD of the whole composition is within the target
(``dp_accounting.calibrate_dp_mechanism``). The CLT only shares the budget out; the bound is the PLD of
the exact events.
"""

from __future__ import annotations

import math
from collections import Counter

import dp_accounting
from dp_accounting import mechanism_calibration
from dp_accounting.pld import PLDAccountant

from dpfair.errors import PrivacyError
from dpfair.privacy.ledger import PLD_DISCRETIZATION, poisson_gaussian

#: What the card says of the number of trials.
DISTRIBUTION = "fixed and public (tuning.trials): the ledger composes every trial run"


def clt_sigma(mu: float, *, sample_rate: float, steps: int) -> float:
    """σ at which ``steps`` Poisson-subsampled Gaussian steps at ``sample_rate`` are about ``mu``-GDP (Bu et al. 2020).

    Example:
        >>> s = clt_sigma(0.5, sample_rate=0.01, steps=1000)
        >>> round(0.01 * math.sqrt(1000 * (math.exp(s ** -2) - 1)), 6)
        0.5
    """
    return 1.0 / math.sqrt(math.log1p(mu**2 / (sample_rate**2 * steps)))


def procedure_event(trials: list[tuple[float, float, int]]) -> dp_accounting.DpEvent:
    """The ledger of the whole procedure: the composition of its trials' events, ``[(σ, q, steps), ...]`` in order."""
    return dp_accounting.ComposedDpEvent(
        [poisson_gaussian(noise_multiplier=s, sample_rate=q, steps=n) for s, q, n in trials]
    )


def _pld_epsilon(event: dp_accounting.DpEvent, delta: float) -> float:
    acc = PLDAccountant(value_discretization_interval=PLD_DISCRETIZATION)
    acc.compose(event)
    return float(acc.get_epsilon(delta))


def _grouped(trials: list[tuple[float, float, int]]) -> dp_accounting.DpEvent:
    """The same composition with repeated trials folded into one self-composition (faster PLD)."""
    return dp_accounting.ComposedDpEvent(
        [
            dp_accounting.SelfComposedDpEvent(poisson_gaussian(noise_multiplier=s, sample_rate=q, steps=n), count)
            for (s, q, n), count in Counter(trials).items()
        ]
    )


def procedure_epsilon(trials: list[tuple[float, float, int]], *, delta: float) -> float:
    """ε at ``delta`` of the composition of ``trials`` under dp-accounting's PLD accountant."""
    return _pld_epsilon(_grouped(trials), delta)


def calibrate_trials(plans: list[tuple[float, int]], *, epsilon: float, delta: float) -> list[float]:
    """σ for each trial ``(q, steps)`` so the composition of all of them spends at most ``epsilon``.

    Example:
        >>> plans = [(0.1, 100), (0.2, 60)]
        >>> sigmas = calibrate_trials(plans, epsilon=3.0, delta=1e-5)
        >>> 2.9 < procedure_epsilon([(s, q, n) for s, (q, n) in zip(sigmas, plans)], delta=1e-5) <= 3.0
        True
    """
    if not plans:
        raise PrivacyError("private tuning needs at least one trial")

    def sigmas(mu: float) -> list[float]:
        return [clt_sigma(mu, sample_rate=q, steps=n) for q, n in plans]

    def event(mu: float) -> dp_accounting.DpEvent:
        return _grouped([(s, q, n) for s, (q, n) in zip(sigmas(mu), plans)])

    mu = mechanism_calibration.calibrate_dp_mechanism(
        lambda: PLDAccountant(value_discretization_interval=PLD_DISCRETIZATION),
        event,
        float(epsilon),
        float(delta),
        mechanism_calibration.LowerEndpointAndGuess(1e-4, 0.5),
        tol=1e-4,
    )
    out = sigmas(float(mu))
    spent = procedure_epsilon([(s, q, n) for s, (q, n) in zip(out, plans)], delta=delta)
    if not spent <= epsilon:  # calibrate_dp_mechanism promises this; the ledger is replayed again later
        raise PrivacyError(f"tuning calibration spent epsilon {spent:.4f}, above the target {epsilon}")
    return out
