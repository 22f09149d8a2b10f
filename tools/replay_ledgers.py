"""Replay every privacy card's ledger with Google's dp-accounting alone, and check it against its target ε.

    python tools/replay_ledgers.py results/runs            # every privacy_card.json under a folder
    python tools/replay_ledgers.py path/to/privacy_card.json

Deliberately imports nothing from dpfair: the card's JSON ledger (``{"type": "<DpEvent class>", field: value,
...}``, nested events under their field names) is rebuilt into dp-accounting's own event classes and composed
by its PLD accountant where that accountant supports the events (DP-SGD, label randomisation, the composed
trials of a privately tuned run), else by its RDP accountant, under the card's ``neighboring_relation``. A
claim of dpfair's that this script cannot confirm is a privacy bug. A record-level federated card (``fed_dpsgd``) also
lists one ledger per site (``federated.sites``): each is replayed, and the card's claim is the largest. Prints one line
per card and exits 1 if any replayed ε exceeds the card's ``target_epsilon``.
"""

from __future__ import annotations

import json
import math
import sys
from importlib import metadata
from pathlib import Path

import dp_accounting
from dp_accounting import dp_event
from dp_accounting.pld import PLDAccountant
from dp_accounting.rdp import RdpAccountant


def build(data: dict) -> dp_accounting.DpEvent:
    """A dp-accounting event from its JSON form (nested events and lists of events included)."""
    fields = dict(data)
    name = fields.pop("type")
    cls = getattr(dp_event, name, None)
    if not (isinstance(cls, type) and issubclass(cls, dp_event.DpEvent)):
        raise ValueError(f"not a dp-accounting event type: {name!r}")
    for key, value in fields.items():
        if isinstance(value, dict) and "type" in value:
            fields[key] = build(value)
        elif isinstance(value, list) and value and all(isinstance(v, dict) and "type" in v for v in value):
            fields[key] = [build(v) for v in value]
    return cls(**fields)


def replay(event: dp_accounting.DpEvent, delta: float, relation: str = "add_or_remove_one") -> tuple[float, str]:
    """(ε at ``delta``, accountant): PLD where it supports every event, else RDP, under the card's
    neighbouring relation (``replace_one`` for label DP: neighbours differ in one label)."""
    neighbours = dp_accounting.NeighboringRelation[relation.upper()]
    pld = PLDAccountant(neighboring_relation=neighbours)
    if pld.supports(event):
        pld.compose(event)
        return float(pld.get_epsilon(delta)), "pld"
    rdp = RdpAccountant(neighboring_relation=neighbours)
    rdp.compose(event)
    return float(rdp.get_epsilon(delta)), "rdp"


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        return 2
    cards = []
    for arg in argv:
        path = Path(arg)
        cards += sorted(path.rglob("privacy_card.json")) if path.is_dir() else [path]
    over, replayed = [], 0
    for path in cards:
        card = json.loads(path.read_text())
        if not card.get("ledger"):
            if math.isfinite(float(card.get("target_epsilon", math.inf))):  # a private claim with nothing to replay
                print(f"OVER {path}: target epsilon {card['target_epsilon']} but no ledger")
                over.append(path)
            continue  # a non-private run claims nothing
        relation = card.get("neighboring_relation", "add_or_remove_one")
        epsilon, accountant = replay(build(card["ledger"]), float(card["delta"]), relation)
        sites = (card.get("federated") or {}).get("sites") or []
        if sites:  # every site's ledger: the claim is the largest
            replays = [(*replay(build(s["ledger"]), float(card["delta"]), relation), s["site"]) for s in sites]
            site_epsilon, site_accountant, name = max(replays, key=lambda r: r[0])
            if site_epsilon >= epsilon:
                epsilon = site_epsilon
                accountant = f"{site_accountant} (site {name}, the largest of {len(sites)} site ledgers)"
        target = float(card["target_epsilon"])
        replayed += 1
        ok = epsilon <= target * (1 + 1e-9)
        print(
            f"{'ok  ' if ok else 'OVER'} {path}: {card.get('method', '?')}, unit {card.get('unit', '?')} "
            f"(n = {card.get('n_units', '?')}), delta {card['delta']:g}: {accountant} epsilon {epsilon:.4f} <= target {target:g}"
            if ok
            else f"OVER {path}: {accountant} epsilon {epsilon:.4f} > target {target:g}"
        )
        if not ok:
            over.append(path)
    print(
        f"{replayed} ledgers replayed with dp-accounting {metadata.version('dp-accounting')}; {len(over)} over target"
    )
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
