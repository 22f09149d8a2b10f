"""The metric registry: one definition per metric, which every table, gap and the report iterate over.

A :class:`Metric` holds its name, how it reads (``label``), its direction, whether it needs the
operating threshold, how it is resampled (``stratify``), its vectorised ``kernel`` (every bootstrap
resample or permutation at once, as case weights) and its ``reference``: the plain per-group function
fairlearn's :class:`~fairlearn.metrics.MetricFrame` evaluates for the point estimates (the kernel is
tested against it). Adding a metric (FNR, Brier score, …) is one :func:`register_metric` call::

    register_metric(Metric(name="fnr", label="FNR", direction="lower", needs_threshold=True,
                           stratify="label", kernel=lambda c: 1 - c.tpr, reference=...))

Resampling (``stratify``):

* ``"label"``: the metric is conditional on the label (AUROC, TPR, FPR, balanced accuracy). Resamples
  keep each group's positive and negative counts (strata = group × label) and the permutation null
  permutes groups within label strata: the label mix of a group is not part of what is measured.
* ``"none"``: the metric depends on the prevalence (selection rate, PPV, AUPRC, ECE). Resamples keep
  only each group's size (strata = group), so the positive count varies as it does between test sets
  (holding it fixed removed real variance: measured coverage 0.88 instead of 0.95), and the
  permutation null permutes groups freely (unless ``permute_within`` says otherwise).

Permutation null (``permute_within``, default: what ``stratify`` says). The permutation test of "no
disparity" is exact under the *strong* null (the groups' rows are exchangeable), but the gaps are read
as tests of a *weak* null, one metric equal across groups while other features of the groups differ;
a free permutation then mixes those features and can be badly anti-conservative (Chung & Romano, "Exact
and asymptotically robust permutation tests", Ann Stat 2013). The remedy used here is a conditional
permutation test: permute group labels only within strata that fix what the metric conditions on.

* ``"label"``: within label strata (each group keeps its positives and negatives).
* ``"predicted"``: within predicted-positive strata (``score >= threshold`` vs below). PPV is a
  proportion among the predicted positives, so each group keeps its number of predicted positives, the
  denominator of its PPV. Two groups, equal PPV, selection rates 0.40 vs 0.08: rejection rate at
  nominal 0.05 of 0.205 free and 0.033 within predicted strata in the statistics review, 0.140 and
  0.033 in ``tests/test_resampling_validity.py`` (1000 test sets).
* ``"score_bin"``: within the calibration bins of the ECE kernel (``n_bins`` equal-width bins), so each
  group keeps its score histogram: binned ECE's small-sample bias depends on how the group's scores fill
  the bins, which a free permutation mixes. Calibrated in both groups, different score distributions:
  0.068 free and 0.048 within bins in the review, 0.118 and 0.053 in the tests. Approximately, not
  exactly, valid: the groups' scores can still differ within a bin (0.048 to 0.065 over the designs
  tried).
* ``"none"``: free permutation (selection rate: its null is "equal selection rates", which predicted
  strata would fix by construction).

Each kind draws its permutations from its own random stream (``<attribute>|null|<kind>``), so adding a
kind leaves the permutations, and so the null gaps and p-values, of the other kinds' metrics unchanged.

Small classes: a group with fewer than ``min_class_size`` positives or negatives is flagged for the
label-conditional metrics (``stratify == "label"``) and left out of their gaps; the percentile
bootstrap of a metric conditional on a class of a handful of rows undercovers (a group with 8 negatives:
AUROC coverage 0.88). See :func:`is_label_conditional`.

``headline=True`` marks the metrics whose gap changes form the multiplicity-controlled family of each
dataset (AUROC and TPR: equal opportunity); see :mod:`dpfair.fairness.gap_changes`. This flag is the one
definition of the family: :func:`headline_metrics` and :func:`is_headline` read it for the tables and
the report.

The wide table (results/summary/metrics.csv) is derived from the entries too (by
:mod:`dpfair.tables.columns`): ``wide_overall`` gives the overall value ``<name>, <name>_ci_low,
<name>_ci_high``, and ``wide_gap`` names the gap's columns (``"{name}_gap"`` unless the entry says
otherwise: ``"eod"`` for TPR, ``"dpd"`` for selection rate; ``None`` keeps the gap in gaps.csv only).

A :class:`DerivedGap` is a gap without per-group values of its own, combined from registered metrics'
gaps on the same resamples (equalized odds: the larger of the TPR and FPR gaps); it is registered with
:func:`register_derived_gap` and appears in gaps.csv, gap_changes.csv and, by its ``wide_gap``, in
metrics.csv. See docs/adding-a-metric.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property, partial
from typing import Literal

import numpy as np


class Counts:
    """Weighted counts for a kernel: ``y`` (n,), ``s`` (n,), ``w`` (rows, n); each row one resample.

    Quantities are computed on first use and shared by every kernel (one pass over the weights).
    """

    def __init__(self, *, y: np.ndarray, s: np.ndarray, w: np.ndarray, threshold: float | None, n_bins: int):
        self.y, self.s, self.w, self.threshold, self.n_bins = y, s, w, threshold, n_bins
        self.pos = y == 1

    @cached_property
    def n_pos(self):
        """Weighted number of positives, per resample (rows,)."""
        return self.w[:, self.pos].sum(axis=1)

    @cached_property
    def n_neg(self):
        """Weighted number of negatives, per resample (rows,)."""
        return self.w[:, ~self.pos].sum(axis=1)

    @cached_property
    def total(self):
        """Weighted number of samples, per resample (rows,)."""
        return self.w.sum(axis=1)

    @cached_property
    def both(self):
        """Whether each resample holds both labels (where AUROC and balanced accuracy are defined)."""
        return (self.n_pos > 0) & (self.n_neg > 0)

    @cached_property
    def pred(self):
        """Each sample's predicted label, ``s >= threshold`` (n,); threshold metrics raise without a threshold."""
        if self.threshold is None:
            raise ValueError("threshold metrics need a threshold")
        return self.s >= self.threshold

    @cached_property
    def tp(self):
        """Weighted true positives, per resample (rows,)."""
        return self.w @ (self.pos & self.pred).astype(float)

    @cached_property
    def fp(self):
        """Weighted false positives, per resample (rows,)."""
        return self.w @ (~self.pos & self.pred).astype(float)

    @cached_property
    def tpr(self):
        """True positive rate per resample; NaN where a resample has no positives."""
        return np.where(self.n_pos > 0, self.tp / self.n_pos, np.nan)

    @cached_property
    def fpr(self):
        """False positive rate per resample; NaN where a resample has no negatives."""
        return np.where(self.n_neg > 0, self.fp / self.n_neg, np.nan)


