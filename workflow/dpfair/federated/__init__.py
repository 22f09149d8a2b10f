"""Federated training as Flower simulations: hospitals as clients, FedAvg on the server, two privacy units.

- :mod:`~dpfair.federated.environment`: telemetry off and loopback only, set before Flower or Ray is imported.
- :mod:`~dpfair.federated.settings`: the benchmark's ``federated:`` block (rounds, local epochs, update clip).
- :mod:`~dpfair.federated.sites`: the partition of the training rows by the dataset's ``site_attribute``.
- :mod:`~dpfair.federated.accounting`: each site's DP-SGD plan calibrated once for all its local steps over
  all rounds (record level), the server's Gaussian noise over rounds (site level), and their ledgers.
- :mod:`~dpfair.federated.client` and :mod:`~dpfair.federated.server`: the Flower ``ClientApp`` (a site's
  local epochs) and ``ServerApp`` (Flower's ``FedAvg``, wrapped by Flower's server-side fixed-clipping DP
  strategy for the site level).
- :mod:`~dpfair.federated.simulation`: runs one federated run on Flower's simulation engine (Ray) with
  telemetry off and every socket on loopback, and returns it as :class:`dpfair.training.loop.TrainResult`.

The mechanisms that use it are ``fed_dpsgd`` and ``fed_dp_site`` (``dpfair.training.mechanisms.federated``).
"""

from dpfair.federated import environment  # noqa: F401  (first: telemetry off before flwr or ray is imported)
from dpfair.federated.settings import FederatedSettings
from dpfair.federated.simulation import train_federated

__all__ = ["FederatedSettings", "train_federated"]
