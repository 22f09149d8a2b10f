"""``dpsgd_patient``: patient-level (user-level) DP-SGD.

Each step Poisson-samples patients (rate q over the training split's patients) and takes every row of each
sampled patient, optionally only the first ``privacy.max_rows_per_patient`` rows in data order (a rule
fixed before training). The summed gradient of a patient's rows is clipped to C as one vector
(``sum_u c_u · sum_{i∈u} grad_i``, c_u = min(1, C/‖sum_{i∈u} grad_i‖)), Gaussian noise σ·C is added, and
the result divided by the expected number of patients per batch. Adding or removing one patient moves
the clipped sum by at most C, so the Poisson-subsampled Gaussian ledger holds over n_patients
(McMahan et al., "Learning Differentially Private Recurrent Language Models", ICLR 2018, DP-FedAvg's
user-level sampling; here within one dataset, as in Levy et al., NeurIPS 2021, "Learning with User-Level
Privacy").

Per-patient norms are exact in the book-keeping backend: per-sample gradients summed per patient
(``BookKeepingClipper.clip_backward(units=...)``); Opacus's modes clip per row, so they are refused here.
``tests/test_patient_dpsgd.py`` compares it with a slow reference (per-row autograd gradients summed per
patient, clipped, noised with the same seed) for every registered model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from opacus.utils.uniform_sampler import UniformWithReplacementSampler
from typing_extensions import override

from dpfair.errors import ConfigError
from dpfair.privacy.clipping.policy import get_clip_policy
from dpfair.privacy.ledger import poisson_gaussian
from dpfair.privacy.params import is_private
from dpfair.training.mechanisms.base import Mechanism, register_mechanism, require_bookkeeping
from dpfair.training.mechanisms.dpsgd import calibrate_sigma
from dpfair.training.mechanisms.text import patient_word
from dpfair.training.recipe import step_recipe
from dpfair.training.steps import Trainer, make_bookkeeping_trainer


class PatientBatches:
    """Poisson batches of patients, yielded as ``(x, y, units)`` over the sampled patients' rows.

    ``units[i]`` is row i's patient among the batch's patients (0..U-1). Sampling is Opacus's
    ``UniformWithReplacementSampler`` over patients, ``int(1/q)`` batches per epoch.
    """

    def __init__(
        self,
        *,
        x: torch.Tensor,
        y: torch.Tensor,
        patient_id,
        batch_size: int,
        generator: torch.Generator,
        max_rows: int | None = None,
        calibration_size: int | None = None,
    ):
        codes, _ = pd.factorize(pd.Series(np.asarray(patient_id)).astype(str), sort=False)
        order = np.argsort(codes, kind="stable")  # rows of a patient in data order
        bounds = np.flatnonzero(np.diff(codes[order])) + 1
        rows = np.split(order, bounds)
        if max_rows is not None:
            rows = [r[:max_rows] for r in rows]
        self.rows = [torch.from_numpy(r.astype(np.int64)) for r in rows]
        self.x, self.y = x, y
        self.n_patients = len(self.rows)
        self.n_rows_used = sum(len(r) for r in self.rows)
        #: same batches per epoch as row-level DP-SGD at this batch size, so the expected rows per batch match;
        #: a canary run's rows are its calibration size, fixed before its canaries were drawn in
        # (the calibration size counts rows before the cap; the rows the cap removes belong to training
        # patients, not to the one-row canaries, so they do not depend on the canaries' bits)
        removed = len(order) - self.n_rows_used
        rows_for_rate = self.n_rows_used if calibration_size is None else int(calibration_size) - removed
        self.sample_rate = 1.0 / int(np.ceil(rows_for_rate / batch_size))
        #: the patients the noisy sum's divisor counts: a canary is a one-row patient of its own, so the
        #: calibration's expected canaries beyond the rows given are as many patients; None: the patients given
        self.calibration_units = None if calibration_size is None else len(self.rows) + rows_for_rate - self.n_rows_used
        self.sampler = UniformWithReplacementSampler(
            num_samples=self.n_patients, sample_rate=self.sample_rate, generator=generator
        )
        self.dataset = self.rows  # len(loader.dataset): the units sampled from

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self):
        for patients in self.sampler:
            if not patients:
                yield self.x[:0], self.y[:0], torch.zeros(0, dtype=torch.long)
                continue
            parts = [self.rows[p] for p in patients]
            rows = torch.cat(parts)
            units = torch.repeat_interleave(torch.arange(len(parts)), torch.tensor([len(p) for p in parts]))
            yield self.x[rows], self.y[rows], units


@register_mechanism("dpsgd_patient")
class PatientDPSGD(Mechanism):
    """Patient-level DP-SGD: Poisson sampling of patients, every patient's rows clipped together as one unit.

    Neighbouring datasets differ in one patient's rows, so the guarantee holds per patient however many
    rows (images, visits) each has.
    """

    unit = "patient"

    @override
    def n_units(self, data):
        if data.patient_id is None:
            raise ConfigError(
                "method dpsgd_patient needs patient ids, and this dataset has none (one row per person, or the "
                "source has no ids): use method dpsgd"
            )
        return int(pd.Series(np.asarray(data.patient_id)).nunique())

    @override
    def make_trainer(
        self, *, model, optimizer, data, config, epsilon, delta, generator, noise_generator=None
    ) -> Trainer:
        self.n_units(data)
        loader = PatientBatches(
            x=data.x,
            y=data.y.float(),
            patient_id=data.patient_id,
            batch_size=config.batch_size,
            generator=generator,
            max_rows=config.max_rows_per_patient,
            calibration_size=config.calibration_size,
        )
        q = loader.sample_rate
        units = loader.n_patients if loader.calibration_units is None else loader.calibration_units
        expected_units = q * units
        recipe = step_recipe(config, label_prior=data.label_prior, generator=generator)
        if not is_private(epsilon):

            def plain_step(x, y, units):
                optimizer.zero_grad(set_to_none=False)
                xs, ys, _ = recipe.expand(x, y, units)
                losses = recipe.losses(model(xs), ys)
                if len(y):
                    (losses.sum() / len(y)).backward()
                optimizer.step()
                return float(losses.detach().sum())

            return Trainer(
                mode="nonprivate",
                module=model,
                optimizer=optimizer,
                loader=loader,
                step=plain_step,
                sample_rate=q,
                expected_batch_size=expected_units,
            )

        require_bookkeeping(model, config, method="dpsgd_patient", why="clips each patient's summed gradient")
        steps = config.epochs * len(loader)
        sigma = config.noise_multiplier or calibrate_sigma(
            epsilon=epsilon, delta=delta, sample_rate=q, steps=steps, accountant=config.accountant
        )
        # no Opacus engine: the ledger, at q over patients, is the whole account
        return make_bookkeeping_trainer(
            model=model,
            optimizer=optimizer,
            loader=loader,
            noise_multiplier=sigma,
            max_grad_norm=config.max_grad_norm,
            expected_batch_size=expected_units,
            row_ids="units",
            recipe=recipe,
            clip_policy=get_clip_policy(config.clip_policy),
            ledger=lambda n: poisson_gaussian(noise_multiplier=float(sigma), sample_rate=q, steps=n),
            noise_generator=noise_generator,
            secure_mode=config.secure_mode,
            calibration_size=loader.calibration_units,
        )

    @override
    def card_text(self, *, meta, record):
        who = patient_word(meta)
        cap = record.get("max_rows_per_patient")
        rows = f"the first {cap} rows in data order (a cap fixed before training)" if cap else "all rows"
        text = {
            "clipping": (
                f"per-{who} clipping: the summed gradient of each sampled {who}'s rows is clipped to C as one vector, "
                "computed by dpfair book-keeping (per-sample gradients summed per unit, exact)"
            ),
            "privacy_unit_enforcement": (
                f"Poisson sampling of {who}s (q over the training split's {who}s), {rows} of each sampled {who}; "
                f"the split keeps each {who} in one split"
            ),
            "guarantee_covers": (
                f"the model's parameters with respect to all training rows of one {who} (adding or removing a {who}); "
                f"validation and test {who}s have no DP protection, and the released model depends on the validation "
                "rows wherever the card's released_outside_guarantee says so"
            ),
        }
        if who != "patient":
            text["privacy_unit_enforcement"] += (
                f". The dataset's ids are {who} ids, not patient ids: a person with several {who}s is protected "
                f"only as a group of them"
            )
        return text
