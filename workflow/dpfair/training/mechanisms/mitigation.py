"""The base of the DP fairness mitigations (``dpsgd_f``, ``dpsgd_global_adapt``).

What they share: batches that carry each row's group code, the budget split between the gradient and the auxiliary counts, and the per-step noise
bound; the step is :func:`dpfair.training.steps.make_bookkeeping_trainer`'s.

Record-level DP-SGD otherwise: Poisson sampling of rows at q = 1/len(loader) from the same seeded
generator as ``dpsgd`` (so a seed's runs share batches across methods and pair in the comparison), the
clipped sum computed by the book-keeping backend with the method's clip policy
(``dpfair.privacy.clipping.adaptive``), Gaussian noise σ_grad · (the policy's bound), division by the expected batch
size. The ledger is the joint per-step event of ``dpfair.privacy.clipping.adaptive.joint_ledger``, calibrated to the
target. ε = ∞ is ``dpsgd``'s non-private arm exactly (same loop and batches; no groups used).

Settings (``mitigation:`` in a benchmark, per dataset over the benchmark's): ``attribute`` (the sensitive
attribute the method targets, e.g. ``site``; an intersection as ``sex:age_group``), ``aux_budget_share``
and, for Global-Adapt, ``global_initial_threshold``, ``global_target_exceed``, ``global_threshold_lr``.

Cards: record-level, so a patient with several rows gets :meth:`MitigationMechanism.group_privacy` as ``dpsgd``
does; beyond the guarantee, :meth:`MitigationMechanism.also_releases` lists DPSGD-F's groups where they were
read from the training rows (:func:`group_codes`). The noise bounds and the policies' statistics in the record
are functions of the noisy counts only, covered by the ledger.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import torch
from opacus.data_loader import DPDataLoader
from torch.utils.data import TensorDataset
from typing_extensions import override

from dpfair.errors import ConfigError
from dpfair.privacy.clipping.adaptive import joint_ledger, split_noise
from dpfair.privacy.clipping.policy import ClipPolicy
from dpfair.privacy.params import is_private
from dpfair.training.mechanisms.base import Mechanism, TrainingData, require_bookkeeping, require_plain_recipe
from dpfair.training.mechanisms.dpsgd import calibrate_sigma
from dpfair.training.mechanisms.text import CLIPPING_PATHS, group_privacy_text, record_unit_text
from dpfair.training.noise import derived_generator
from dpfair.training.steps import Trainer, make_bookkeeping_trainer, make_nonprivate, row_loader

#: Defaults of the ``mitigation:`` settings (the schema documents them).
DEFAULTS = {
    "attribute": None,
    "aux_budget_share": 0.05,
    "global_initial_threshold": None,  # None: start at C (flat clipping until Z adapts)
    "global_target_exceed": 0.01,  # the authors' reference value (1% of the batch above Z)
    "global_threshold_lr": 0.5,
}


def mitigation_settings(config) -> dict:
    """The run's ``mitigation`` settings over :data:`DEFAULTS` (``TrainConfig.mitigation`` may be absent)."""
    given = dict(getattr(config, "mitigation", None) or {})
    unknown = set(given) - set(DEFAULTS)
    if unknown:
        raise ConfigError(f"mitigation has unknown keys {sorted(unknown)}; allowed: {sorted(DEFAULTS)}")
    return {**DEFAULTS, **given}


#: Where a run's group levels came from (``mitigation_groups_source`` in the run record).
LEVELS_DECLARED = "declared"
LEVELS_FROM_TRAINING = "training rows"


