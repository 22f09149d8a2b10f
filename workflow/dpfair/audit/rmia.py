"""RMIA, the reference-model membership attack of Zarifzadeh, Liu, Chang & Shokri (ICML 2024).

"Low-Cost High-Power Membership Inference Attacks". For a candidate x and the target model θ,

    LR(x, z) = [Pr(x | θ) / Pr(x)] / [Pr(z | θ) / Pr(z)],     score(x) = Pr_z( LR(x, z) ≥ γ ),

where Pr(x | θ) is the model's probability of x's true label, Pr(x) its average over reference models
trained by the same mechanism on random halves of the population (so each x is in about half of them: the
paper's "online" estimate of the marginal), and z ranges over population rows the target never trained on.
With an even number of reference models dpfair trains them on complementary halves, so each row is in
exactly half of them. Probabilities of the true label come from logits (``log σ(±logit)``), so saturated
sigmoids keep their order. We use γ = 1 by default (the paper tunes γ in [1, 2]; AUROC barely moves).
A row x that is itself in the z set is compared with the others only.

Written here (not taken from ML Privacy Meter or LeakPro) because both bring their own training loops,
data handlers and dependencies; the score itself is a few array operations. Tests check it on a planted
signal against a slow pairwise reference.
"""

from __future__ import annotations

import numpy as np


def true_label_log_prob(*, logits, labels) -> np.ndarray:
    """Log Pr(true label | model) from logits: ``log σ(z)`` for label 1, ``log σ(−z)`` for label 0.

    Example:
        >>> true_label_log_prob(logits=[0.0, 50.0], labels=[1, 0]).round(3)
        array([ -0.693, -50.   ])
    """
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels)
    if z.shape[-1] != y.shape[-1]:
        raise ValueError(f"logits have {z.shape[-1]} rows for {y.shape[-1]} labels")
    return -np.logaddexp(0.0, np.where(y == 1, -z, z))


def rmia_scores(*, target_logits, reference_logits, labels, population: np.ndarray, gamma: float = 1.0) -> np.ndarray:
    """RMIA score of every row: the fraction of population rows z with LR(x, z) ≥ ``gamma``.

    Args:
        target_logits: the target model's logit per row, shape (n,).
        reference_logits: each reference model's logit per row, shape (k, n), k ≥ 1.
        labels: the rows' true labels (0/1), shape (n,).
        population: boolean mask (n,) of the rows used as z (non-members of the target).
        gamma: the likelihood-ratio threshold γ ≥ 1.

    Example:
        >>> labels = np.array([1, 1, 1, 1])
        >>> target = np.array([3.0, 0.0, 0.0, 0.0])   # row 0 fits the target better than the references say
        >>> refs = np.zeros((2, 4))
        >>> rmia_scores(target_logits=target, reference_logits=refs, labels=labels,
        ...             population=np.array([False, True, True, True])).tolist()
        [1.0, 1.0, 1.0, 1.0]
        >>> rmia_scores(target_logits=target, reference_logits=refs, labels=labels,
        ...             population=np.array([False, True, True, True]), gamma=1.5).tolist()
        [1.0, 0.0, 0.0, 0.0]
    """
    labels = np.asarray(labels)
    refs = np.atleast_2d(np.asarray(reference_logits, dtype=np.float64))
    population = np.asarray(population, dtype=bool)
    n = len(labels)
    if refs.shape[1] != n or len(target_logits) != n or len(population) != n:
        raise ValueError(
            f"target ({len(target_logits)}), references {refs.shape}, population ({len(population)}) "
            f"and labels ({n}) must cover the same rows"
        )
    if not population.any():
        raise ValueError("the population (z rows) is empty")
    if gamma < 1:
        raise ValueError(f"gamma must be >= 1, got {gamma}")
    log_target = true_label_log_prob(logits=target_logits, labels=labels)
    # log of the average reference probability (the marginal Pr(x))
    log_marginal = np.logaddexp.reduce(true_label_log_prob(logits=refs, labels=labels), axis=0) - np.log(len(refs))
    log_ratio = log_target - log_marginal
    z = np.sort(log_ratio[population])
    # LR(x, z) ≥ γ  ⟺  log_ratio(z) ≤ log_ratio(x) − log γ
    counts = np.searchsorted(z, log_ratio - np.log(gamma), side="right").astype(np.float64)
    self_counted = population & (np.log(gamma) <= 0)  # x ∈ z compares with itself only when γ = 1
    counts -= self_counted
    n_z = len(z) - population.astype(np.float64)
    return counts / n_z
