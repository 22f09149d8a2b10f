"""The privacy ledger: what a private run spent, as dp-accounting ``DpEvent``s, and ε by replaying it.

A run's ledger is one ``DpEvent`` (usually composed), stored in its privacy card as JSON:
``{"type": "<DpEvent class name>", <field>: value, ...}`` with nested events under their field names
(``event``, ``events``), e.g. ``SelfComposedDpEvent(PoissonSampledDpEvent(q, GaussianDpEvent(σ)), steps)``.
The card keeps the neighbouring relation beside it (``add_or_remove_one`` for DP-SGD over records or
patients, ``replace_one`` for label privacy, where neighbours differ in one label).

ε is never taken from the training loop's own bookkeeping alone: it is replayed from the ledger under
Google's dp-accounting (PLD and RDP) and, where the events are a Poisson-subsampled Gaussian, Opacus's
PRV and RDP accountants (which calibrated σ). Nothing downstream needs to know what σ is.
"""

from __future__ import annotations

import functools
import json
import math

import attrs
import dp_accounting
from dp_accounting import dp_event
from dp_accounting.pld import PLDAccountant
from dp_accounting.rdp import RdpAccountant
from opacus.accountants import PRVAccountant, RDPAccountant

from dpfair.errors import PrivacyError

#: Accountants a ledger is replayed under, and where each comes from.
ACCOUNTANTS = {
    "rdp": "Opacus RDPAccountant",
    "prv": "Opacus PRVAccountant (Gopi et al. 2021)",
    "pld": "Google dp-accounting PLDAccountant",
    "rdp_google": "Google dp-accounting RdpAccountant",
}
#: PLD discretisation: fine enough that PLD matches PRV to about 1e-3 on this grid.
PLD_DISCRETIZATION = 1e-4
RELATIONS = {
    "add_or_remove_one": dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE,
    "replace_one": dp_accounting.NeighboringRelation.REPLACE_ONE,
}
# dp_event holds every event class; the package top level re-exports only some (not RepeatAndSelectDpEvent,
# the ledger of private tuning)
_EVENT_TYPES = {
    name: getattr(dp_event, name)
    for name in dir(dp_event)
    if name.endswith("DpEvent")
    and isinstance(getattr(dp_event, name), type)
    and issubclass(getattr(dp_event, name), dp_accounting.DpEvent)
}


def event_to_json(event: dp_accounting.DpEvent) -> dict:
    """A ``DpEvent`` as plain JSON: its class name under ``type``, its fields, nested events as objects.

    Example:
        >>> e = dp_accounting.SelfComposedDpEvent(
        ...     dp_accounting.PoissonSampledDpEvent(0.01, dp_accounting.GaussianDpEvent(1.1)), 300)
        >>> event_to_json(e)
        {'type': 'SelfComposedDpEvent', 'event': {'type': 'PoissonSampledDpEvent', 'sampling_probability': 0.01, 'event': {'type': 'GaussianDpEvent', 'noise_multiplier': 1.1}}, 'count': 300}
        >>> event_from_json(event_to_json(e)) == e
        True
    """
    if not isinstance(event, dp_accounting.DpEvent):
        raise TypeError(f"not a DpEvent: {event!r}")
    out: dict = {"type": type(event).__name__}
    for f in attrs.fields(type(event)):
        value = getattr(event, f.name)
        if isinstance(value, dp_accounting.DpEvent):
            value = event_to_json(value)
        elif isinstance(value, (list, tuple)):
            value = [event_to_json(v) if isinstance(v, dp_accounting.DpEvent) else v for v in value]
        elif isinstance(value, float) and not math.isfinite(value):
            value = str(value)
        out[f.name] = value
    return out


def event_from_json(data: dict) -> dp_accounting.DpEvent:
    """Rebuild a ``DpEvent`` from :func:`event_to_json`'s output (dp-accounting classes only)."""
    if not isinstance(data, dict) or "type" not in data:
        raise PrivacyError(f"ledger entry is not an event object with a 'type': {data!r}")
    cls = _EVENT_TYPES.get(data["type"])
    if cls is None:
        raise PrivacyError(f"ledger: unknown event type {data['type']!r}; known: {sorted(_EVENT_TYPES)}")
    kwargs = {}
    for f in attrs.fields(cls):
        if f.name not in data:
            raise PrivacyError(f"ledger: {data['type']} lacks field {f.name!r}")
        value = data[f.name]
        if value in ("inf", "-inf", "nan"):  # event_to_json writes non-finite floats as strings
            value = float(value)
        elif isinstance(value, dict) and "type" in value:
            value = event_from_json(value)
        elif isinstance(value, list):
            value = [event_from_json(v) if isinstance(v, dict) else v for v in value]
        kwargs[f.name] = value
    return cls(**kwargs)


def poisson_gaussian(*, noise_multiplier: float, sample_rate: float, steps: int) -> dp_accounting.DpEvent:
    """DP-SGD's ledger: ``steps`` compositions of a Poisson-subsampled Gaussian (record or patient units)."""
    return dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(float(sample_rate), dp_accounting.GaussianDpEvent(float(noise_multiplier))),
        int(steps),
    )