def group_codes(
    groups: pd.DataFrame | None, attribute: str | None, *, method: str
) -> tuple[torch.Tensor, list[str], str]:
    """Each training row's group code (0..K-1) for ``attribute``, the K group labels and where they came from.

    The levels are the declared ones where every part of ``attribute`` is a categorical column (its
    categories, in their order; an intersection takes their product): a declaration made without the
    training rows (e.g. the held-out splits' levels) is public, and a training row outside it is refused.
    Otherwise they are the levels present in the training rows, sorted: a function of those rows that no
    ε covers, which the run's card lists (:meth:`MitigationMechanism.also_releases`). Either way the rows'
    codes reach training only through the noisy counts of the clip policy.

    Example:
        >>> frame = pd.DataFrame({"site": pd.Categorical(["A", "A"], categories=["A", "B"])})
        >>> codes, levels, source = group_codes(frame, "site", method="dpsgd_f")
        >>> codes.tolist(), levels, source
        ([0, 0], ['A', 'B'], 'declared')
        >>> group_codes(frame.astype(str), "site", method="dpsgd_f")[1:]
        (['A'], 'training rows')
    """
    if not attribute:
        raise ConfigError(
            f"method {method} needs the attribute it targets: set mitigation.attribute for this dataset "
            "(datasets.<name>.mitigation.attribute, one of its sensitive attributes)"
        )
    parts = attribute.split(":")
    if groups is None or any(p not in groups.columns for p in parts):
        have = [] if groups is None else list(groups.columns)
        raise ConfigError(
            f"mitigation.attribute = {attribute!r} is not a sensitive attribute of this dataset; it has {have}"
        )
    if all(isinstance(groups[p].dtype, pd.CategoricalDtype) for p in parts):
        if groups[parts].isna().any(axis=None):  # a value outside a declaration is a missing one
            raise ConfigError(f"method {method}: some training rows' {attribute} is not among its declared levels")
        declared = [list(map(str, groups[p].cat.categories)) for p in parts]
        levels, source = [":".join(combo) for combo in itertools.product(*declared)], LEVELS_DECLARED
        labels = groups[parts].astype(object).astype(str).agg(":".join, axis=1)
    else:
        labels = groups[parts].astype(str).agg(":".join, axis=1)
        # no public list: the training rows' own levels (sorted, so the codes do not follow the row order)
        levels, source = sorted(labels.unique()), LEVELS_FROM_TRAINING
    codes = pd.Categorical(labels, categories=levels).codes.astype(np.int64)
    return torch.from_numpy(codes), levels, source


