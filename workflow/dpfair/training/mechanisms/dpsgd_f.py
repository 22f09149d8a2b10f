"""``dpsgd_f``: DPSGD-F (Xu, Du & Wu 2021), group-adaptive clipping bounds from noisy per-group counts.

Each step counts, per group of the targeted attribute, the batch's samples clipped at C0 and not, adds
Gaussian noise to the counts, and clips group k at C_k = C0 (1 + a_k / mean a), a_k the noisy share of
group k that was clipped; the gradient noise is σ_grad · max_k C_k. See ``dpfair.privacy.clipping.adaptive`` for the
rule, its sensitivity and the ledger; ``dpfair.training.mechanisms.mitigation`` for the wiring and the settings.
"""

from __future__ import annotations

from typing_extensions import override

from dpfair.privacy.clipping.adaptive import GroupAdaptiveClip
from dpfair.training.mechanisms.base import register_mechanism
from dpfair.training.mechanisms.mitigation import LEVELS_DECLARED, MitigationMechanism


@register_mechanism("dpsgd_f")
class DPSGDF(MitigationMechanism):
    """DPSGD-F: record-level DP-SGD clipping each group at its own bound, set every step from noisy counts."""

    uses_groups = True

    @override
    def make_policy(self, *, config, settings, n_groups, sigma_aux, expected_batch_size, generator):
        policy = GroupAdaptiveClip(
            base_norm=config.max_grad_norm, n_groups=n_groups, aux_noise_multiplier=sigma_aux, generator=generator
        )
        return policy, policy.bound_cap

    def policy_stats(self, policy):
        """The per-group clip bounds C_k of the last step, for the run record.

        C_k is a function of the last step's noisy counts only (and of K): post-processing of the charged
        auxiliary release, so covered; no exact count of training rows is added.
        """
        return {"final_group_bounds": [float(b) for b in policy.bounds]}

    @override
    def card_text(self, *, meta, record):
        attribute = record.get("mitigation_attribute")
        groups = ", ".join(map(str, record.get("mitigation_groups") or []))
        text = self._common_card(
            meta=meta,
            record=record,
            clipping=(
                f"DPSGD-F group-adaptive per-sample clipping for attribute {attribute!r} (groups {groups}): group k is "
                "clipped at C_k = C·(1 + a_k/mean a), a_k the noisy share of group k's batch samples whose norm exceeds C "
                "(2K Gaussian counts per step, sensitivity 1); Gaussian noise σ_grad·max_k C_k over all groups"
            ),
        )
        declared = record.get("mitigation_groups_source") == LEVELS_DECLARED
        text["guarantee_covers"] = (
            f"the model's parameters with respect to one training row (adding or removing it), its {attribute} label "
            f"included: the rows' {attribute} reaches training only through the noisy per-group counts, which the "
            "ledger charges. The list of groups is "
            + (
                "declared without the training rows (public)"
                if declared
                else "read from the training rows and not covered (released_outside_guarantee lists it)"
            )
            + "; validation and test rows have no DP protection, and the released model depends on the validation "
            "rows wherever the card's released_outside_guarantee says so"
        )
        return text
