"""Vectorised resampling kernels: bootstrap weights, group permutations, every metric for all at once.

A resample is a row of case weights (how many times each test row is drawn); a permutation of group
labels is, per group, a row of 0/1 weights (which rows the permutation puts in the group). Either way
:func:`weighted_metrics` evaluates the registry's kernels for all rows of a weight matrix at once: no
Python loop runs over resamples or permutations, and the bootstrap and the null reference share one
kernel. The random stream of a block depends only on the seed, a name and the block's index, so two
runs scored on the same test set get the same resamples (replicate b pairs across runs).

**Clusters** (``clusters``: one id per row, e.g. the patient): where a test set has several rows per
patient, the rows are not independent, and both kernels then work on whole clusters. The bootstrap is a
cluster bootstrap (Davison & Hinkley, *Bootstrap Methods and their Application*, 1997, §3.8; Field &
Welsh, JRSS-B 2007): it draws clusters with replacement and every row of a drawn cluster gets the
cluster's count. The permutation permutes the group labels of whole clusters, the exchangeable units.
Strata are kept at the cluster level: a cluster's stratum, column by column, is the value its rows share,
or "mixed" where they differ (a patient with positive and negative images sits in the mixed-label
stratum of its group; a patient whose rows fall in two groups in the mixed-group stratum). Label strata
thus hold exactly for single-label patients and approximately otherwise. A cluster whose rows carry
different group codes is not permuted (its rows keep their groups). Clusters are numbered in order of
first appearance, so with rows in ``row`` order the draws still depend only on the seed, the stream and
the test set; with one row per cluster both kernels give exactly the row-level draws.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd

from dpfair.fairness._inputs import labels, scores
from dpfair.fairness.metrics_registry import Counts, get_metric, metric_names

#: Resamples drawn and evaluated together (bounds memory at O(block · n) for large test sets).
BOOTSTRAP_BLOCK = 250


def stratified_bootstrap_weights(
    *, strata, n_boot: int = 1000, seed: int | Sequence[int] = 0, clusters=None
) -> np.ndarray:
    """``(n_boot, n)`` array: how many times each row is drawn in each resample, drawn within strata.

    ``strata`` is one label per row (array-like) or a DataFrame whose columns together define the
    cell (e.g. group and label). Every resample has exactly the cells' sizes. Cells are visited in
    sorted order, so the same ``strata`` and ``seed`` give the same weights. With ``clusters`` (one id
    per row) whole clusters are drawn within cluster-level strata (see the module); each resample then
    has the cells' numbers of clusters, and a row's weight is its cluster's count.

    Example:
        >>> w = stratified_bootstrap_weights(strata=[0, 0, 0, 1, 1], n_boot=4, seed=1)
        >>> w.shape, w[:, :3].sum(axis=1).tolist(), w[:, 3:].sum(axis=1).tolist()
        ((4, 5), [3.0, 3.0, 3.0, 3.0], [2.0, 2.0, 2.0, 2.0])
        >>> w = stratified_bootstrap_weights(strata=[0, 0, 0, 1, 1], n_boot=4, seed=1, clusters=list("aabcc"))
        >>> bool((w[:, 0] == w[:, 1]).all() and (w[:, 3] == w[:, 4]).all())  # a patient is drawn whole
        True
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    if clusters is None:
        codes, of_row = _codes(strata), None
    else:
        of_row = _cluster_index(clusters, len(_codes(strata)))
        codes = _cluster_cells(strata, of_row)
    rng = np.random.default_rng(seed)
    weights = np.zeros((n_boot, len(codes)))
    offsets = np.arange(n_boot)[:, None]
    for cell in np.unique(codes):
        rows = np.flatnonzero(codes == cell)
        m = len(rows)
        draws = rng.integers(0, m, (n_boot, m)) + offsets * m
        weights[:, rows] = np.bincount(draws.ravel(), minlength=n_boot * m).reshape(n_boot, m)
    return weights if of_row is None else weights[:, of_row]


