"""RS-FT / RAFT: supervised fine-tuning on the accepted samples (rejection-sampling fine-tuning).

    loss = − mean over accepted samples of ℓ_i,   ℓ_i = Σ_t log π_θ(y_i,t)  (token mean if length_norm)

This is the α = 0, q = a point of α-DPG (reference note, "Limits that are tests"): w ∝ b, so the
α-DPG update on base samples is SFT on the accepted ones. Normalisation (`rsft_norm`):
- sample (default): mean NLL over all accepted samples in the batch (plain SFT);
- prompt: mean over prompts with >= 1 accepted sample of the prompt's mean NLL. This is exactly
  α-DPG(α=0, q=a, self_normalised, baseline none, alpha_dpg_prompt_mean=solved).
With no accepted sample the loss is a graph-connected 0 (no signal, zero gradient).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor

from pipeline.objectives.common import accepted_mask, common_diagnostics, group_index, group_sum, seq_logp

if TYPE_CHECKING:
    from pipeline.objectives import ObjectiveBatch, ObjectiveConfig


def accepted_nll(ell: Tensor, accepted: Tensor, inv: Tensor, n_groups: int, norm: str) -> Tensor:
    """Mean NLL −ℓ over accepted samples with the `rsft_norm` convention (sample | prompt)."""
    if not bool(accepted.any()):
        return ell.sum() * 0.0
    if norm == "sample":
        return -ell[accepted].mean()
    if norm == "prompt":
        a = accepted.to(ell.dtype)
        n_acc = group_sum(a, inv, n_groups)
        per_group = group_sum(a * ell, inv, n_groups) / n_acc.clamp(min=1)
        return -per_group[n_acc > 0].mean()
    raise ValueError(f"unknown rsft_norm {norm!r}: expected sample | prompt")


def rsft_loss(batch: "ObjectiveBatch", cfg: "ObjectiveConfig") -> tuple[Tensor, dict[str, float]]:
    inv, n_groups = group_index(batch.group)
    acc = accepted_mask(batch.reward)
    ell = seq_logp(batch.policy_logp, batch.mask, cfg.length_norm)
    loss = accepted_nll(ell, acc, inv, n_groups, cfg.rsft_norm)
    diag = common_diagnostics(batch, inv, n_groups)
    diag["nll_accepted"] = float(loss.detach())
    return loss, diag

