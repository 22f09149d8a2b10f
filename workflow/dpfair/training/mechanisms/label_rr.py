"""``label_rr``: label-only DP by randomized response with a prior (RRWithPrior).

Ghazi, Golowich, Kumar, Manurangsi, Zhang, "Deep Learning with Label Differential Privacy", NeurIPS 2021,
Algorithm 2 (one stage). Every training label is randomized once, before training; the model then trains
without privacy on the randomized labels, so by post-processing the whole run is ε-label-DP: neighbouring
datasets differ in one row's label (the ``replace_one`` relation). Features are not protected at all.

RRWithPrior for a label set with prior p: pick the k most likely labels Y_k maximising
Σ_{y∈Y_k} p(y) · e^ε / (e^ε + k − 1); a label in Y_k is kept with probability e^ε / (e^ε + k − 1), else
replaced by another label of Y_k uniformly; a label outside Y_k becomes a uniform draw from Y_k. For binary
labels, k = 2 is randomized response (keep w.p. e^ε/(1 + e^ε)), and k = 1 (chosen when the prior's top
label is likelier than e^ε/(1 + e^ε)) outputs the top label whatever the true one, which is 0-DP.

The prior here is the validation split's prevalence, which the guarantee already treats as public (it fits
preprocessing); it spends none of the training labels' budget.

Ledger: dp-accounting's ``RandomizedResponseDpEvent(noise_parameter, num_buckets=2)`` (output a uniform
bucket w.p. noise_parameter, else the input), so keep = 1 − p/2 = e^ε/(1 + e^ε) gives p = 2/(1 + e^ε); k = 1 is
a ``NoOpDpEvent``. The labels are randomized at ε − :data:`RR_MARGIN`: the ledger's PLD replay rounds ε up
by up to its discretization, and the replayed ε must not exceed the target.

Run record: ``labels_flipped_expected``, the expected number of flipped labels (:func:`expected_flips`), never
the realised count. The realised count is a function of the true labels: with the noisy labels (which the
model may memorise) and every other row's label known, it gives away the last row's label exactly.
"""

from __future__ import annotations

import math

import dp_accounting
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset
from typing_extensions import override

from dpfair.privacy.ledger import PLD_DISCRETIZATION
from dpfair.privacy.params import is_private
from dpfair.training.mechanisms.base import Mechanism, register_mechanism, require_plain_recipe
from dpfair.training.noise import numpy_rng
from dpfair.training.steps import Trainer, make_nonprivate

#: RR runs this far below the target so that the pessimistic PLD replay of its event stays at or below it.
RR_MARGIN = 2 * PLD_DISCRETIZATION


def rr_with_prior_k(*, epsilon: float, prior: float) -> int:
    """How many of the two labels RRWithPrior keeps in play for P(label = 1) = ``prior`` (1 or 2).

    Example:
        >>> rr_with_prior_k(epsilon=1.0, prior=0.5), rr_with_prior_k(epsilon=0.1, prior=0.9)
        (2, 1)
    """
    p_top = max(prior, 1.0 - prior)
    keep_two = math.exp(epsilon) / (math.exp(epsilon) + 1.0)
    return 1 if p_top > keep_two else 2


def randomize_labels(labels: np.ndarray, *, epsilon: float, prior: float, rng: np.random.Generator) -> np.ndarray:
    """RRWithPrior on binary labels; returns the randomized 0/1 labels (the input is left as is).

    Example:
        >>> y = np.zeros(100_000, dtype=int)
        >>> flipped = randomize_labels(y, epsilon=1.0, prior=0.5, rng=np.random.default_rng(0)).mean()
        >>> bool(abs(flipped - 1 / (1 + math.e)) < 0.005)
        True
    """
    labels = np.asarray(labels).astype(int)
    if rr_with_prior_k(epsilon=epsilon, prior=prior) == 1:
        return np.full_like(labels, int(prior >= 0.5))
    flip = rng.uniform(size=labels.shape) < 1.0 / (1.0 + math.exp(epsilon))
    return np.where(flip, 1 - labels, labels)