class MitigationMechanism(Mechanism):
    """Record-level DP-SGD with a group-aware (or global-scaling) clip policy and a noisy auxiliary release."""

    unit = "record"
    uses_groups = True
    targets_attribute = True
    #: ε = ∞ is dpsgd's non-private arm exactly, so a grid that runs dpsgd does not train it twice.
    nonprivate_arm_of = "dpsgd"

    def make_policy(
        self,
        *,
        config,
        settings: dict,
        n_groups: int,
        sigma_aux: float,
        expected_batch_size: float,
        generator: torch.Generator,
    ) -> tuple[ClipPolicy, float]:
        """The clip policy and the clipper's static cap on every unit's clipped norm."""
        raise NotImplementedError

    @override
    def make_trainer(
        self, *, model, optimizer, data: TrainingData, config, epsilon, delta, generator, noise_generator=None
    ) -> Trainer:
        require_plain_recipe(config, method=self.name)  # the mitigations clip with their own policies
        settings = mitigation_settings(config)
        if not is_private(epsilon):  # dpsgd's non-private arm: same loop and batches, no groups
            base = row_loader(
                TensorDataset(data.x, data.y.float()),
                batch_size=config.batch_size,
                generator=generator,
                calibration_size=config.calibration_size,
            )
            return make_nonprivate(model=model, optimizer=optimizer, data_loader=base)
        if self.uses_groups:
            codes, levels, levels_source = group_codes(data.groups, settings["attribute"], method=self.name)
        else:
            codes, levels, levels_source = torch.zeros(len(data.y), dtype=torch.long), ["all"], None
        require_bookkeeping(model, config, method=self.name, why="clips with a clip policy")
        base = row_loader(
            TensorDataset(data.x, data.y.float(), codes),
            batch_size=config.batch_size,
            generator=generator,
            calibration_size=config.calibration_size,
        )
        loader = DPDataLoader.from_data_loader(base, distributed=False)
        charged_q = 1.0 / len(loader)  # at least the sampling rate (see mechanisms.dpsgd)
        sigma = calibrate_sigma(  # cached per schedule: both mitigations of a cell share it
            epsilon=epsilon,
            delta=delta,
            sample_rate=charged_q,
            steps=config.epochs * len(loader),
            accountant=config.accountant,
        )
        sigma_grad, sigma_aux = split_noise(sigma=sigma, aux_share=float(settings["aux_budget_share"]))
        rows = len(data.y) if config.calibration_size is None else int(config.calibration_size)
        expected = float(loader.sample_rate) * rows
        # the counts' noise: a stream of this run's own, as the gradient's (dpfair.training.noise)
        aux_generator = derived_generator(noise_generator, secure_mode=config.secure_mode)
        policy, cap = self.make_policy(
            config=config,
            settings=settings,
            n_groups=len(levels),
            sigma_aux=sigma_aux,
            expected_batch_size=expected,
            generator=aux_generator,
        )
        bounds: list[float] = []

        def noise_bound() -> float:
            # noise σ_grad × this step's sensitivity, a function of the noisy counts only
            bounds.append(policy.noise_bound())
            return bounds[-1]

        def stats() -> dict:
            # What the guarantee covers, and what not (also_releases): the σs are functions of the schedule
            # (ε, δ, q, steps: public settings and the training split's size, which the card lists); the noise
            # bounds and the policy's statistics are functions of the noisy counts only, post-processing of
            # the charged auxiliary release; the groups, where read from the training rows, are not covered.
            return {
                "mitigation_attribute": settings["attribute"] if self.uses_groups else None,
                "mitigation_groups": levels if self.uses_groups else [],
                "mitigation_groups_source": levels_source,
                "aux_budget_share": float(settings["aux_budget_share"]),
                "noise_multiplier_total": float(sigma),
                "aux_noise_multiplier": float(sigma_aux),
                "noise_bound_mean": float(np.mean(bounds)) if bounds else float("nan"),
                "noise_bound_max": float(np.max(bounds)) if bounds else float("nan"),
                **self.policy_stats(policy),
            }

        # no Opacus engine: the joint ledger of gradient and counts is the whole account
        return make_bookkeeping_trainer(
            model=model,
            optimizer=optimizer,
            loader=loader,
            noise_multiplier=sigma_grad,
            max_grad_norm=config.max_grad_norm,
            expected_batch_size=int(expected),
            row_ids="groups",
            clip_policy=policy,
            clip_cap=cap,
            noise_bound=noise_bound,
            ledger=lambda n: joint_ledger(sigma_grad=sigma_grad, sigma_aux=sigma_aux, sample_rate=charged_q, steps=n),
            stats=stats,
            noise_generator=noise_generator,
            secure_mode=config.secure_mode,
            calibration_size=config.calibration_size,
        )

    def policy_stats(self, policy) -> dict:
        """Statistics the policy adds to the run record (none by default).

        Only functions of the policy's noisy releases and public settings: an exact statistic of the
        training rows here would be released outside the guarantee and would have to be listed by
        :meth:`also_releases`.
        """
        return {}

    @override
    def group_privacy(self, *, meta: dict, epsilon: float, delta: float) -> dict | None:
        # record-level like dpsgd: a patient with k rows is protected only as a group of k rows
        return group_privacy_text(meta=meta, epsilon=epsilon, delta=delta)

    @override
    def also_releases(self, *, meta: dict, record: dict) -> list[str]:
        if record.get("mitigation_groups_source") != LEVELS_FROM_TRAINING:
            return []  # declared levels are public; Global-Adapt reads no groups
        attribute = record.get("mitigation_attribute")
        levels = ", ".join(map(str, record.get("mitigation_groups") or []))
        return [
            f"the levels of {attribute} present in the training rows ({levels}), read from them: they set the "
            "number of groups K the clip bounds are computed for and the clipper's cap C·(1 + K)"
        ]

    @override
    def card_text(self, *, meta, record):
        raise NotImplementedError

    def _common_card(self, *, meta, record, clipping: str) -> dict:
        path = CLIPPING_PATHS.get(record.get("clipping_backend"), record.get("clipping_backend"))
        split = (
            f"; budget split: {100 * record.get('aux_budget_share', float('nan')):g}% of the step's σ⁻² on the auxiliary "
            f"counts (σ_aux = {record.get('aux_noise_multiplier', float('nan')):.4g}), the rest on the gradient "
            f"(σ_grad = {record.get('noise_multiplier', float('nan')):.4g}); the ledger charges each step one "
            f"Poisson-subsampled Gaussian at σ_eff = {record.get('noise_multiplier_total', float('nan')):.4g} (both "
            "queries read the same batch)"
        )
        return {
            "clipping": f"{clipping}, computed by {path}{split}",
            "privacy_unit_enforcement": record_unit_text(meta),
        }
