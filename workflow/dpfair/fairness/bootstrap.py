"""Vectorised resampling kernels: bootstrap weights, group permutations, every metric for all at once.

A resample is a row of case weights (how many times each test row is drawn); a permutation of group
labels is, per group, a row of 0/1 weights (which rows the permutation puts in the group). Either way
:func:`weighted_metrics` evaluates the registry's kernels for all rows of a weight matrix at once: no
Python loop runs over resamples or permutations, and the bootstrap and the null reference share one
kernel. The random stream of a block depends only on the seed, a name and the block's index, so two
runs scored on the same test set get the same resamples (replicate b pairs across runs).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd

from dpfair.fairness._inputs import labels, scores
from dpfair.fairness.metrics_registry import Counts, get_metric, metric_names

#: Resamples drawn and evaluated together (bounds memory at O(block · n) for large test sets).
BOOTSTRAP_BLOCK = 250


def stratified_bootstrap_weights(*, strata, n_boot: int = 1000, seed: int | Sequence[int] = 0) -> np.ndarray:
    """``(n_boot, n)`` array: how many times each row is drawn in each resample, drawn within strata.

    ``strata`` is one label per row (array-like) or a DataFrame whose columns together define the
    cell (e.g. group and label). Every resample has exactly the cells' sizes. Cells are visited in
    sorted order, so the same ``strata`` and ``seed`` give the same weights.

    Example:
        >>> w = stratified_bootstrap_weights(strata=[0, 0, 0, 1, 1], n_boot=4, seed=1)
        >>> w.shape, w[:, :3].sum(axis=1).tolist(), w[:, 3:].sum(axis=1).tolist()
        ((4, 5), [3.0, 3.0, 3.0, 3.0], [2.0, 2.0, 2.0, 2.0])
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    codes = _codes(strata)
    rng = np.random.default_rng(seed)
    weights = np.zeros((n_boot, len(codes)))
    offsets = np.arange(n_boot)[:, None]
    for cell in np.unique(codes):
        rows = np.flatnonzero(codes == cell)
        m = len(rows)
        draws = rng.integers(0, m, (n_boot, m)) + offsets * m
        weights[:, rows] = np.bincount(draws.ravel(), minlength=n_boot * m).reshape(n_boot, m)
    return weights


def permuted_groups(*, groups, strata=None, n_perm: int = 1000, seed: int | Sequence[int] = 0) -> np.ndarray:
    """``(n_perm, n)`` array of group codes, each row a permutation of ``groups`` within ``strata``.

    ``groups`` are integer codes; rows coded ``-1`` (left out, e.g. flagged groups) stay ``-1`` and are
    not permuted. Within each stratum (e.g. label) the codes are shuffled, so every permutation keeps
    each group's size and, with label strata, its positive count: the null of "no disparity".

    Example:
        >>> p = permuted_groups(groups=[0, 0, 1, 1, -1], strata=[0, 1, 0, 1, 0], n_perm=3, seed=0)
        >>> p.shape, bool((p[:, 4] == -1).all()), bool((p[:, [0, 2]].sum(axis=1) == 1).all())
        ((3, 5), True, True)
    """
    codes = np.asarray(groups, dtype=int)
    cells = np.zeros(len(codes), dtype=int) if strata is None else _codes(strata)
    rng = np.random.default_rng(seed)
    out = np.tile(codes, (n_perm, 1))
    for cell in np.unique(cells):
        rows = np.flatnonzero((cells == cell) & (codes >= 0))
        if len(rows) > 1:
            out[:, rows] = rng.permuted(out[:, rows], axis=1)
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


def weight_blocks(*, strata, n_boot: int, stream: list[int]) -> Iterator[np.ndarray]:
    """Bootstrap weights in blocks of :data:`BOOTSTRAP_BLOCK`; block i comes from ``[*stream, i]``."""
    for i, start in enumerate(range(0, n_boot, BOOTSTRAP_BLOCK)):
        yield stratified_bootstrap_weights(
            strata=strata, n_boot=min(BOOTSTRAP_BLOCK, n_boot - start), seed=[*stream, i]
        )


def permutation_blocks(*, groups, strata, n_perm: int, stream: list[int]) -> Iterator[np.ndarray]:
    """Permuted group codes in blocks of :data:`BOOTSTRAP_BLOCK`; block i comes from ``[*stream, i]``."""
    for i, start in enumerate(range(0, n_perm, BOOTSTRAP_BLOCK)):
        yield permuted_groups(
            groups=groups, strata=strata, n_perm=min(BOOTSTRAP_BLOCK, n_perm - start), seed=[*stream, i]
        )


def concat_blocks(parts) -> dict[str, np.ndarray]:
    """One dict of arrays from per-block dicts (same keys): each key's blocks concatenated in order."""
    parts = list(parts)
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _codes(strata) -> np.ndarray:
    """Cell number of each row, cells numbered in sorted order of their values (column by column)."""
    if isinstance(strata, pd.DataFrame):
        parts = np.column_stack([pd.factorize(strata[c], sort=True)[0] for c in strata.columns])
        return np.unique(parts, axis=0, return_inverse=True)[1].ravel()
    return pd.factorize(pd.Series(np.asarray(strata)), sort=True)[0]