def permuted_groups(
    *, groups, strata=None, n_perm: int = 1000, seed: int | Sequence[int] = 0, clusters=None
) -> np.ndarray:
    """``(n_perm, n)`` array of group codes, each row a permutation of ``groups`` within ``strata``.

    ``groups`` are integer codes; rows coded ``-1`` (left out, e.g. flagged groups) stay ``-1`` and are
    not permuted. Within each stratum (e.g. label) the codes are shuffled, so every permutation keeps
    each group's size and, with label strata, its positive count: the null of "no disparity". With
    ``clusters`` (one id per row) the codes of whole clusters are shuffled within cluster-level strata
    (see the module); a cluster whose rows carry different codes keeps them.

    Example:
        >>> p = permuted_groups(groups=[0, 0, 1, 1, -1], strata=[0, 1, 0, 1, 0], n_perm=3, seed=0)
        >>> p.shape, bool((p[:, 4] == -1).all()), bool((p[:, [0, 2]].sum(axis=1) == 1).all())
        ((3, 5), True, True)
        >>> p = permuted_groups(groups=[0, 0, 1, 1, 1], n_perm=20, seed=0, clusters=list("aabbc"))
        >>> bool((p[:, 0] == p[:, 1]).all()), sorted(set(p[:, 4].tolist()))  # patient a moves whole
        (True, [0, 1])
    """
    codes = np.asarray(groups, dtype=int)
    rng = np.random.default_rng(seed)
    if clusters is None:
        cells = np.zeros(len(codes), dtype=int) if strata is None else _codes(strata)
        out = np.tile(codes, (n_perm, 1))
        for cell in np.unique(cells):
            rows = np.flatnonzero((cells == cell) & (codes >= 0))
            if len(rows) > 1:
                out[:, rows] = rng.permuted(out[:, rows], axis=1)
        return out
    of_row = _cluster_index(clusters, len(codes))
    # a cluster's code: its rows' common code, or -2 where they differ (such a cluster is not permuted)
    unit = _collapse(codes, of_row, mixed=-2)
    cells = np.zeros(len(unit), dtype=int) if strata is None else _cluster_cells(strata, of_row)
    permuted = np.tile(unit, (n_perm, 1))
    for cell in np.unique(cells):
        rows = np.flatnonzero((cells == cell) & (unit >= 0))
        if len(rows) > 1:
            permuted[:, rows] = rng.permuted(permuted[:, rows], axis=1)
    out = np.tile(codes, (n_perm, 1))
    moved = unit[of_row] >= 0
    out[:, moved] = permuted[:, of_row[moved]]
    return out


