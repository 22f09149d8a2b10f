"""How a tuned arm is named: method ``m`` tuned privately runs as ``m-tuned`` (its own run folders)."""

from __future__ import annotations

#: Methods private tuning supports (their σ can be set per trial and their ledger is a Poisson-subsampled Gaussian).
TUNABLE: tuple[str, ...] = ("dpsgd",)
SUFFIX = "-tuned"


def tuned_methods(methods: list[str]) -> list[str]:
    """The tuned arms of ``methods`` (those in :data:`TUNABLE`).

    Example:
        >>> tuned_methods(["dpsgd", "label_rr"])
        ['dpsgd-tuned']
    """
    return [m + SUFFIX for m in methods if m in TUNABLE]


def split_method(name: str) -> tuple[str, bool]:
    """``(mechanism, tuned)`` of a run's method name.

    Example:
        >>> split_method("dpsgd-tuned"), split_method("dpsgd")
        (('dpsgd', True), ('dpsgd', False))
    """
    if name.endswith(SUFFIX):
        return name[: -len(SUFFIX)], True
    return name, False
