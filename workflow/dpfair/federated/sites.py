"""The sites of a federated run: the training rows partitioned by the dataset's declared site attribute."""

from __future__ import annotations

import numpy as np

from dpfair.errors import ConfigError


def partition(site: np.ndarray | None, *, method: str, dataset: str = "") -> dict[str, np.ndarray]:
    """Each site's training row indices, sites in sorted order (site index i is the i-th Flower client).

    Raises:
        ConfigError: the dataset declares no site attribute (``DatasetCard.site_attribute``).
    """
    where = f"datasets.{dataset}" if dataset else "the dataset"
    if site is None:
        raise ConfigError(
            f"{where}: method {method} partitions the training rows by site, and the dataset declares no site "
            "attribute (card.site_attribute in its module); set it to the attribute naming each row's hospital or "
            f"scanner, or drop {method} from this dataset's methods"
        )
    names = sorted({str(s) for s in site})
    return {name: np.flatnonzero(site.astype(str) == name) for name in names}