#: ``permute_within`` kinds: the strata within which a metric's permutation null permutes group labels.
PERMUTATION_STRATA = ("label", "predicted", "score_bin", "none")
#: ``wide_gap`` default: a metric's gap is ``<name>_gap`` (with ``_ci_low``, ``_ci_high``) in metrics.csv.
DEFAULT_WIDE_GAP = "{name}_gap"
#: The derived gap registered below: the larger of the TPR and FPR gaps (fairlearn's equalized odds).
EQUALIZED_ODDS = "equalized_odds"


def with_interval(column: str) -> tuple[str, str, str]:
    """A wide-table value column followed by its interval columns.

    Example:
        >>> with_interval("eod")
        ('eod', 'eod_ci_low', 'eod_ci_high')
    """
    return column, f"{column}_ci_low", f"{column}_ci_high"


class _WideColumns:
    """metrics.csv columns of a registry entry, from its ``name``, ``wide_gap`` and ``overall_columns``."""

    @property
    def gap_name(self) -> str | None:
        """Its gap's metrics.csv column (``"auroc_gap"``, ``"eod"``), or None when metrics.csv has none."""
        return None if self.wide_gap is None else self.wide_gap.format(name=self.name)

    @property
    def gap_columns(self) -> tuple[str, ...]:
        """Its gap's metrics.csv columns (empty when ``wide_gap`` is None)."""
        return with_interval(self.gap_name) if self.gap_name else ()