def weighted_metrics(
    *,
    y_true,
    score,
    weights=None,
    threshold: float | None = None,
    n_bins: int = 10,
    metrics: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """Every metric (default: the registry's) for every row of ``weights`` at once (row = case weights).

    ``weights=None`` means one row of ones: the plain estimate. Threshold metrics need ``threshold``.
    Values are NaN where the metric is undefined for that row (as in the per-group tables).

    Example:
        >>> m = weighted_metrics(y_true=[0, 0, 1, 1], score=[0.1, 0.4, 0.35, 0.8], threshold=0.3)
        >>> {k: float(v[0]) for k, v in m.items() if k in ("auroc", "tpr", "fpr", "ppv")}
        {'auroc': 0.75, 'tpr': 1.0, 'fpr': 0.5, 'ppv': 0.6666666666666666}
        >>> w = stratified_bootstrap_weights(strata=[0, 0, 1, 1], n_boot=3, seed=0)
        >>> weighted_metrics(y_true=[0, 0, 1, 1], score=[0.1, 0.4, 0.35, 0.8], weights=w, metrics=("auroc",))["auroc"].shape
        (3,)
    """
    metrics = tuple(metric_names() if metrics is None else metrics)
    y = labels(y_true)
    s = scores(score, len(y))
    w = np.ones((1, len(y))) if weights is None else np.asarray(weights, dtype=float)
    if w.ndim != 2 or w.shape[1] != len(y):
        raise ValueError(f"weights must have shape (n_resamples, {len(y)}), got {w.shape}")
    if threshold is None and any(get_metric(m).needs_threshold for m in metrics):
        raise ValueError("threshold metrics need a threshold")
    counts = Counts(y=y, s=s, w=w, threshold=threshold, n_bins=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {m: np.asarray(get_metric(m).kernel(counts), dtype=float) for m in metrics}


def weight_blocks(*, strata, n_boot: int, stream: list[int], clusters=None) -> Iterator[np.ndarray]:
    """Bootstrap weights in blocks of :data:`BOOTSTRAP_BLOCK`; block i comes from ``[*stream, i]``."""
    for i, start in enumerate(range(0, n_boot, BOOTSTRAP_BLOCK)):
        yield stratified_bootstrap_weights(
            strata=strata, n_boot=min(BOOTSTRAP_BLOCK, n_boot - start), seed=[*stream, i], clusters=clusters
        )


def permutation_blocks(*, groups, strata, n_perm: int, stream: list[int], clusters=None) -> Iterator[np.ndarray]:
    """Permuted group codes in blocks of :data:`BOOTSTRAP_BLOCK`; block i comes from ``[*stream, i]``."""
    for i, start in enumerate(range(0, n_perm, BOOTSTRAP_BLOCK)):
        yield permuted_groups(
            groups=groups,
            strata=strata,
            n_perm=min(BOOTSTRAP_BLOCK, n_perm - start),
            seed=[*stream, i],
            clusters=clusters,
        )


def concat_blocks(parts) -> dict[str, np.ndarray]:
    """One dict of arrays from per-block dicts (same keys): each key's blocks concatenated in order."""
    parts = list(parts)
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _cluster_index(clusters, n: int) -> np.ndarray:
    """Each row's cluster number, clusters numbered in order of first appearance."""
    values = pd.Series(np.asarray(clusters, dtype=object))
    if len(values) != n:
        raise ValueError(f"expected {n} cluster ids, got {len(values)}")
    if values.isna().any():
        raise ValueError("cluster ids must not be missing (give a row without one an id of its own)")
    return pd.factorize(values, sort=False)[0]


def _collapse(values: np.ndarray, of_row: np.ndarray, *, mixed: int) -> np.ndarray:
    """Per cluster, the value its rows share, or ``mixed`` where they differ."""
    n_clusters = int(of_row.max()) + 1 if len(of_row) else 0
    low = np.full(n_clusters, np.iinfo(np.int64).max)
    high = np.full(n_clusters, np.iinfo(np.int64).min)
    np.minimum.at(low, of_row, values)
    np.maximum.at(high, of_row, values)
    return np.where(low == high, low, mixed)


def _cluster_cells(strata, of_row: np.ndarray) -> np.ndarray:
    """Cell number of each cluster, cells numbered in sorted order.

    Column by column a cluster has the value its rows share, or "mixed" (sorting after the values); with
    one row per cluster this is exactly :func:`_codes`.
    """
    columns = (
        [strata[c] for c in strata.columns] if isinstance(strata, pd.DataFrame) else [pd.Series(np.asarray(strata))]
    )
    parts = []
    for column in columns:
        codes = pd.factorize(pd.Series(np.asarray(column)), sort=True)[0].astype(np.int64)
        if len(codes) != len(of_row):
            raise ValueError(f"expected {len(of_row)} strata, got {len(codes)}")
        parts.append(_collapse(codes, of_row, mixed=int(codes.max()) + 1 if len(codes) else 0))
    return np.unique(np.column_stack(parts), axis=0, return_inverse=True)[1].ravel()


def _codes(strata) -> np.ndarray:
    """Cell number of each row, cells numbered in sorted order of their values (column by column)."""
    if isinstance(strata, pd.DataFrame):
        parts = np.column_stack([pd.factorize(strata[c], sort=True)[0] for c in strata.columns])
        return np.unique(parts, axis=0, return_inverse=True)[1].ravel()
    return pd.factorize(pd.Series(np.asarray(strata)), sort=True)[0]
