"""``dpsgd_global_adapt``: DPSGD-Global-Adapt (Esipova et al., ICLR 2023), global scaling by C/Z.

Z is adapted from a noisy count of norms above it.
Every sample is scaled by C/Z and only samples above Z are clipped (to C), so the relative sizes of the
gradients below Z, and the groups they come from, survive; Z moves to keep a share γ of the batch above
it. Uses no group labels: the attribute named in ``mitigation.attribute`` is only the one the comparison
evaluates. See ``dpfair.privacy.clipping.adaptive`` for the rule and the ledger.
"""

from __future__ import annotations

from typing_extensions import override

from dpfair.privacy.clipping.adaptive import GlobalAdaptiveClip
from dpfair.training.mechanisms.base import register_mechanism
from dpfair.training.mechanisms.mitigation import MitigationMechanism
from dpfair.training.mechanisms.text import COVERS_ROWS


@register_mechanism("dpsgd_global_adapt")
class DPSGDGlobalAdapt(MitigationMechanism):
    """DPSGD-Global-Adapt: record-level DP-SGD scaling every sample by C/Z, Z set by a noisy count above it."""

    uses_groups = False

    @override
    def make_policy(self, *, config, settings, n_groups, sigma_aux, expected_batch_size, generator):
        z0 = settings["global_initial_threshold"]
        policy = GlobalAdaptiveClip(
            max_grad_norm=config.max_grad_norm,
            initial_threshold=config.max_grad_norm if z0 is None else float(z0),
            target_exceed=float(settings["global_target_exceed"]),
            threshold_lr=float(settings["global_threshold_lr"]),
            aux_noise_multiplier=sigma_aux,
            expected_batch_size=expected_batch_size,
            generator=generator,
        )
        return policy, config.max_grad_norm

    def policy_stats(self, policy):
        """The threshold Z after the last step and its mean over the steps, for the run record.

        Z is a function of its start and the noisy counts only: post-processing of the charged auxiliary
        release, so covered; no exact count of training rows is added (``also_releases`` lists none).
        """
        z = policy.history
        return {
            "global_threshold_final": float(policy.threshold),
            "global_threshold_mean": float(sum(z) / len(z)) if z else float("nan"),
        }

    @override
    def card_text(self, *, meta, record):
        text = self._common_card(
            meta=meta,
            record=record,
            clipping=(
                "DPSGD-Global-Adapt global scaling: every per-sample gradient is scaled by C/Z and those above Z are "
                "clipped to C (factor min(C/Z, C/‖g‖), Z ≥ C); Z follows a noisy count of norms above Z (one Gaussian "
                "count per step, sensitivity 1), Z ← Z·exp(η(b̃ − γ)); Gaussian noise σ_grad·C. No group labels are used"
            ),
        )
        text["guarantee_covers"] = COVERS_ROWS
        return text
