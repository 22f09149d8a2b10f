"""Metric building blocks against hand-computed values (subgroup metrics: tests/test_fairness.py)."""

import math

import pytest
from dpfair.metrics import count, count_positive, safe_auroc


def test_auroc_by_hand():
    # pairs (pos, neg): 0.35>0.1 yes, 0.35>0.4 no, 0.8>0.1 yes, 0.8>0.4 yes -> 3/4
    assert safe_auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    # a tie between a positive and a negative counts one half
    assert safe_auroc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)


def test_one_class_auroc_is_nan_not_an_error():
    assert math.isnan(safe_auroc([1, 1, 1], [0.2, 0.3, 0.9]))


def test_counts():
    assert count([0, 1, 1], None) == 3 and count_positive([0, 1, 1], None) == 2
