"""What a run spends and states: ε and δ, the ledger of DpEvents and its replay, the privacy card.

Clipping maths (policies, adaptive thresholds, the book-keeping clipper and its per-layer rules) is in
:mod:`dpfair.privacy.clipping`. Nothing here knows how a run is shaped; :mod:`dpfair.training` does.
"""

from dpfair.faces import lazy_face

__all__, __getattr__, __dir__ = lazy_face(
    __name__,
    {
        "default_delta": "params",
        "resolve_delta": "params",
        "check_accountant": "params",
        "is_private": "params",
        "format_epsilon": "params",
        "parse_epsilon": "params",
        "ACCOUNTANTS": "ledger",
        "event_to_json": "ledger",
        "event_from_json": "ledger",
        "poisson_gaussian": "ledger",
        "replay_epsilon": "ledger",
        "supported_accountants": "ledger",
        "epsilon_for": "ledger",
        "build_privacy_card": "card",
        "check_privacy_card": "card",
    },
)
