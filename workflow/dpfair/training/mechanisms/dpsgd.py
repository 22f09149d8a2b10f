"""``dpsgd``: record-level DP-SGD (Abadi et al. 2016) with Opacus's loader, optimizer and accountant.

Poisson sampling of rows at q = 1/len(loader), flat per-sample clipping at C (by the configured clipping
backend), Gaussian noise σ·C, σ calibrated so the accountant reaches the target after exactly the steps
training takes. Ledger: ``SelfComposed(PoissonSampled(q, Gaussian(σ)), steps)`` over n_train rows.
"""

from __future__ import annotations

import functools

from opacus.accountants.utils import get_noise_multiplier
from opacus.data_loader import DPDataLoader
from torch.utils.data import TensorDataset
from typing_extensions import override

from dpfair.errors import PrivacyError
from dpfair.privacy.clipping.policy import get_clip_policy
from dpfair.privacy.ledger import poisson_gaussian, replay_epsilon
from dpfair.privacy.params import is_private
from dpfair.training.mechanisms.base import Mechanism, register_mechanism
from dpfair.training.mechanisms.text import CLIPPING_PATHS, COVERS_ROWS, group_privacy_text, record_unit_text
from dpfair.training.noise import make_engine
from dpfair.training.recipe import step_recipe
from dpfair.training.steps import Trainer, make_nonprivate, make_private, row_loader

#: Step by which σ grows until the independent PLD replay confirms the target too.
PLD_STEP = 1.001


@functools.lru_cache(maxsize=256)
def calibrate_sigma(*, epsilon: float, delta: float, sample_rate: float, steps: int, accountant: str) -> float:
    """σ for which ``accountant`` reaches ``epsilon`` after ``steps`` Poisson-sampled Gaussian steps at ``sample_rate``.

    Opacus's search (PRV by default) can land a hair above what dp-accounting's PLD accountant, the card's
    and ``tools/replay_ledgers.py``'s independent check, gives for the same events; σ then grows by 0.1%
    steps until PLD is within the target as well, so every card replays to at most its target. Cached: the
    seeds and methods of a cell share the schedule.
    """
    sigma = get_noise_multiplier(
        target_epsilon=epsilon, target_delta=delta, sample_rate=sample_rate, steps=steps, accountant=accountant
    )

    def pld(s: float) -> float:
        event = poisson_gaussian(noise_multiplier=s, sample_rate=sample_rate, steps=steps)
        return replay_epsilon(event, accountant="pld", delta=delta)

    while not pld(sigma) <= epsilon:
        sigma *= PLD_STEP
    return sigma


@register_mechanism("dpsgd")
class DPSGD(Mechanism):
    """Record-level DP-SGD: Poisson-sampled rows, each gradient clipped to norm at most C, Gaussian noise σ·C."""

    unit = "record"

    @override
    def make_trainer(
        self, *, model, optimizer, data, config, epsilon, delta, generator, noise_generator=None
    ) -> Trainer:
        base_loader = row_loader(
            TensorDataset(data.x, data.y.float()),
            batch_size=config.batch_size,
            generator=generator,
            calibration_size=config.calibration_size,
        )
        recipe = step_recipe(config, label_prior=data.label_prior, generator=generator)
        if not is_private(epsilon):
            return make_nonprivate(model=model, optimizer=optimizer, data_loader=base_loader, recipe=recipe)
        engine = make_engine(config)
        # Calibrate for what the accountant will charge: Opacus's Poisson loader samples at q = 1/k
        # (k = ceil(n/batch)) but yields int(1/q) batches per epoch, which float rounding makes k - 1
        # for some k (93, 99, 105, ...), and make_private charges 1/len(loader) per step. Calibrating
        # for k steps at 1/k (what make_private_with_epsilon does, also miscounting) overspends ε.
        batches_per_epoch = len(DPDataLoader.from_data_loader(base_loader))
        # a tuning trial brings its σ, calibrated for the whole procedure (dpfair.training.tuning)
        sigma = config.noise_multiplier or calibrate_sigma(
            epsilon=epsilon,
            delta=delta,
            sample_rate=1.0 / batches_per_epoch,
            steps=config.epochs * batches_per_epoch,
            accountant=config.accountant,
        )
        trainer = make_private(
            engine=engine,
            model=model,
            optimizer=optimizer,
            data_loader=base_loader,
            noise_multiplier=sigma,
            max_grad_norm=config.max_grad_norm,
            mode=config.clipping_backend,
            recipe=recipe,
            clip_policy=get_clip_policy(config.clip_policy),
            noise_generator=noise_generator,
            calibration_size=config.calibration_size,
        )

        # Opacus charges q = 1/len(loader) (at least the sampling rate 1/k): the ledger holds what is charged
        charged_q = 1.0 / len(trainer.loader)

        def ledger(steps: int):
            return poisson_gaussian(noise_multiplier=trainer.noise_multiplier, sample_rate=charged_q, steps=steps)

        def check(steps: int) -> None:
            # Opacus's engine accountant was charged independently of the ledger: they must agree
            accounted = sum(n for _, _, n in engine.accountant.history)
            if accounted != steps:
                raise PrivacyError(f"the accountant saw {accounted} steps but training took {steps}")
            rates = {q for _, q, _ in engine.accountant.history}
            if rates != {charged_q}:
                raise PrivacyError(f"the accountant charged q = {sorted(rates)} but the ledger holds {charged_q:.6g}")

        trainer.ledger, trainer.check = ledger, check
        return trainer

    @override
    def card_text(self, *, meta, record):
        path = CLIPPING_PATHS.get(record.get("clipping_backend"), record.get("clipping_backend"))
        k = int(record.get("augmult", 1) or 1)
        aug = f"; a sample's gradient is the mean over its {k} augmented copies before clipping" if k > 1 else ""
        return {
            "clipping": (
                f"{'normalized (automatic, Bu et al. 2023: C/(norm + 0.01))' if record.get('clip_policy') == 'normalized' else 'flat'} "
                f"per-sample clipping (all trainable parameters, one norm){aug}, computed by {path}"
            ),
            "privacy_unit_enforcement": record_unit_text(meta),
            "guarantee_covers": COVERS_ROWS,
        }

    @override
    def group_privacy(self, *, meta: dict, epsilon: float, delta: float) -> dict | None:
        return group_privacy_text(meta=meta, epsilon=epsilon, delta=delta)
