"""ε of a finished DP-SGD run under several accountants, for the privacy card.

Opacus's RDP and PRV accountants are replayed from the run's (σ, q, steps); Google's ``dp-accounting``
PLD accountant is an independent implementation of the same Poisson-subsampled Gaussian composition.
"""

from __future__ import annotations

import math

import dp_accounting
from dp_accounting.pld import PLDAccountant
from dp_accounting.rdp import RdpAccountant
from opacus.accountants import PRVAccountant, RDPAccountant

#: Accountants the privacy card reports, and where each comes from.
CARD_ACCOUNTANTS = {
    "rdp": "Opacus RDPAccountant",
    "prv": "Opacus PRVAccountant (Gopi et al. 2021)",
    "pld": "Google dp-accounting PLDAccountant",
}


def _dp_event(noise_multiplier: float, sample_rate: float, steps: int) -> dp_accounting.DpEvent:
    gaussian = dp_accounting.GaussianDpEvent(noise_multiplier)
    return dp_accounting.SelfComposedDpEvent(dp_accounting.PoissonSampledDpEvent(sample_rate, gaussian), steps)


def epsilon_for(accountant: str, *, noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> float:
    """ε after ``steps`` Poisson-sampled Gaussian steps, under ``accountant`` (``rdp``, ``prv``, ``pld``, ``rdp_google``).

    Example:
        >>> e = {a: epsilon_for(a, noise_multiplier=1.0, sample_rate=0.01, steps=1000, delta=1e-5)
        ...      for a in ("rdp", "prv", "pld")}
        >>> abs(e["prv"] - e["pld"]) < 0.05 and e["rdp"] > e["pld"]
        True
    """
    if noise_multiplier <= 0:
        return math.inf
    if steps == 0:
        return 0.0
    if accountant in ("rdp", "prv"):
        acc = RDPAccountant() if accountant == "rdp" else PRVAccountant()
        acc.history = [(noise_multiplier, sample_rate, steps)]
        return float(acc.get_epsilon(delta))
    if accountant == "pld":
        acc = PLDAccountant(value_discretization_interval=1e-4)
    elif accountant == "rdp_google":
        acc = RdpAccountant()
    else:
        raise ValueError(f"unknown accountant {accountant!r}; use one of rdp, prv, pld, rdp_google")
    acc.compose(_dp_event(noise_multiplier, sample_rate, steps))
    return float(acc.get_epsilon(delta))


def epsilons_for_card(*, noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> dict[str, float]:
    """``{"epsilon_rdp": …, "epsilon_prv": …, "epsilon_pld": …}`` for one run."""
    return {
        f"epsilon_{name}": epsilon_for(name, noise_multiplier=noise_multiplier, sample_rate=sample_rate, steps=steps, delta=delta)
        for name in CARD_ACCOUNTANTS
    }
