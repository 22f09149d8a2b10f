"""A controlled group imbalance for checking the DP fairness mitigations against the papers' claims.

The set-up of Xu et al. (2021) and Esipova et al. (2023) in miniature: a minority group whose inputs are
larger (so its per-sample gradients are larger and flat clipping cuts them more) and whose label depends
on a different feature than the majority's (so what the minority needs is a direction the majority's
gradients do not supply). Flat clipping at C shrinks the minority's pull to its head count; DPSGD-F
raises the minority's bound because its samples are clipped more often, Global-Adapt keeps its larger
magnitude by scaling everyone by C/Z instead.

:func:`group_accuracy` trains a logistic regression with a registered mechanism's own trainer (its
calibration, batches, clip policy, noise and ledger) and returns each group's test accuracy.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from dpfair.training.config import TrainConfig
from dpfair.training.mechanisms import TrainingData, get_mechanism
from torch import nn


def make_imbalanced(
    *, n: int, minority_share: float = 0.1, scale: float = 4.0, dim: int = 8, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, pd.DataFrame]:
    """``(x, y, groups)``: group ``A`` (majority) has label x₀ > 0, group ``B`` has label x₁ > 0 and inputs × ``scale``."""
    rng = np.random.default_rng(seed)
    minority = rng.uniform(size=n) < minority_share
    x = rng.normal(size=(n, dim))
    y = np.where(minority, x[:, 1] > 0, x[:, 0] > 0).astype(np.float32)
    x[minority] *= scale
    groups = pd.DataFrame({"group": np.where(minority, "B", "A")})
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y), groups


def group_accuracy(
    *,
    method: str,
    epsilon: float,
    x: torch.Tensor,
    y: torch.Tensor,
    groups: pd.DataFrame,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    groups_test: pd.DataFrame,
    config: TrainConfig,
    delta: float,
    seed: int,
) -> dict[str, float]:
    """Each test group's accuracy of a logistic regression trained by ``method`` at ``epsilon``."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(x.shape[1], 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr)
    trainer = get_mechanism(method).make_trainer(
        model=model,
        optimizer=optimizer,
        data=TrainingData(x=x, y=y, groups=groups),
        config=config,
        epsilon=epsilon,
        delta=delta,
        generator=torch.Generator().manual_seed(seed),
    )
    for _ in range(config.epochs):
        for batch in trainer.loader:
            trainer.step(*batch)
    trainer.close()
    with torch.no_grad():
        pred = (trainer.module(x_test).squeeze(-1) > 0).float()
    correct = (pred == y_test).numpy()
    labels = groups_test.iloc[:, 0].to_numpy()
    return {g: float(correct[labels == g].mean()) for g in sorted(set(labels))}
