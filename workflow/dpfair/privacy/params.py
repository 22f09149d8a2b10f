"""Privacy parameters: δ relative to the training-set size, accountant choice, and their checks.

A wrong ε is a security bug in this product, so every check here raises instead of warning.
"""

from __future__ import annotations

import math

from dpfair.errors import ConfigError, PrivacyError

#: Accountants we allow. Opacus's GDP accountant under-reports ε (19% at target 3 on this stack), so
#: it is refused rather than offered.
ACCOUNTANTS: tuple[str, ...] = ("prv", "rdp")
DEFAULT_ACCOUNTANT = "prv"


def default_delta(n_train: int) -> float:
    """The largest power of ten at most ``1 / (10 · n_train)``, the usual δ ≪ 1/n choice.

    Example:
        >>> default_delta(6373), default_delta(1000)
        (1e-05, 0.0001)
    """
    if n_train < 1:
        raise PrivacyError(f"n_train must be positive to set delta, got {n_train}")
    return 10.0 ** math.floor(math.log10(1.0 / (10 * n_train)))


def resolve_delta(delta: float | str | None, n_train: int, *, where: str = "privacy.delta") -> float:
    """Turn the config's δ (a number or ``"auto"``) into a value, refusing δ ≥ 1/n_train.

    With δ ≥ 1/n a mechanism that publishes one random training record outright satisfies
    (0, δ)-DP, so such an ε means nothing.
    """
    if delta in (None, "auto"):
        return default_delta(n_train)
    delta = float(delta)
    if not 0 < delta < 1.0 / n_train:
        raise ConfigError(
            f"{where} = {delta:g} but this dataset has n_train = {n_train}: delta must lie in "
            f"(0, 1/n_train) = (0, {1.0 / n_train:.3g}); use 'auto' ({default_delta(n_train):g}) or a smaller value"
        )
    return delta


def check_accountant(name: str, *, where: str = "privacy.accountant") -> str:
    """Return ``name`` if it is one of :data:`ACCOUNTANTS`, else raise naming ``where`` and the allowed ones."""
    if name not in ACCOUNTANTS:
        raise ConfigError(f"{where} = {name!r}; allowed accountants: {list(ACCOUNTANTS)}")
    return name


def is_private(epsilon: float) -> bool:
    """Whether a run at ``epsilon`` is private: any finite ε is; ε = ∞ is the non-private reference arm."""
    return math.isfinite(epsilon)


def format_epsilon(epsilon: float | str) -> str:
    """How ε appears in paths and tables: ``1``, ``0.5``, ``inf``.

    Example:
        >>> [format_epsilon(e) for e in (1, 3.0, 0.5, float("inf"), "inf")]
        ['1', '3', '0.5', 'inf', 'inf']
    """
    value = parse_epsilon(epsilon)
    if math.isinf(value):
        return "inf"
    return f"{value:g}"


def parse_epsilon(epsilon: float | str, *, where: str = "epsilons") -> float:
    """Parse an ε from config or a path; ``inf`` means non-private training."""
    try:
        value = float(epsilon)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {epsilon!r} is not a number; use positive numbers or 'inf'") from None
    if math.isnan(value) or value <= 0:
        raise ConfigError(f"{where}: epsilon must be > 0 (or 'inf' for non-private), got {epsilon!r}")
    return value
