"""``synth_aim`` and ``synth_mst``: release a DP synthetic copy of the training rows once, train on it.

The generative alternative to DP-SGD. A marginal-based synthesizer makes a synthetic table from the training
rows under the run's (ε, δ); the benchmark's model then trains on the synthetic rows without further
privacy, with the recipe every arm uses (dpsgd's ε = ∞ loop and batches), and is scored on the real
held-out rows. Training and everything after it are post-processing of the synthetic rows, so the run's
guarantee is the synthesizer's: every training row (features, label and sensitive attributes), once, for
any number of downstream uses.

- ``synth_mst``: MST (McKenna, Miklau & Sheldon, "Winning the NIST Contest: A scalable and general approach
  to differentially private synthetic data", JPC 2021): all one-way marginals, a maximum spanning tree of
  pairs chosen by the exponential mechanism, those pairs measured, Private-PGM inference.
- ``synth_aim``: AIM (McKenna, Mullins, Sheldon & Miklau, "AIM: An Adaptive and Iterative Mechanism for
  Differentially Private Synthetic Data", VLDB 2022): rounds that each select the worst-approximated
  marginal of the all-pairs workload and measure it.

Both run smartnoise-synth 1.0.8 in an environment of its own (``workflow/scripts/synthesize.py``); the domain
is public (:mod:`dpfair.synthesis.domain`), the budget and the ledger are dp-accounting's
(:mod:`dpfair.synthesis.budget`). The ε = ∞ arm is dpsgd's (the model trained on the real rows).
"""

from __future__ import annotations

import dataclasses
import math

from typing_extensions import override

from dpfair.errors import ConfigError
from dpfair.privacy.params import is_private
from dpfair.training.mechanisms.base import Mechanism, register_mechanism
from dpfair.training.mechanisms.dpsgd import DPSGD
from dpfair.training.mechanisms.text import group_privacy_text
from dpfair.training.steps import Trainer

SYNTHESIZERS = {
    "mst": "MST (McKenna, Miklau & Sheldon 2021)",
    "aim": "AIM (McKenna, Mullins, Sheldon & Miklau 2022)",
}


class SynthesisMechanism(Mechanism):
    """Train, without privacy, on rows a DP synthesizer (:attr:`synthesizes`) released from the training rows."""

    unit = "record"
    relation = "add_or_remove_one"
    nonprivate_arm_of = "dpsgd"
    modalities = ("tabular",)

    @override
    def make_trainer(
        self, *, model, optimizer, data, config, epsilon, delta, generator, noise_generator=None
    ) -> Trainer:
        release = data.synthetic if is_private(epsilon) else None
        if is_private(epsilon) and release is None:
            raise ConfigError(
                f"method {self.name} trains on a DP synthetic release of the training rows, and this run was given "
                "none; run it through the workflow (rule synthesize), which makes the release first"
            )
        # dpsgd's non-private loop, the same recipe as every arm's ε = ∞: on the synthetic rows, or at ε = ∞ on
        # the real ones (dpsgd's own arm, which a grid trains once)
        rows = data if release is None else dataclasses.replace(
            data, x=release.x, y=release.y, patient_id=None, groups=None, synthetic=None
        )  # fmt: skip
        trainer = DPSGD().make_trainer(
            model=model,
            optimizer=optimizer,
            data=rows,
            config=config,
            epsilon=math.inf,
            delta=delta,
            generator=generator,
        )
        if release is None:
            return trainer
        trainer.mode = f"synthesis_{self.synthesizes}"
        event = release.event
        # released once, before training: the ledger does not grow with steps
        trainer.ledger = lambda steps: event
        trainer.stats = lambda: {
            "synthesizer": SYNTHESIZERS[self.synthesizes],
            "synthesis_library": release.info.get("library"),
            "synthesis_rho": release.rho,
            "synthesis_rounds": release.info.get("rounds"),
            "synthetic_rows": len(release.y),
            "synthesis_seconds": release.info.get("seconds"),
        }
        return trainer

    @override
    def card_text(self, *, meta, record):
        return {
            "clipping": (
                f"none: {SYNTHESIZERS[self.synthesizes]} measures marginal counts of the training rows with Gaussian "
                "noise (L2 sensitivity 1 per marginal) and picks marginals by the exponential mechanism; the model "
                "trains without privacy on the synthetic rows"
            ),
            "privacy_unit_enforcement": (
                "each training row adds one to one cell of every measured marginal; the domain (bins, levels) comes "
                "from the validation split, never from the training rows; the number of training rows is public"
            ),
            "guarantee_covers": (
                "every training row (its features, label and sensitive attributes), once, for any number of "
                "downstream uses: the synthetic rows are the release, and the model and its scores are "
                "post-processing of them; validation and test rows have no DP protection"
            ),
        }

    @override
    def also_releases(self, *, meta, record):
        return [
            "the synthesis fidelity table (results/summary/synthesis_fidelity.csv): each group's share and label "
            "prevalence among the real training rows and their one-way marginals, exact, beside the synthetic ones"
        ]

    @override
    def group_privacy(self, *, meta: dict, epsilon: float, delta: float) -> dict | None:
        return group_privacy_text(meta=meta, epsilon=epsilon, delta=delta)


@register_mechanism("synth_mst")
class SynthMST(SynthesisMechanism):
    """Train on an MST release (McKenna, Miklau & Sheldon 2021)."""

    synthesizes = "mst"


@register_mechanism("synth_aim")
class SynthAIM(SynthesisMechanism):
    """Train on an AIM release (McKenna, Mullins, Sheldon & Miklau 2022)."""

    synthesizes = "aim"