def expected_flips(*, n: int, epsilon: float, prior: float) -> float:
    """The expected number of labels RRWithPrior flips among ``n`` rows, from public facts only.

    A function of the number of rows, ε and the prior (the validation prevalence), never of the training
    labels: for k = 2 every label flips with probability 1/(1 + e^ε) whatever its value, so n/(1 + e^ε); for
    k = 1 a label flips when it is not the prior's top label, which a row drawn from the prior is with
    probability min(prior, 1 − prior), so n · that. (The realised count, or the sum over the rows of each one's
    flip probability given its label, would read the training labels.)

    Example:
        >>> round(expected_flips(n=1000, epsilon=1.0, prior=0.5), 2), round(expected_flips(n=1000, epsilon=0.1, prior=0.9), 2)
        (268.94, 100.0)
    """
    if rr_with_prior_k(epsilon=epsilon, prior=prior) == 1:
        top = int(prior >= 0.5)  # the label randomize_labels outputs for every row
        return float(n) * (1.0 - prior if top == 1 else prior)
    return float(n) / (1.0 + math.exp(epsilon))


def rr_event(*, epsilon: float, prior: float) -> dp_accounting.DpEvent:
    """The ledger event of RRWithPrior at ``epsilon`` on binary labels."""
    if rr_with_prior_k(epsilon=epsilon, prior=prior) == 1:
        return dp_accounting.NoOpDpEvent()
    return dp_accounting.RandomizedResponseDpEvent(noise_parameter=2.0 / (1.0 + math.exp(epsilon)), num_buckets=2)


@register_mechanism("label_rr")
class LabelRR(Mechanism):
    """Label-only DP: each training label randomized once by RRWithPrior, then training without privacy."""

    unit = "label"
    relation = "replace_one"

    @override
    def make_trainer(
        self, *, model, optimizer, data, config, epsilon, delta, generator, noise_generator=None
    ) -> Trainer:
        require_plain_recipe(config, method=self.name)
        y = data.y
        event = dp_accounting.NoOpDpEvent()
        expected = 0.0
        if is_private(epsilon):
            prior = 0.5 if data.label_prior is None else float(data.label_prior)
            # the run's noise stream (dpfair.training.noise): the batch generator stays the one the ε = ∞ arm uses
            rng = numpy_rng(noise_generator)
            eps_rr = epsilon - RR_MARGIN
            noisy = randomize_labels(y.cpu().numpy(), epsilon=eps_rr, prior=prior, rng=rng)
            # the record gets the expectation, public; the realised count would give away a label (module docstring)
            expected = expected_flips(n=len(noisy), epsilon=eps_rr, prior=prior)
            y = torch.from_numpy(noisy.astype(np.float32))
            event = rr_event(epsilon=eps_rr, prior=prior)
        base_loader = DataLoader(
            TensorDataset(data.x, y.float()), batch_size=config.batch_size, shuffle=True, generator=generator
        )
        trainer = make_nonprivate(model=model, optimizer=optimizer, data_loader=base_loader)
        if is_private(epsilon):
            trainer.mode = "label_rr"
        # released once, before training: the ledger does not grow with steps
        trainer.ledger = lambda steps: event
        trainer.stats = lambda: {"labels_flipped_expected": expected}
        return trainer

    @override
    def card_text(self, *, meta, record):
        return {
            "clipping": "none: labels are randomized once (randomized response with a prior), then training is non-private",
            "privacy_unit_enforcement": "each training row's label is randomized once, independently, before training",
            "guarantee_covers": (
                "the label of one training row only (label differential privacy). Features (images, covariates) are "
                "NOT protected: the model may memorise a patient's inputs, and membership of a row is not hidden"
            ),
        }
