"""What a federated run is charged: per site (record level) or per round (site level), with dp-accounting.

Record level (``fed_dpsgd``): every site runs DP-SGD over its own rows, Poisson-sampled at its own rate
q_s = 1/len(loader) (Opacus's loader over ceil(n_s / batch) batches). A row belongs to one site and only
that site's steps read it; the other sites and the server see it only through released, noised
updates (post-processing). A row's guarantee is therefore its site's composition of *all* its local steps
over *all* rounds, ``SelfComposed(PoissonSampled(q_s, Gaussian(σ_s)), R·E·len(loader))``, and the run's ε is the
largest over sites. σ_s is calibrated once for the whole run (NVFlare's hello-dp pattern); Flower's own
Opacus example builds a new PrivacyEngine every round, so the ε it prints covers one round.

Site level (``fed_dp_site``; DP-FedAvg, McMahan et al. 2018): the server clips each site's update to
norm C and adds N(0, z²C²) to their sum (Flower's ``DifferentialPrivacyServerSideFixedClipping``; it
divides by the number of sites m, which is public). The neighbours are zero-out (Kairouz et al. 2021,
"Practical and private (deep) learning without sampling or shuffling"): one site's update replaced by
zero, which moves the sum by at most C, so each round is a Gaussian of sensitivity C, as for adding or
removing that site's contribution. (Removing the site itself would change m, which is published, and is
not the guarantee claimed.) Every site takes part in every round, so nothing is amplified by sampling: R
rounds are ``SelfComposed(Gaussian(z), R)``, exactly what Flower's ``RdpAccountant`` with
``sampling_method=no-amplification`` composes (and requires).
"""

from __future__ import annotations

from dataclasses import dataclass

import dp_accounting
import torch
from opacus.data_loader import DPDataLoader
from torch.utils.data import TensorDataset

from dpfair.privacy.ledger import poisson_gaussian
from dpfair.training.mechanisms.dpsgd import calibrate_sigma
from dpfair.training.steps import row_loader


@dataclass(frozen=True)
class SitePlan:
    """One site's record-level DP-SGD schedule for the whole run.

    ``batches_per_epoch`` is Opacus's Poisson loader length over ``rows`` at the run's batch size, so
    ``sample_rate`` = 1/batches_per_epoch is what its accountant charges per step; ``steps`` = rounds × local
    epochs × batches_per_epoch; ``noise_multiplier`` σ_s reaches the target after exactly those steps.
    """

    site: str
    rows: int
    batches_per_epoch: int
    sample_rate: float
    steps: int
    noise_multiplier: float

    def ledger(self, steps: int | None = None) -> dp_accounting.DpEvent:
        """The site's ledger after ``steps`` local steps (all its planned steps by default)."""
        return poisson_gaussian(
            noise_multiplier=self.noise_multiplier,
            sample_rate=self.sample_rate,
            steps=self.steps if steps is None else steps,
        )


def loader_batches(rows: int, batch_size: int) -> int:
    """How many batches Opacus's Poisson loader yields per epoch over ``rows`` (int(1/q), q = 1/ceil(rows/batch))."""
    base = row_loader(TensorDataset(torch.zeros(rows)), batch_size=batch_size, generator=torch.Generator())
    return len(DPDataLoader.from_data_loader(base))


def record_level_plan(
    *,
    site_rows: dict[str, int],
    batch_size: int,
    rounds: int,
    local_epochs: int,
    epsilon: float,
    delta: float,
    accountant: str,
) -> dict[str, SitePlan]:
    """Each site's σ for all its local steps over all rounds, calibrated once before the first round.

    Example:
        >>> plan = record_level_plan(site_rows={"A": 400, "B": 200}, batch_size=50, rounds=3, local_epochs=2,
        ...                          epsilon=3.0, delta=1e-4, accountant="prv")
        >>> [(p.batches_per_epoch, p.steps) for p in plan.values()]
        [(8, 48), (4, 24)]
    """
    plans = {}
    for site, rows in site_rows.items():
        batches = loader_batches(rows, batch_size)
        steps = rounds * local_epochs * batches
        sigma = calibrate_sigma(
            epsilon=epsilon, delta=delta, sample_rate=1.0 / batches, steps=steps, accountant=accountant
        )
        plans[site] = SitePlan(
            site=site,
            rows=rows,
            batches_per_epoch=batches,
            sample_rate=1.0 / batches,
            steps=steps,
            noise_multiplier=sigma,
        )
    return plans


def site_level_ledger(noise_multiplier: float, rounds: int) -> dp_accounting.DpEvent:
    """R server releases of the clipped sum plus N(0, z²C²), every site in every round (no amplification)."""
    return dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(noise_multiplier), rounds)


def site_level_sigma(*, epsilon: float, delta: float, rounds: int) -> float:
    """The smallest z for which dp-accounting's RDP accountant (Flower's) gives ε ≤ target after ``rounds``.

    dp-accounting's own calibration (``calibrate_dp_mechanism``) searches it; RDP is what Flower's accountant
    composes, so Flower's reported ε stays within the target too (PLD, tighter, gives less).

    Example:
        >>> z = site_level_sigma(epsilon=3.0, delta=1e-3, rounds=5)
        >>> from dpfair.privacy.ledger import replay_epsilon
        >>> replay_epsilon(site_level_ledger(z, 5), accountant="rdp_google", delta=1e-3) <= 3.0
        True
    """
    z = dp_accounting.calibrate_dp_mechanism(
        dp_accounting.rdp.RdpAccountant,
        lambda sigma: site_level_ledger(sigma, rounds),
        epsilon,
        delta,
        dp_accounting.LowerEndpointAndGuess(1e-3, 1.0),
        tol=1e-6,
    )
    accountant = dp_accounting.rdp.RdpAccountant()
    accountant.compose(site_level_ledger(z, rounds))
    while accountant.get_epsilon(delta) > epsilon:  # the search's tolerance may land a hair above the target
        z *= 1.0001
        accountant = dp_accounting.rdp.RdpAccountant()
        accountant.compose(site_level_ledger(z, rounds))
    return float(z)


def flower_accountant(*, delta: float, n_sites: int):
    """Flower's own accountant for the site level: RDP over dp-accounting, every site every round, add-or-remove one site."""
    from flwr.supercore.privacy_accounting import NeighboringRelation, PrivacyConfig, SamplingMethod
    from flwr.supercore.privacy_accounting.rdp_accountant import RdpAccountant

    return RdpAccountant(
        PrivacyConfig(
            target_delta=delta,
            population_size=n_sites,
            neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
            sampling_method=SamplingMethod.NO_AMPLIFICATION,
        )
    )
