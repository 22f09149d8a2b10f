"""Clip policies of the DP fairness mitigations, their noisy auxiliary releases and the budget split.

Two published methods target why DP-SGD hurts some groups more (clipping and noise cost most where
gradients are larger or rarer):

* **DPSGD-F** (Xu, Du & Wu, "Removing disparate impact of differentially private stochastic gradient
  descent on model accuracy", 2021): each step counts, per group k, the batch's samples whose gradient
  norm exceeds the base bound C0 (m_k) and those that do not (o_k), adds Gaussian noise σ_aux to all 2K
  counts (one sample is in exactly one count: L2 sensitivity 1), and clips group k at
  ``C_k = C0 · (1 + a_k / mean_j a_j)`` with ``a_k = m̃_k / (m̃_k + õ_k)`` the noisy share of group k's
  samples that were clipped (the rule of the authors' reference implementation, layer6ai-labs/fair-dp).
  Groups clipped more often get a larger bound. C_k ≤ C0 · (1 + K), so the sum's sensitivity is
  ``max_k C_k`` over *all* groups, a function of the noisy counts only; the gradient noise is
  σ_grad · max_k C_k. (The reference code takes the max over the groups present in the batch, which
  makes the noise scale depend on whether a minority sample was drawn: not a valid Gaussian mechanism.)
* **DPSGD-Global-Adapt** (Esipova, Ghomi, Luo & Cresswell, "Disparate impact in differential privacy
  from gradient misalignment", ICLR 2023): instead of clipping each sample to C, scale every sample by
  C/Z, where Z is an upper bound on the norms, and clip only the samples above Z (factor
  ``min(C/Z, C/‖g‖)``): directions are kept, the clipped sum's sensitivity stays C. Z follows a noisy
  count of norms above Z, the geometric quantile update of Andrew et al. (NeurIPS 2021, "Differentially
  private learning with adaptive clipping"): ``Z ← Z · exp(η · (b̃ − γ))``, b̃ the noisy share of the
  batch above Z, γ the target share. No group labels are used.

**Ledger.** Both methods release two Gaussian queries of the *same* Poisson batch each step: the
clipped gradient sum (noise σ_grad · bound) and the counts (noise σ_aux, sensitivity 1). Normalised by
their noise, the pair is one Gaussian mechanism of L2 sensitivity √(σ_grad⁻² + σ_aux⁻²) (adaptive
composition of Gaussians is exactly a Gaussian, Dong, Roth & Su 2022), so one step costs
``PoissonSampled(q, Gaussian(σ_eff))`` with ``σ_eff = (σ_grad⁻² + σ_aux⁻²)^(-1/2)`` (as in Andrew et al.,
Theorem 1). Accounting the two as separately subsampled events, as the reference code does, under-states
ε because they share the batch: with 5% of the budget on the counts, by 0.07 at ε = 3 and 0.5 at ε = 10
(q = 1/17, 170 steps); with 30%, by 2.6 at ε = 10 (``tests/test_mitigation.py`` checks the gap).

**Budget split.** ``aux_budget_share`` f is the auxiliary queries' share of the step's privacy "precision"
σ_eff⁻² (additive across the two, like ρ in zCDP): σ_grad = σ_eff / √(1 − f), σ_aux = σ_eff / √f. σ_eff
is calibrated to the target ε exactly as DP-SGD's σ is, so the replayed total reaches the target.

**What a run may record.** Everything the policies expose (DPSGD-F's :attr:`GroupAdaptiveClip.bounds` and
:meth:`~GroupAdaptiveClip.noise_bound`, Global-Adapt's threshold and its history) is a function of the noisy
counts and the public settings only, post-processing of the charged auxiliary release. The exact counts
are local to ``factors`` and never kept: recording one would be a release no ε covers.
"""

from __future__ import annotations

import math

import dp_accounting
import torch
from typing_extensions import override