@dataclass(frozen=True)
class Metric(_WideColumns):
    """One metric: per group, overall and as a gap in every table.

    Attributes:
        name: Its name in the long tables (``metric`` column) and the stem of its metrics.csv columns.
        label: How it reads in tables, verdicts and the report ("balanced accuracy").
        direction: ``"higher"`` or ``"lower"`` is better, ``None`` for neither (selection rate);
            ``worst_group`` follows it.
        needs_threshold: Whether it is evaluated at the operating point (TPR) or on the scores (AUROC).
        stratify: How resamples (and, by default, permutations) are stratified (``"label"`` or ``"none"``;
            see the module).
        kernel: Every resample at once from :class:`Counts` (rows of case weights).
        reference: The plain per-group function fairlearn's MetricFrame evaluates for point estimates.
        headline: Whether its gap changes belong to the multiplicity-controlled headline family.
        caveat: A note carried into the gaps table.
        wide_overall: Whether metrics.csv has its overall value (``name`` with ``_ci_low``, ``_ci_high``).
        wide_gap: The metrics.csv name of its gap (``"{name}"`` is replaced by ``name``), or ``None``
            for a gap reported in gaps.csv only.
        permute_within: The strata of its permutation null (:data:`PERMUTATION_STRATA`; ``None``: as
            ``stratify`` says); see the module.
    """

    name: str
    label: str
    direction: Literal["higher", "lower"] | None
    needs_threshold: bool
    stratify: Literal["label", "none"]
    kernel: Callable[[Counts], np.ndarray] = field(repr=False)
    reference: Callable = field(repr=False)
    headline: bool = False
    caveat: str = ""
    wide_overall: bool = True
    wide_gap: str | None = DEFAULT_WIDE_GAP
    permute_within: Literal["label", "predicted", "score_bin", "none"] | None = None

    @property
    def overall_columns(self) -> tuple[str, ...]:
        """Its overall value's metrics.csv columns (empty when ``wide_overall`` is False)."""
        return with_interval(self.name) if self.wide_overall else ()

    @property
    def permutation_strata(self) -> str:
        """The strata its null permutes within: ``permute_within``, else ``stratify``.

        Example:
            >>> get_metric("ppv").permutation_strata, get_metric("ece").permutation_strata
            ('predicted', 'score_bin')
            >>> get_metric("auroc").permutation_strata, get_metric("selection_rate").permutation_strata
            ('label', 'none')
        """
        return self.stratify if self.permute_within is None else self.permute_within


@dataclass(frozen=True)
class DerivedGap(_WideColumns):
    """A gap combined from registered metrics' gaps on the same resamples and permutations.

    Its gap is the largest of the parts' gaps and its ratio the smallest of their ratios (fairlearn's
    equalized odds from TPR and FPR), each part over its own usable groups. It has no per-group value,
    so no overall value, worst group, signed gap or spread.

    Attributes:
        name: Its name in gaps.csv and gap_changes.csv.
        label: How it reads in verdicts and the report.
        parts: The registered metrics it combines.
        headline: Whether its gap changes belong to the headline family.
        caveat: A note carried into the gaps table.
        wide_gap: Its metrics.csv column as for :class:`Metric` (``None``: gaps.csv only).
    """

    name: str
    label: str
    parts: tuple[str, ...]
    headline: bool = False
    caveat: str = ""
    wide_gap: str | None = DEFAULT_WIDE_GAP

    @property
    def needs_threshold(self) -> bool:
        """Whether any part is evaluated at the operating point."""
        return any(get_metric(p).needs_threshold for p in self.parts)

    @property
    def overall_columns(self) -> tuple[str, ...]:
        """Always empty: a derived gap has no overall value."""
        return ()


_METRICS: dict[str, Metric] = {}
_DERIVED: dict[str, DerivedGap] = {}


def _check_columns(entry: Metric | DerivedGap) -> None:
    """Two entries writing one metrics.csv column would overwrite each other's values silently."""
    taken = {
        c: other.name
        for other in (*_METRICS.values(), *_DERIVED.values())
        if other.name != entry.name
        for c in (*other.overall_columns, *other.gap_columns)
    }
    clashes = sorted({c: taken[c] for c in (*entry.overall_columns, *entry.gap_columns) if c in taken}.items())
    if clashes:
        raise ValueError(
            f"metric {entry.name!r}: metrics.csv columns already used: "
            + ", ".join(f"{c} (by {owner!r})" for c, owner in clashes)
        )


def register_metric(metric: Metric, *, force: bool = False) -> Metric:
    """Add ``metric`` to every table, its gap and the report.

    Args:
        metric: The definition.
        force: Replace a registered metric of the same name (it keeps its place in the order).

    Returns:
        ``metric``.

    Raises:
        ValueError: The name is taken (without ``force``), ``stratify`` is not ``"label"`` or
            ``"none"``, ``permute_within`` is not one of :data:`PERMUTATION_STRATA` (or ``None``), or
            one of its metrics.csv columns is another entry's.
    """
    if (metric.name in _METRICS and not force) or metric.name in _DERIVED:
        raise ValueError(f"metric {metric.name!r} is already registered")
    if metric.stratify not in ("label", "none"):
        raise ValueError(f"metric {metric.name!r}: stratify must be 'label' or 'none', got {metric.stratify!r}")
    if metric.permute_within is not None and metric.permute_within not in PERMUTATION_STRATA:
        raise ValueError(
            f"metric {metric.name!r}: permute_within must be one of {PERMUTATION_STRATA} or None, "
            f"got {metric.permute_within!r}"
        )
    if metric.permute_within == "predicted" and not metric.needs_threshold:
        raise ValueError(f"metric {metric.name!r}: permute_within='predicted' needs the operating threshold")
    _check_columns(metric)
    _METRICS[metric.name] = metric
    return metric


