"""The public domain DP synthesis works over: every column's codes, fixed before any training row is read.

Marginal-based synthesizers (MST, AIM) count rows in the cells of a discrete domain. Where that domain
comes from is part of the guarantee: bounds, categories or bins read off the training rows would publish
them outside ε (a bin edge at the training maximum gives the maximum away). Here every part of the domain
comes from what the benchmark already treats as public, the validation split and the dataset card, as the
tabular preprocessing does (:mod:`dpfair.data.prepare` fits imputation, scaling and one-hot levels there):

- a numeric feature (standardised on the validation split) gets up to ``n_bins`` bins cut at the
  validation quantiles, open at both ends, so a training value beyond every validation value lands in an
  outer bin and moves no edge; a bin decodes to the median of the validation values inside it;
- a categorical feature gets its one-hot levels (fitted on the validation split) and one more code,
  ``unseen``, for a training row whose level the validation split lacks (its one-hot row is all zeros);
- the label gets 0 and 1;
- each sensitive attribute of the card gets the levels the validation split holds, and ``(not in validation)``.

The attributes are synthesized with the rest so that the fidelity table can ask whether small groups
survive; training reads only the features and the label. The number of training rows is public, as in
every arm (DP-SGD's sampling rate is B/n).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import torch

from dpfair.data.contract import group_sort_key
from dpfair.errors import ConfigError

#: Bins per numeric feature, at most (fewer where validation quantiles coincide).
N_BINS = 8
UNSEEN = "unseen"
#: the code of a group the validation split lacks (not "other": SUPPORT2 has a race group of that name)
OTHER = "(not in validation)"


@dataclass
class Column:
    """One column of the synthesis table: what its codes mean and how they map back to model inputs.

    ``kind`` is ``numeric`` (``edges``: the inner bin edges; ``values``: what each bin decodes to),
    ``categorical`` (``features``: its one-hot features, in code order; the last code is ``unseen``),
    ``label`` or ``attribute`` (``levels``: the group names, in code order).
    """

    name: str
    kind: str
    features: list[str] = field(default_factory=list)
    levels: list[str] = field(default_factory=list)
    edges: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)

    @property
    def size(self) -> int:
        """How many codes the column has."""
        if self.kind == "numeric":
            return len(self.edges) + 1
        if self.kind == "categorical":
            return len(self.features) + 1
        return len(self.levels)


@dataclass
class Domain:
    """The synthesis table's columns, their codes and the feature layout they decode into."""

    columns: list[Column]
    features: list[str]

    @property
    def sizes(self) -> list[int]:
        """Each column's number of codes (what the synthesizer's domain is given)."""
        return [c.size for c in self.columns]

    @property
    def names(self) -> list[str]:
        """The columns' names, in table order."""
        return [c.name for c in self.columns]

    def to_dict(self) -> dict:
        """Plain JSON (the plan file's ``domain``)."""
        return {"columns": [asdict(c) for c in self.columns], "features": list(self.features)}

    @classmethod
    def from_dict(cls, data: dict) -> Domain:
        """The domain :meth:`to_dict` wrote."""
        return cls(columns=[Column(**c) for c in data["columns"]], features=list(data["features"]))


