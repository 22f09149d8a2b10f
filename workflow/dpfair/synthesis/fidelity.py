"""How well a synthetic release keeps the real training rows' marginals, and whether small groups survive.

Two kinds of row in ``results/summary/synthesis_fidelity.csv``:

- ``group``: per sensitive attribute and group, its share of the rows and its label prevalence, real
  training rows against synthetic ones. A group a synthesizer drops or merges shows as a synthetic share
  near 0; a prevalence the synthesizer flattens shows as the group's prevalence moving to the overall one.
- ``marginal``: per column, the total variation distance between the real and synthetic one-way marginals
  (over the domain's codes).

The real side reads the training rows, as the audit does: the table is a diagnostic of the benchmark and not
covered by the release's guarantee.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dpfair.synthesis.domain import Domain

COLUMNS = [
    "dataset",
    "method",
    "epsilon",
    "seed",
    "kind",
    "attribute",
    "group",
    "real_share",
    "synthetic_share",
    "real_prevalence",
    "synthetic_prevalence",
    "total_variation",
]


def fidelity_rows(domain: Domain, real: np.ndarray, synthetic: np.ndarray) -> list[dict]:
    """The ``group`` and ``marginal`` rows of one release (``real``, ``synthetic``: coded rows of ``domain``)."""
    label = domain.names.index("label")
    rows = []
    for j, col in enumerate(domain.columns):
        a = np.bincount(real[:, j], minlength=col.size) / max(len(real), 1)
        b = np.bincount(synthetic[:, j], minlength=col.size) / max(len(synthetic), 1)
        rows.append({"kind": "marginal", "attribute": col.name, "total_variation": 0.5 * float(np.abs(a - b).sum())})
        if col.kind != "attribute":
            continue
        attribute = col.name.split(":", 1)[1]
        for code, group in enumerate(col.levels):
            in_real, in_synth = real[:, j] == code, synthetic[:, j] == code
            if not in_real.any() and not in_synth.any():
                continue
            rows.append(
                {
                    "kind": "group",
                    "attribute": attribute,
                    "group": group,
                    "real_share": float(in_real.mean()),
                    "synthetic_share": float(in_synth.mean()),
                    "real_prevalence": float(real[in_real, label].mean()) if in_real.any() else np.nan,
                    "synthetic_prevalence": float(synthetic[in_synth, label].mean()) if in_synth.any() else np.nan,
                }
            )
    return rows


def fidelity_table(rows: list[dict]) -> pd.DataFrame:
    """The rows of several releases (each with its dataset, method, epsilon and seed) in :data:`COLUMNS` order."""
    return pd.DataFrame(rows).reindex(columns=COLUMNS)
