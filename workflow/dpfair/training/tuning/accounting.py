"""The privacy cost of private hyperparameter tuning, and the per-trial noise that keeps it within ε.

The procedure (Papernot & Steinke, "Hyperparameter Tuning with Renyi Differential Privacy", ICLR 2022):
draw the number of trials K from a truncated negative binomial distribution with shape η = 1 (a geometric
distribution on K ≥ 1 with mean μ, P(K = k) = (1/μ)(1 - 1/μ)^(k-1)), run K trials each with hyperparameters
drawn from a public distribution, and release only the best trial by a score on data outside the guarantee
(the validation split). Their Theorem 2 bounds the procedure's RDP from the per-trial RDP curve; Google's
dp-accounting implements it as ``RepeatAndSelectDpEvent(event, mean, shape)`` in its ``RdpAccountant``
only (its PLD accountant does not support the event), so a tuned run's ledger is replayed with RDP.

Trials differ in batch size and epochs, so their DP-SGD events differ. One trial is the mixture over the
drawn hyperparameters h of the runs M_h, and Rényi divergence is jointly quasi-convex, so the mixture's RDP
at each order is at most max_h of the runs' RDP at that order. Each trial's σ_h is therefore calibrated
so that its RDP curve lies at or below a reference trial event's curve at every order of :data:`ORDERS`,
and the reference event's σ so that ``RepeatAndSelect(reference, μ, 1)`` reaches the target ε. The ledger
holds the repeat-and-select event of the reference; each trial's own event is recorded beside it and
re-checked after the trial ran (:func:`check_dominated`).

Why the order grid is fixed: fractional orders near 1 make dp-accounting's subsampled-Gaussian RDP slow
(about 0.8 s per event) and often fail to converge; integer orders are exact and fast (about 50 ms), and a
replay with dp-accounting's default grid, a superset of finer orders, can only give a smaller ε.
"""

from __future__ import annotations

import math

import dp_accounting
import numpy as np
from dp_accounting.dp_event import RepeatAndSelectDpEvent
from dp_accounting.rdp import RdpAccountant

from dpfair.errors import PrivacyError
from dpfair.privacy.ledger import poisson_gaussian

#: RDP orders of the tuning accountant (integer orders: exact and fast for the subsampled Gaussian).
ORDERS: tuple[float, ...] = tuple(range(2, 33)) + (40, 48, 56, 64, 80, 96, 128, 192, 256, 512)
#: Shape η of the truncated negative binomial number of trials: 1 is the geometric distribution.
SHAPE = 1.0
DISTRIBUTION = "geometric on K >= 1 (truncated negative binomial, shape 1; Papernot & Steinke 2022)"


def procedure_event(trial_event: dp_accounting.DpEvent, *, mean_trials: float) -> dp_accounting.DpEvent:
    """The ledger of the whole procedure: ``RepeatAndSelect(trial_event, mean, shape=1)``."""
    return RepeatAndSelectDpEvent(trial_event, float(mean_trials), SHAPE)


def _accountant(event: dp_accounting.DpEvent) -> RdpAccountant:
    acc = RdpAccountant(orders=list(ORDERS))
    acc.compose(event)
    return acc


def rdp_curve(event: dp_accounting.DpEvent) -> np.ndarray:
    """RDP of ``event`` at each of :data:`ORDERS` (dp-accounting's RdpAccountant)."""
    return np.asarray(_accountant(event)._rdp, dtype=float)


def procedure_epsilon(event: dp_accounting.DpEvent, *, delta: float) -> float:
    """ε at ``delta`` of an event (typically a repeat-and-select) under dp-accounting's RDP on :data:`ORDERS`."""
    return float(_accountant(event).get_epsilon(delta))


def _bisect_sigma(ok, *, lo: float = 0.05, hi: float = 200.0, rel: float = 1e-3) -> float:
    """Smallest σ in [lo, hi] (to ``rel``) with ``ok(σ)``; ``ok`` must be monotone (false below, true above)."""
    if not ok(hi):
        raise PrivacyError(f"no noise multiplier up to {hi} meets the tuning budget")
    if ok(lo):
        return lo
    while hi / lo > 1 + rel:
        mid = math.sqrt(lo * hi)
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi


def calibrate_reference(*, epsilon: float, delta: float, sample_rate: float, steps: int, mean_trials: float) -> float:
    """σ of the reference trial so that the repeat-and-select procedure reaches at most ``epsilon``.

    Example:
        >>> s = calibrate_reference(epsilon=3.0, delta=1e-5, sample_rate=0.05, steps=200, mean_trials=3)
        >>> e = procedure_event(poisson_gaussian(noise_multiplier=s, sample_rate=0.05, steps=200), mean_trials=3)
        >>> 2.9 < procedure_epsilon(e, delta=1e-5) <= 3.0
        True
    """

    def ok(sigma):
        event = procedure_event(
            poisson_gaussian(noise_multiplier=sigma, sample_rate=sample_rate, steps=steps), mean_trials=mean_trials
        )
        return procedure_epsilon(event, delta=delta) <= epsilon

    return _bisect_sigma(ok)


def calibrate_dominated(reference: np.ndarray, *, sample_rate: float, steps: int) -> float:
    """Smallest σ (to 0.1%) whose DP-SGD event's RDP is at or below ``reference`` at every order."""

    def ok(sigma):
        return bool(
            np.all(
                rdp_curve(poisson_gaussian(noise_multiplier=sigma, sample_rate=sample_rate, steps=steps))
                <= reference * (1 + 1e-12)
            )
        )

    return _bisect_sigma(ok)


def check_dominated(event: dp_accounting.DpEvent, reference: np.ndarray) -> None:
    """Raise :class:`PrivacyError` unless ``event``'s RDP is at or below ``reference`` at every order."""
    curve = rdp_curve(event)
    if not bool(np.all(curve <= reference * (1 + 1e-9))):
        worst = int(np.argmax(curve - reference))
        raise PrivacyError(
            f"a tuning trial's RDP at order {ORDERS[worst]} is {curve[worst]:.6g}, above the reference "
            f"{reference[worst]:.6g} the procedure's ledger accounts for"
        )
