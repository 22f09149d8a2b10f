"""``fed_dpsgd`` and ``fed_dp_site``: FedAvg over hospitals as Flower clients, private at two units.

Both run as Flower simulations (:mod:`dpfair.federated`): one client per site of the dataset's
``site_attribute``, Flower's ``FedAvg`` on the server (McMahan et al. 2017, "Communication-efficient
learning of deep networks from decentralized data"), every site in every round, equal weights. Their
ε = ∞ arm is the same FedAvg without clipping or noise (``fed_dp_site`` shares ``fed_dpsgd``'s), so the cost
of federation (FedAvg ∞ against central ``dpsgd`` ∞) and the cost of DP (each against its own ∞) separate.

- ``fed_dpsgd``, record level: each site runs DP-SGD over its own rows (Abadi et al. 2016; Poisson sampling,
  per-sample clipping, Gaussian noise) for E local epochs per round; σ of each site is calibrated once for
  all its R·E epochs of steps, and each site's ledger composes them all. A row is protected by its site's
  guarantee; the run's ε is the largest over sites. This is the per-site record-level DP of NVFlare's
  hello-dp example, composed over rounds.
- ``fed_dp_site``, site level: DP-FedAvg (McMahan, Ramage, Talwar & Zhang 2018, "Learning differentially
  private recurrent language models"): the server clips each site's whole update and adds Gaussian noise
  to the sum (Flower's ``DifferentialPrivacyServerSideFixedClipping`` with its ``RdpAccountant``). It protects
  everything a hospital's data contribute, under zero-out neighbours (the site's update replaced by zero; the
  sites and their sizes are public), against everyone but the server, which is trusted. With a handful of
  hospitals that guarantee is weak (the noise on the average falls as 1/m only) and the model pays for it.
"""

from __future__ import annotations

import numpy as np
from typing_extensions import override

from dpfair.errors import ConfigError
from dpfair.training.mechanisms.base import Mechanism, register_mechanism
from dpfair.training.mechanisms.text import CLIPPING_PATHS, group_privacy_text, record_unit_text

#: Fewer sites than this and a site-level guarantee is refused: with two hospitals, one of them is half the
#: population the guarantee is about.
MIN_SITES = 3
#: Below this many sites the card says plainly that the site-level guarantee is weak. DP-FedAvg reached useful
#: models at ε of a few only with 10^5-10^6 clients (McMahan et al. 2018, "Learning differentially private
#: recurrent language models", ICLR): the noise on the average falls as 1/sites, the signal does not.
WEAK_SITES = 100


class FederatedMechanism(Mechanism):
    """A mechanism whose runs are Flower simulations over the dataset's sites (never :meth:`make_trainer`)."""

    federated = True
    nonprivate_arm_of = None

    @override
    def make_trainer(self, **kwargs):
        raise ConfigError(
            f"method {self.name} trains by federated simulation (dpfair.federated.train_federated), not the central "
            "loop; run it through the workflow or dpfair.pipeline.runner.train_run"
        )

    @override
    def also_releases(self, *, meta, record):
        return [
            "every round's global model to every site (FedAvg broadcasts it; covered by the guarantee as "
            "post-processing of the released updates)",
            "the number of sites and each site's training-row count (public to the guarantee, as n is for dpsgd)",
        ]


@register_mechanism("fed_dpsgd")
class FedDPSGD(FederatedMechanism):
    """Record-level DP-SGD at every site, composed over all rounds; FedAvg on the server."""

    unit = "record"

    @override
    def card_text(self, *, meta, record):
        path = CLIPPING_PATHS.get(record.get("clipping_backend"), record.get("clipping_backend"))
        fed = record.get("federated") or {}
        sites = fed.get("sites") or []
        per_site = "; ".join(f"site {s['site']}: n = {s['n_units']}, ε = {s['epsilon']:.3f}" for s in sites)
        return {
            "clipping": f"flat per-sample clipping at every site (all parameters, one norm), computed by {path}",
            "privacy_unit_enforcement": (
                f"{record_unit_text(meta)}, at each site over its own rows; a row is at one site. Per site, "
                f"calibrated once for all {fed.get('rounds', '?')} rounds × {fed.get('local_epochs', '?')} local "
                f"epochs: {per_site}. The run's ε is the largest site's"
            ),
            "guarantee_covers": (
                "the released model and every round's global model with respect to one training row of one site "
                "(adding or removing it); the server and the other sites see the row only through that site's "
                "noised updates; validation and test rows have no DP protection"
            ),
        }

    @override
    def group_privacy(self, *, meta: dict, epsilon: float, delta: float) -> dict | None:
        return group_privacy_text(meta=meta, epsilon=epsilon, delta=delta)


@register_mechanism("fed_dp_site")
class FedDPSite(FederatedMechanism):
    """DP-FedAvg: the server clips each site's update and noises their sum; the unit is a whole site."""

    unit = "site"
    nonprivate_arm_of = "fed_dpsgd"

    @override
    def n_units(self, data) -> int:
        if data.site is None:
            raise ConfigError(
                f"method {self.name} counts sites, and the dataset declares no site attribute (card.site_attribute)"
            )
        return len(np.unique(data.site.astype(str)))

    @override
    def card_text(self, *, meta, record):
        fed = record.get("federated") or {}
        m = int(record.get("n_units", 0))
        weak = (
            f" With {m} sites at δ = {float(record.get('delta', float('nan'))):g} this guarantee is weak: it hides "
            f"one hospital's data among {m}, and DP-FedAvg's noise on the "
            f"average falls only as 1/sites (useful models at ε of a few took 10^5 clients and more, McMahan et al. "
            f"2018); below {WEAK_SITES} sites read it as a stress test, not a deployment setting."
            if m < WEAK_SITES
            else ""
        )
        return {
            "clipping": (
                f"server-side fixed clipping of each site's model update to L2 norm {fed.get('update_clip', '?')} "
                "(Flower's DifferentialPrivacyServerSideFixedClipping), Gaussian noise N(0, z²C²) on the sum, the "
                "noised sum divided by the number of sites m, which is public; local training at the sites is not "
                "private"
            ),
            "privacy_unit_enforcement": (
                "one site (hospital) is the unit, under zero-out neighbours (Kairouz et al. 2021): federations that "
                "differ in one site's update being replaced by zero, which moves the sum by at most C, as "
                "adding or removing that site's contribution does; the sites, their number and their row counts "
                "are public, so the guarantee hides what a hospital's data were, not that it took part. Every site "
                f"takes part in every one of the {fed.get('rounds', '?')} rounds (no amplification by sampling, as "
                f"Flower's accountant requires).{weak}"
            ),
            "guarantee_covers": (
                "the released model and every round's global model with respect to one whole site's data (every "
                "row it holds, its labels and attributes); the server is trusted: it sees every site's update "
                "before clipping and noise (no secure aggregation); validation and test rows have no DP protection"
            ),
        }