from dpfair.errors import ConfigError, PrivacyError
from dpfair.privacy.clipping.policy import CLIP_EPSILON, ClipPolicy, register_clip_policy


def split_noise(*, sigma: float, aux_share: float) -> tuple[float, float]:
    """(σ_grad, σ_aux) whose joint step costs exactly as much as one Gaussian of multiplier ``sigma``.

    Example:
        >>> g, a = split_noise(sigma=1.0, aux_share=0.2)
        >>> round(g, 4), round(a, 4), round(effective_sigma(g, a), 10)
        (1.118, 2.2361, 1.0)
    """
    if not 0 < aux_share < 1:
        raise ConfigError(f"mitigation.aux_budget_share must be strictly between 0 and 1, got {aux_share!r}")
    if not sigma > 0:
        raise PrivacyError(f"noise multiplier must be positive, got {sigma}")
    return sigma / math.sqrt(1.0 - aux_share), sigma / math.sqrt(aux_share)


def effective_sigma(sigma_grad: float, sigma_aux: float) -> float:
    """The one noise multiplier equivalent to two Gaussian releases of the same batch (sensitivities normalised)."""
    return 1.0 / math.sqrt(sigma_grad**-2 + sigma_aux**-2)


def joint_ledger(*, sigma_grad: float, sigma_aux: float, sample_rate: float, steps: int) -> dp_accounting.DpEvent:
    """``steps`` × Poisson-subsampled Gaussian at σ_eff: the gradient and the counts of the same batch."""
    return dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(
            float(sample_rate), dp_accounting.GaussianDpEvent(effective_sigma(sigma_grad, sigma_aux))
        ),
        int(steps),
    )


def _gaussian(shape, *, sigma: float, generator: torch.Generator | None) -> torch.Tensor:
    return torch.normal(0.0, float(sigma), size=shape, generator=generator, dtype=torch.float64)


@register_clip_policy("group_adaptive")
class GroupAdaptiveClip(ClipPolicy):
    """DPSGD-F's clip factors: group k's samples are clipped at C_k, set each step from noisy counts.

    ``factors`` releases the 2K noisy counts of the batch (that is the auxiliary query of the ledger),
    sets :attr:`bounds`, and returns ``min(1, C_k / ‖g‖)``. :meth:`noise_bound` is max_k C_k, the
    sensitivity the gradient noise must be scaled to; :attr:`bound_cap` = C0 · (1 + K) is the largest it
    can be, the bound the clipper checks every factor against.

    Args:
        base_norm: C0.
        n_groups: K, the number of group codes (0..K-1) the rows carry.
        aux_noise_multiplier: σ_aux of each count.
        generator: the counts' noise source.
    """

    name = "group_adaptive"

    def __init__(
        self,
        *,
        base_norm: float = 1.0,
        n_groups: int = 2,
        aux_noise_multiplier: float = 1.0,
        generator: torch.Generator | None = None,
    ):
        if n_groups < 1:
            raise ConfigError(f"DPSGD-F needs at least one group, got {n_groups}")
        self.base_norm, self.n_groups = float(base_norm), int(n_groups)
        self.aux_noise_multiplier, self.generator = float(aux_noise_multiplier), generator
        self.bounds = torch.full((self.n_groups,), self.base_norm, dtype=torch.float64)
        self.releases = 0

    @property
    def bound_cap(self) -> float:
        """C0 · (1 + K), the most any C_k can reach: the clipper's static cap on every unit's clipped norm."""
        return self.base_norm * (1 + self.n_groups)

    def noise_bound(self) -> float:
        """max_k C_k of the last step, over every group (present in the batch or not)."""
        return float(self.bounds.max())

    @override
    def factors(self, norms, *, max_grad_norm, groups=None):
        if groups is None:
            raise PrivacyError("DPSGD-F's clip policy needs each sample's group; the mechanism passed none")
        groups = groups.to(torch.long).cpu()
        if groups.numel() and (int(groups.min()) < 0 or int(groups.max()) >= self.n_groups):
            raise PrivacyError(f"group codes must lie in 0..{self.n_groups - 1}")
        over = norms.detach().cpu() > self.base_norm
        counts = torch.cat(
            [
                torch.bincount(groups[over], minlength=self.n_groups),
                torch.bincount(groups[~over], minlength=self.n_groups),
            ]
        ).double()
        noisy = (counts + _gaussian(counts.shape, sigma=self.aux_noise_multiplier, generator=self.generator)).clamp(
            min=0
        )
        self.releases += 1
        clipped, kept = noisy[: self.n_groups], noisy[self.n_groups :]
        total = clipped + kept
        share = torch.where(total > 0, clipped / total.clamp(min=1e-12), torch.zeros_like(total))
        # a_k / mean(a) ≤ K, so C_k ≤ C0 (1 + K); the 1e-8 keeps an all-zero round at C0
        self.bounds = self.base_norm * (1 + share / (share.mean() + 1e-8))
        if self.noise_bound() > max_grad_norm * (1 + 1e-9):
            raise PrivacyError(f"DPSGD-F bound {self.noise_bound():.6g} above the clipper's cap {max_grad_norm:.6g}")
        per_row = self.bounds.to(norms.dtype).to(norms.device)[groups.to(norms.device)]
        return (per_row / (norms + CLIP_EPSILON)).clamp(max=1.0)