def build_domain(prepared, *, n_bins: int = N_BINS) -> Domain:
    """The domain of ``prepared`` (a :class:`~dpfair.data.prepare.PreparedDataset`), read off its validation split.

    No training row is read: changing any training value leaves the domain as it is (tested).
    """
    meta = prepared.meta
    if meta["modality"] != "tabular":
        raise ConfigError(
            f"dataset {meta['name']!r} is {meta['modality']}: DP synthesis (synth_aim, synth_mst) makes tabular "
            "rows only; drop the synth_* methods from that dataset's methods"
        )
    if "columns" not in meta:
        raise ConfigError(
            f"dataset {meta['name']!r} was prepared by an older dpfair without its column layout; delete "
            f"results/prepared/{meta['name']} and run again"
        )
    val = (prepared.samples["split"] == "val").to_numpy(copy=True)
    x_val = prepared.x[torch.from_numpy(val)].numpy()
    index = {f: i for i, f in enumerate(meta["features"])}
    columns = []
    for col in meta["columns"]:
        if col["kind"] == "numeric":
            v = x_val[:, index[col["features"][0]]].astype(np.float64)
            edges = np.unique(np.quantile(v, np.arange(1, n_bins) / n_bins))
            codes = np.searchsorted(edges, v, side="right")
            # an empty bin (ties at a quantile: a binary feature's lowest bin) decodes to its nearest edge
            values = [
                float(np.median(v[codes == b])) if (codes == b).any() else float(edges[max(b - 1, 0)])
                for b in range(len(edges) + 1)
            ]
            columns.append(
                Column(col["name"], "numeric", features=col["features"], edges=edges.tolist(), values=values)
            )
        else:
            columns.append(Column(col["name"], "categorical", features=list(col["features"])))
    columns.append(Column("label", "label", levels=["0", "1"]))
    for attribute in meta["card"]["sensitive_attributes"]:
        seen = prepared.samples.loc[val, attribute].astype(str).unique().tolist()
        levels = sorted(seen, key=lambda g: group_sort_key(attribute, g))
        columns.append(Column(f"group:{attribute}", "attribute", levels=[*levels, OTHER]))
    return Domain(columns=columns, features=list(meta["features"]))


def encode(domain: Domain, prepared, *, split: str = "train") -> np.ndarray:
    """The rows of ``split`` as codes of ``domain`` (rows × columns, int64)."""
    rows = (prepared.samples["split"] == split).to_numpy(copy=True)
    x = prepared.x[torch.from_numpy(rows)].numpy()
    y = prepared.y[torch.from_numpy(rows)].numpy()
    index = {f: i for i, f in enumerate(domain.features)}
    out = np.zeros((int(rows.sum()), len(domain.columns)), dtype=np.int64)
    for j, col in enumerate(domain.columns):
        if col.kind == "numeric":
            out[:, j] = np.searchsorted(np.asarray(col.edges), x[:, index[col.features[0]]], side="right")
        elif col.kind == "categorical":
            onehot = x[:, [index[f] for f in col.features]]
            out[:, j] = np.where(onehot.max(axis=1) > 0.5, onehot.argmax(axis=1), len(col.features))
        elif col.kind == "label":
            out[:, j] = y.astype(np.int64)
        else:
            attribute = col.name.split(":", 1)[1]
            lookup = {g: i for i, g in enumerate(col.levels[:-1])}
            other = len(col.levels) - 1
            values = prepared.samples.loc[rows, attribute].astype(str)
            out[:, j] = np.array([lookup.get(g, other) for g in values], dtype=np.int64)
    return out


def decode(domain: Domain, codes: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, pd.DataFrame]:
    """Model inputs, labels and group names of coded rows (the inverse of :func:`encode` up to binning)."""
    codes = np.asarray(codes, dtype=np.int64)
    if codes.ndim != 2 or codes.shape[1] != len(domain.columns):
        raise ValueError(f"codes of shape {codes.shape} do not fit a domain of {len(domain.columns)} columns")
    index = {f: i for i, f in enumerate(domain.features)}
    x = np.zeros((len(codes), len(domain.features)), dtype=np.float32)
    y = np.zeros(len(codes), dtype=np.float32)
    groups = {}
    for j, col in enumerate(domain.columns):
        c = np.clip(codes[:, j], 0, col.size - 1)
        if col.kind == "numeric":
            x[:, index[col.features[0]]] = np.asarray(col.values, dtype=np.float32)[c]
        elif col.kind == "categorical":
            for level, feature in enumerate(col.features):
                x[:, index[feature]] = (c == level).astype(np.float32)
        elif col.kind == "label":
            y = c.astype(np.float32)
        else:
            groups[col.name.split(":", 1)[1]] = np.asarray(col.levels, dtype=object)[c]
    return torch.from_numpy(x), torch.from_numpy(y), pd.DataFrame(groups)
