"""ε of a Poisson-subsampled Gaussian run under several accountants: a shorthand over ``dpfair.ledger``.

Kept for callers that hold (σ, q, steps) rather than a ledger; the privacy card replays the ledger itself.
"""

from __future__ import annotations

import math

from dpfair.ledger import ACCOUNTANTS, poisson_gaussian, replay_epsilon

#: Accountants the privacy card reports, and where each comes from.
CARD_ACCOUNTANTS = {k: ACCOUNTANTS[k] for k in ("rdp", "prv", "pld")}


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
    if accountant not in ACCOUNTANTS:
        raise ValueError(f"unknown accountant {accountant!r}; use one of rdp, prv, pld, rdp_google")
    event = poisson_gaussian(noise_multiplier=noise_multiplier, sample_rate=sample_rate, steps=steps)
    return replay_epsilon(event, accountant=accountant, delta=delta)


def epsilons_for_card(*, noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> dict[str, float]:
    """``{"epsilon_rdp": …, "epsilon_prv": …, "epsilon_pld": …}`` for one run."""
    return {
        f"epsilon_{name}": epsilon_for(name, noise_multiplier=noise_multiplier, sample_rate=sample_rate, steps=steps, delta=delta)
        for name in CARD_ACCOUNTANTS
    }