def register_derived_gap(gap: DerivedGap, *, force: bool = False) -> DerivedGap:
    """Add a gap combined from registered metrics (see :class:`DerivedGap`) to the gap tables.

    Raises:
        ValueError: The name is taken (without ``force``), a part is not a registered metric, or one
            of its metrics.csv columns is another entry's.
    """
    if (gap.name in _DERIVED and not force) or gap.name in _METRICS:
        raise ValueError(f"metric {gap.name!r} is already registered")
    unknown = [p for p in gap.parts if p not in _METRICS]
    if unknown or not gap.parts:
        raise ValueError(f"derived gap {gap.name!r}: parts must be registered metrics, unknown: {unknown}")
    _check_columns(gap)
    _DERIVED[gap.name] = gap
    return gap


def unregister_metric(name: str) -> None:
    """Remove a metric or derived gap (a plug-in's or a test's temporary entry).

    Raises:
        KeyError: ``name`` is not registered.
        ValueError: A registered derived gap is combined from it.
    """
    if name in _DERIVED:
        del _DERIVED[name]
        return
    users = [d.name for d in _DERIVED.values() if name in d.parts]
    if users:
        raise ValueError(f"metric {name!r} is a part of derived gaps {users}; unregister those first")
    get_metric(name)
    del _METRICS[name]


def get_metric(name: str) -> Metric:
    """The registered metric ``name``.

    Raises:
        KeyError: It is not registered (the message lists those that are).
    """
    try:
        return _METRICS[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}; known: {sorted(_METRICS)}") from None


def metric_names() -> tuple[str, ...]:
    """Registered metrics in registration order (the order of every table)."""
    return tuple(_METRICS)


def derived_gaps() -> tuple[DerivedGap, ...]:
    """Registered derived gaps in registration order (after the metrics in the gap tables)."""
    return tuple(_DERIVED.values())


def gap_metric_names() -> tuple[str, ...]:
    """The ``metric`` values of the gaps tables, in their order: every metric, then the derived gaps.

    Example:
        >>> gap_metric_names()[-2:]
        ('ece', 'equalized_odds')
    """
    return (*_METRICS, *_DERIVED)


def get_gap(name: str) -> Metric | DerivedGap:
    """The entry behind a gaps-table ``metric`` value: a metric or a derived gap.

    Raises:
        KeyError: Neither is registered under ``name``.
    """
    if name in _DERIVED:
        return _DERIVED[name]
    try:
        return _METRICS[name]
    except KeyError:
        raise KeyError(f"unknown gap metric {name!r}; known: {sorted(gap_metric_names())}") from None


def gap_label(name: str) -> str:
    """How a gaps-table metric reads; an unregistered name (an older table's) with spaces for underscores.

    Example:
        >>> gap_label("balanced_accuracy"), gap_label("equalized_odds"), gap_label("retired_metric")
        ('balanced accuracy', 'equalized odds', 'retired metric')
    """
    return get_gap(name).label if name in gap_metric_names() else name.replace("_", " ")


def is_label_conditional(name: str) -> bool:
    """Whether a metric is conditional on the label (``stratify == "label"``).

    AUROC, TPR, FPR, balanced accuracy: such a metric is flagged in a group with fewer than
    ``min_class_size`` rows of either class.

    Example:
        >>> is_label_conditional("auroc"), is_label_conditional("selection_rate")
        (True, False)
    """
    return get_metric(name).stratify == "label"


def headline_metrics() -> tuple[str, ...]:
    """Gap metrics whose changes form the headline family, in gaps-table order.

    Example:
        >>> headline_metrics()
        ('auroc', 'tpr')
    """
    return tuple(n for n in gap_metric_names() if get_gap(n).headline)


def is_headline(name: str) -> bool:
    """Whether gap changes of ``name`` belong to the headline family (False for unregistered names)."""
    return name in headline_metrics()


def reference_functions(*, threshold: float, n_bins: int, names=None) -> dict[str, Callable]:
    """The MetricFrame metric dict for ``names`` (default: every registered metric)."""
    return {n: partial(get_metric(n).reference, threshold=threshold, n_bins=n_bins) for n in (names or metric_names())}