@register_clip_policy("global_adaptive")
class GlobalAdaptiveClip(ClipPolicy):
    """DPSGD-Global-Adapt's factors ``min(C/Z, C/‖g‖)`` with Z ≥ C, and Z's noisy quantile update.

    ``factors`` uses the current Z, then releases the noisy count of norms above Z (the auxiliary query)
    and moves Z for the next step. With Z = C it is flat clipping.

    Args:
        max_grad_norm: C, the sensitivity of the scaled sum.
        initial_threshold: Z before the first step (at least C).
        target_exceed: γ, the share of samples Z should leave above it.
        threshold_lr: η of the geometric update.
        aux_noise_multiplier: σ_aux of the count.
        expected_batch_size: the count is divided by it (public), as in Andrew et al.
        generator: the count's noise source.
    """

    name = "global_adaptive"

    def __init__(
        self,
        *,
        max_grad_norm: float = 1.0,
        initial_threshold: float = 1.0,
        target_exceed: float = 0.1,
        threshold_lr: float = 0.5,
        aux_noise_multiplier: float = 1.0,
        expected_batch_size: float = 1.0,
        generator: torch.Generator | None = None,
    ):
        if not 0 <= target_exceed < 1:
            raise ConfigError(f"mitigation.global_target_exceed must be in [0, 1), got {target_exceed!r}")
        self.c = float(max_grad_norm)
        self.threshold = max(float(initial_threshold), self.c)
        self.target_exceed, self.threshold_lr = float(target_exceed), float(threshold_lr)
        self.aux_noise_multiplier, self.generator = float(aux_noise_multiplier), generator
        self.expected_batch_size = float(expected_batch_size)
        self.history: list[float] = []

    def noise_bound(self) -> float:
        """C, fixed: scaled by C/Z or clipped to C, no unit's gradient exceeds it, whatever Z is."""
        return self.c

    @override
    def factors(self, norms, *, max_grad_norm, groups=None):
        z = self.threshold
        factors = torch.minimum(torch.full_like(norms, self.c / z), self.c / (norms + CLIP_EPSILON))
        above = float((norms.detach() > z).sum())
        noisy = above + float(_gaussian((1,), sigma=self.aux_noise_multiplier, generator=self.generator))
        share = noisy / self.expected_batch_size
        self.history.append(z)
        self.threshold = max(self.c, z * math.exp(self.threshold_lr * (share - self.target_exceed)))
        return factors
