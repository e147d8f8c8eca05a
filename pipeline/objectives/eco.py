"""ECO: SFT on accepted proofs plus a penalty on the spread of their log-likelihoods (the seed paper
"sft-mode-collapse"; docs/objectives.md, "RS-FT and ECO").

Per accepted sequence s_i = v_i (−ℓ_i + λ · Var_{g(i)}), with v_i RS-FT's weights (`norm`) and
Var_g the POPULATION variance of ℓ over the accepted samples of prompt g (0 with fewer than two);
the sum over the batch is scaled by the run's `Aggregation`. Per prompt this is n_g·(mean NLL + λ·Var_g)
under norm=sample: the paper's per-theorem "NLL + λ·Var", weighted like the NLL. λ = 0 is RS-FT
exactly. With ℓ = [−1, −3] (one prompt, both accepted) the penalty term is λ·2·1 and its gradient
2λ(ℓ_i − ℓ̄) = λ·[+2, −2]. The penalty pulls the accepted proofs of a theorem toward equal
likelihood, the opposite of SFT's sharpening toward the most likely ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from pipeline.objectives.base import Aggregation, ObjectiveBatch, register_objective
from pipeline.objectives.common import accepted_mask, common_diagnostics, group_index, group_sum
from pipeline.objectives.rsft import NORMS, accepted_weights


@dataclass
class ECOOptions:
    """`train.eco.*`."""
    lam: float = 0.1  # λ, the weight of the variance penalty; 0 recovers rsft
    norm: str = "sample"  # RS-FT's weighting of the accepted samples (sample | prompt)

    def check(self) -> None:
        if self.lam < 0:
            raise ValueError(f"lam={self.lam} must be >= 0")
        if self.norm not in NORMS:
            raise ValueError(f"norm={self.norm!r}: expected one of {' | '.join(NORMS)}")


def group_variance(ell: Tensor, accepted: Tensor, inv: Tensor, n_groups: int) -> tuple[Tensor, Tensor]:
    """[G] population variance of ℓ over each prompt's accepted samples (0 with fewer than two;
    differentiable), and [G] the number of accepted samples."""
    a = accepted.to(ell.dtype)
    n = group_sum(a, inv, n_groups)
    mean = group_sum(a * ell, inv, n_groups) / n.clamp(min=1)
    dev = torch.where(accepted, ell - mean[inv], torch.zeros_like(ell))
    var = group_sum(dev * dev, inv, n_groups) / n.clamp(min=1)
    return torch.where(n >= 2, var, torch.zeros_like(var)), n


@register_objective("eco", options=ECOOptions, title="ECO")
def eco_loss(batch: ObjectiveBatch, opt: ECOOptions, agg: Aggregation) -> tuple[Tensor, dict[str, float]]:
    inv, n_groups = group_index(batch.group)
    acc = accepted_mask(batch.reward)
    v = accepted_weights(batch.reward, inv, n_groups, opt.norm)
    ell = agg.seq(batch.policy_logp, batch.mask)
    var, n = group_variance(ell, acc, inv, n_groups)
    seq_loss = v.to(ell.dtype) * (-ell + opt.lam * var[inv])
    loss = agg.reduce(seq_loss, batch.mask)
    diag = common_diagnostics(batch, inv, n_groups)
    spread = n >= 2
    diag.update({"nll_accepted": float(-ell.detach()[acc].mean()) if bool(acc.any()) else 0.0,
                 "logp_variance": float(var.detach()[spread].mean()) if bool(spread.any()) else 0.0,
                 "n_prompts_variance": float(spread.sum())})
    return loss, diag
