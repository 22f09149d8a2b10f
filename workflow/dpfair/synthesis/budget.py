"""The synthesizer's budget in zero-concentrated DP, and its ledger as dp-accounting events.

MST (McKenna, Miklau, Sheldon 2021) and AIM (McKenna, Mullins, Sheldon, Miklau 2022) spend a ρ-zCDP budget
(Bun & Steinke 2016) on two kinds of step: Gaussian measurements of marginal counts and exponential-mechanism
selections of which marginal to measure next. smartnoise-synth converts the target (ε, δ) to ρ with OpenDP;
here dp-accounting does it, so the ρ a synthesizer is handed is one our independent accountant certifies:
:func:`zcdp_budget` is the largest ρ whose ``ZCDpEvent`` dp-accounting's RDP accountant replays to at most ε
at δ (a bisection; the accountant is the reference, so the result is checked by replaying it).

The ledger (:func:`release_event`) is built from the noise the synthesizer actually drew, one entry per call
(``workflow/scripts/synthesize.py`` records them):

- a Gaussian measurement of a marginal with noise scale σ is ``GaussianDpEvent(σ)``: under add or remove one
  row a marginal's counts change by 1 in one cell, L2 sensitivity 1;
- an exponential-mechanism selection at ε₀ (quality sensitivity Δ, probabilities ∝ exp(ε₀ q / 2Δ)) is
  ε₀-DP and, being bounded-range, ε₀²/8-zCDP (Cesar & Rogers 2021, Lemma 3.2), ``ZCDpEvent(ε₀²/8)``.

Only the RDP accountant replays ``ZCDpEvent``; PLD refuses it (a zCDP bound is no privacy-loss
distribution), so a synthesis ledger's ε is dp-accounting's RDP figure.
"""

from __future__ import annotations

import dp_accounting
from dp_accounting import dp_event
from dp_accounting.rdp import RdpAccountant

from dpfair.errors import PrivacyError

#: The synthesizer is handed this much less than the bisection's ρ, so rounding in its own book-keeping
#: (AIM spends "what remains" in its last round) cannot carry the replay above the target.
RHO_MARGIN = 1e-9


def zcdp_epsilon(rho: float, delta: float) -> float:
    """ε at ``delta`` of ρ-zCDP, by dp-accounting's RDP accountant (add or remove one)."""
    acc = RdpAccountant(neighboring_relation=dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE)
    acc.compose(dp_event.ZCDpEvent(rho))
    return float(acc.get_epsilon(delta))


def zcdp_budget(epsilon: float, delta: float, *, iterations: int = 100) -> float:
    """The largest ρ that dp-accounting replays to at most ``epsilon`` at ``delta``, less :data:`RHO_MARGIN`.

    Example:
        >>> rho = zcdp_budget(1.0, 1e-5)
        >>> 0.02 < rho < 0.04 and zcdp_epsilon(rho, 1e-5) <= 1.0
        True
    """
    if not (epsilon > 0 and 0 < delta < 1):
        raise PrivacyError(f"a synthesis budget needs ε > 0 and 0 < δ < 1, not ε = {epsilon}, δ = {delta}")
    lo, hi = 0.0, 1.0
    while zcdp_epsilon(hi, delta) <= epsilon:
        lo, hi = hi, 2 * hi
    for _ in range(iterations):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if zcdp_epsilon(mid, delta) <= epsilon else (lo, mid)
        if hi - lo <= 1e-12 * hi:
            break
    return lo * (1 - RHO_MARGIN)


def release_event(noise_log: list[dict]) -> dp_accounting.DpEvent:
    """The ledger of one synthesis: its recorded noise draws as dp-accounting events, composed.

    ``noise_log`` entries are ``{"kind": "gaussian", "sigma": σ, "size": cells}`` (one marginal measured) or
    ``{"kind": "exponential", "epsilon": ε₀}`` (one selection).

    Example:
        >>> event = release_event([{"kind": "gaussian", "sigma": 2.0, "size": 8}, {"kind": "exponential", "epsilon": 0.4}])
        >>> [type(e).__name__ for e in event.events], round(event.events[1].rho, 6)
        (['GaussianDpEvent', 'ZCDpEvent'], 0.02)
    """
    events: list[dp_accounting.DpEvent] = []
    for entry in noise_log:
        if entry["kind"] == "gaussian":
            if not entry["sigma"] > 0:
                raise PrivacyError(f"a synthesis measurement was taken without noise (σ = {entry['sigma']})")
            events.append(dp_accounting.GaussianDpEvent(float(entry["sigma"])))
        elif entry["kind"] == "exponential":
            events.append(dp_event.ZCDpEvent(float(entry["epsilon"]) ** 2 / 8))
        else:
            raise PrivacyError(f"unknown synthesis noise entry {entry!r}")
    return dp_accounting.ComposedDpEvent(events)


def spent_rho(noise_log: list[dict]) -> float:
    """The zCDP ρ the recorded draws add up to (what the synthesizer's own book-keeping should not exceed)."""
    total = 0.0
    for entry in noise_log:
        total += 0.5 / entry["sigma"] ** 2 if entry["kind"] == "gaussian" else entry["epsilon"] ** 2 / 8
    return total
