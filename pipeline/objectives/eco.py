"""ECO: SFT on accepted proofs plus a penalty on the spread of their log-likelihoods.

    loss = NLL_rsft + λ · mean_{x: ≥2 accepted} Var_{i: y_i accepted for x}( ℓ_i ),
    ℓ_i = Σ_t log π_θ(y_i,t)  (token mean if length_norm)

(seed paper "sft-mode-collapse", as summarised in shared/reference/objectives.md; the paper text was
not available to our search tools.) Conventions chosen here:
- POPULATION variance (divide by the number n of accepted proofs of the theorem): with
  ℓ = [−1, −3] the penalty is 1 and its gradient is (2/n)(ℓ_i − ℓ̄) = [+1, −1];
- sequence-sum log P by default (length_norm=True for the token mean);
- the penalty averages over the theorems of the batch with at least two accepted proofs (a single
  proof has zero variance and is left out of the mean rather than diluting it);
- the NLL term is rsft's (rsft_norm), so eco_lambda = 0 is exactly rsft.
The penalty pulls the accepted proofs of a theorem toward equal likelihood, the opposite of SFT's
sharpening toward the most likely ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from pipeline.objectives.common import accepted_mask, common_diagnostics, group_index, group_sum, seq_logp
from pipeline.objectives.rsft import accepted_nll

if TYPE_CHECKING:
    from pipeline.objectives import ObjectiveBatch, ObjectiveConfig


def variance_penalty(ell: Tensor, accepted: Tensor, inv: Tensor, n_groups: int) -> tuple[Tensor, int]:
    """Mean over groups with >= 2 accepted samples of the population variance of ℓ over them;
    and the number of such groups. Graph-connected 0 when there is none."""
    a = accepted.to(ell.dtype)
    n = group_sum(a, inv, n_groups)
    mean = group_sum(a * ell, inv, n_groups) / n.clamp(min=1)
    dev = torch.where(accepted, ell - mean[inv], torch.zeros_like(ell))
    var = group_sum(dev * dev, inv, n_groups) / n.clamp(min=1)
    keep = n >= 2
    if not bool(keep.any()):
        return ell.sum() * 0.0, 0
    return var[keep].mean(), int(keep.sum())


def eco_loss(batch: "ObjectiveBatch", cfg: "ObjectiveConfig") -> tuple[Tensor, dict[str, float]]:
    inv, n_groups = group_index(batch.group)
    acc = accepted_mask(batch.reward)
    ell = seq_logp(batch.policy_logp, batch.mask, cfg.length_norm)
    nll = accepted_nll(ell, acc, inv, n_groups, cfg.rsft_norm)
    pen, n_pen = variance_penalty(ell, acc, inv, n_groups)
    loss = nll + cfg.eco_lambda * pen
    diag = common_diagnostics(batch, inv, n_groups)
    diag.update({"nll_accepted": float(nll.detach()), "logp_variance": float(pen.detach()),
                 "n_prompts_variance": float(n_pen)})
    return loss, diag
