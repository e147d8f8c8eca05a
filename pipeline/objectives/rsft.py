"""RS-FT / RAFT: supervised fine-tuning on the accepted samples (rejection-sampling fine-tuning).

Per sequence s_i = −v_i ℓ_i, summed and scaled by the run's `Aggregation` (docs/objectives.md,
"RS-FT and ECO"), with v_i = 0 on rejected samples and on accepted ones:
- norm=sample (default): v_i = 1, plain SFT on every accepted sample;
- norm=prompt: v_i = k_g / n_acc,g (k_g samples of the prompt, n_acc,g of them accepted), so every
  solved prompt weighs the same. This is exactly α-DPG at α = 0 on base samples (q = a) with
  self-normalised weights and no baseline (docs/objectives.md, "Limits").
With no accepted sample the loss is a graph-connected 0 (no signal, zero gradient).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from pipeline.objectives.base import Aggregation, ObjectiveBatch, register_objective
from pipeline.objectives.common import accepted_mask, common_diagnostics, group_count, group_index, group_sum

NORMS = ("sample", "prompt")


@dataclass
class RSFTOptions:
    """`train.rsft.*`."""
    norm: str = "sample"  # sample: every accepted sample weighs 1 | prompt: every solved prompt weighs the same

    def check(self) -> None:
        if self.norm not in NORMS:
            raise ValueError(f"norm={self.norm!r}: expected one of {' | '.join(NORMS)}")


@torch.no_grad()
def accepted_weights(reward: Tensor, inv: Tensor, n_groups: int, norm: str) -> Tensor:
    """[N] float64 v_i: the weight of each sample's NLL (0 on rejected samples)."""
    acc = accepted_mask(reward).to(torch.float64)
    if norm == "sample":
        return acc
    if norm == "prompt":
        n_acc = group_sum(acc, inv, n_groups)
        k = group_count(inv, n_groups)
        return acc * (k / n_acc.clamp(min=1))[inv]
    raise ValueError(f"unknown rsft norm {norm!r}: expected one of {NORMS}")


@register_objective("rsft", options=RSFTOptions, title="RS-FT")
def rsft_loss(batch: ObjectiveBatch, opt: RSFTOptions, agg: Aggregation) -> tuple[Tensor, dict[str, float]]:
    inv, n_groups = group_index(batch.group)
    v = accepted_weights(batch.reward, inv, n_groups, opt.norm)
    ell = agg.seq(batch.policy_logp, batch.mask)
    loss = agg.reduce(-v.to(ell.dtype) * ell, batch.mask)
    diag = common_diagnostics(batch, inv, n_groups)
    acc = accepted_mask(batch.reward)
    diag["nll_accepted"] = float(-ell.detach()[acc].mean()) if bool(acc.any()) else 0.0
    return loss, diag
