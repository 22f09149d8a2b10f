"""The ``federated:`` block of a benchmark: how many rounds, how many local epochs, the site-level clip."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from dpfair.errors import ConfigError
from dpfair.training.mechanisms.federated import MIN_SITES, WEAK_SITES

__all__ = ["MIN_SITES", "WEAK_SITES", "FederatedSettings"]


@dataclass(frozen=True)
class FederatedSettings:
    """One federated run's schedule.

    Args:
        rounds: FedAvg rounds R; every site takes part in every round.
        local_epochs: epochs E of local training per round at each site (Poisson-sampled batches).
        update_clip: ``fed_dp_site``'s bound C on the L2 norm of a site's model update (new weights minus the
            round's global weights), which Flower's server-side fixed-clipping wrapper enforces before the noise.
    """

    rounds: int = 5
    local_epochs: int = 1
    update_clip: float = 1.0

    @classmethod
    def from_config(cls, block: dict | None, *, where: str = "federated") -> FederatedSettings:
        """The settings of a ``federated:`` block (missing keys at their defaults); one error line per bad key."""
        block = dict(block or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(block) - known)
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(known)}")
        settings = cls(**block)
        for key in ("rounds", "local_epochs"):
            value = getattr(settings, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{where}.{key} must be a whole number >= 1, got {value!r}")
        clip = settings.update_clip
        if isinstance(clip, bool) or not isinstance(clip, (int, float)) or not clip > 0:
            raise ConfigError(f"{where}.update_clip must be a number > 0, got {clip!r}")
        return settings

    def params(self) -> dict:
        """The settings as a plain dict (a rule's params, the run record)."""
        return asdict(self)