def _poisson_gaussian_parts(event) -> list[tuple[float, float, int]] | None:
    """``[(σ, q, steps), ...]`` if the ledger is only Poisson-subsampled Gaussians (what Opacus can replay)."""
    if isinstance(event, dp_accounting.NoOpDpEvent):
        return []
    if isinstance(event, dp_accounting.ComposedDpEvent):
        parts = [_poisson_gaussian_parts(e) for e in event.events]
        return None if any(p is None for p in parts) else [x for p in parts for x in p]
    count = 1
    if isinstance(event, dp_accounting.SelfComposedDpEvent):
        event, count = event.event, int(event.count)
    if isinstance(event, dp_accounting.PoissonSampledDpEvent) and isinstance(
        event.event, dp_accounting.GaussianDpEvent
    ):
        return [(float(event.event.noise_multiplier), float(event.sampling_probability), count)]
    return None


def supported_accountants(event: dp_accounting.DpEvent, *, relation: str = "add_or_remove_one") -> list[str]:
    """The accountants of :data:`ACCOUNTANTS` that can replay ``event`` under ``relation``."""
    out = []
    if relation == "add_or_remove_one" and _poisson_gaussian_parts(event) is not None:
        out += ["rdp", "prv"]
    for name in ("pld", "rdp_google"):
        if _google(name, relation).supports(event):
            out.append(name)
    return [a for a in ACCOUNTANTS if a in out]


def _google(name: str, relation: str):
    rel = RELATIONS[relation]
    if name == "pld":
        return PLDAccountant(rel, value_discretization_interval=PLD_DISCRETIZATION)
    return RdpAccountant(neighboring_relation=rel)


def replay_epsilon(
    ledger: dp_accounting.DpEvent | dict, *, accountant: str, delta: float, relation: str = "add_or_remove_one"
) -> float:
    """ε at ``delta`` of the ledger under ``accountant`` (``rdp``, ``prv``, ``pld``, ``rdp_google``).

    NaN where the accountant cannot replay these events (Opacus's need Poisson-subsampled Gaussians).

    Example:
        >>> e = poisson_gaussian(noise_multiplier=1.0, sample_rate=0.01, steps=1000)
        >>> eps = {a: replay_epsilon(e, accountant=a, delta=1e-5) for a in ("rdp", "prv", "pld")}
        >>> abs(eps["prv"] - eps["pld"]) < 0.05 and eps["rdp"] > eps["pld"]
        True
    """
    if relation not in RELATIONS:
        raise PrivacyError(f"unknown neighbouring relation {relation!r}; known: {sorted(RELATIONS)}")
    if accountant not in ACCOUNTANTS:
        raise ValueError(f"unknown accountant {accountant!r}; use one of {list(ACCOUNTANTS)}")
    data = ledger if isinstance(ledger, dict) else event_to_json(ledger)
    try:
        key = json.dumps(data, sort_keys=True)
    except TypeError:  # a value JSON cannot hold exactly (a NumPy integer): replayed as given, not cached
        return _replay_event(event_from_json(data), accountant, float(delta), relation)
    return _replay(key, accountant, float(delta), relation)


@functools.lru_cache(maxsize=4096)
def _replay(ledger: str, accountant: str, delta: float, relation: str) -> float:
    """:func:`replay_epsilon` of a ledger in its JSON form, which is all the answer depends on.

    Cached because one process replays the same ledger many times: the seeds of a cell share σ, q and steps,
    so their per-epoch ε, their final ε and their privacy cards' three accountants are the same numbers
    (a cold PRV or PLD replay of a default-grid ledger took 0.06–1 s on a 2-core CPU, a cached one 0.1 ms). The key is the ledger exactly as the run records it, so two ledgers
    that differ in any event, count or parameter never share an answer.
    """
    return _replay_event(event_from_json(json.loads(ledger)), accountant, delta, relation)


def _replay_event(event: dp_accounting.DpEvent, accountant: str, delta: float, relation: str) -> float:
    if accountant in ("rdp", "prv"):
        parts = _poisson_gaussian_parts(event) if relation == "add_or_remove_one" else None
        if parts is None:
            return math.nan
        parts = [p for p in parts if p[2] > 0]
        if not parts:
            return 0.0
        if any(sigma <= 0 for sigma, _, _ in parts):
            return math.inf
        acc = RDPAccountant() if accountant == "rdp" else PRVAccountant()
        acc.history = list(parts)
        return float(acc.get_epsilon(delta))
    acc = _google(accountant, relation)
    if not acc.supports(event):
        return math.nan
    acc.compose(event)
    return float(acc.get_epsilon(delta))


def ledger_gaussians(ledger: dp_accounting.DpEvent | dict) -> list[tuple[float, float, int]]:
    """The ledger's Poisson-subsampled Gaussian parts as ``(σ, q, steps)`` (empty if it has none)."""
    event = event_from_json(ledger) if isinstance(ledger, dict) else ledger
    return _poisson_gaussian_parts(event) or []


def ledger_steps_and_rates(ledger: dp_accounting.DpEvent | dict) -> tuple[int, list[float]]:
    """Total Poisson-sampled steps in the ledger and the sampling rates they used (for the card's checks)."""
    event = event_from_json(ledger) if isinstance(ledger, dict) else ledger
    parts = _poisson_gaussian_parts(event) or []
    return sum(n for _, _, n in parts), sorted({q for _, q, _ in parts})


# --- the (σ, q, steps) shorthand, for callers that hold a Poisson-subsampled Gaussian run rather than a ledger
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
        f"epsilon_{name}": epsilon_for(
            name, noise_multiplier=noise_multiplier, sample_rate=sample_rate, steps=steps, delta=delta
        )
        for name in CARD_ACCOUNTANTS
    }
