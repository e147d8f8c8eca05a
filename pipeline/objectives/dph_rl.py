"""DPH-RL: RL plus a mass-covering f-divergence to the initial policy on its own samples.

"The Choice of Divergence: A Neglected Key to Mitigating Diversity Collapse in RL with Verifiable
Reward" (arXiv 2509.07430; code seamoke/DPH-RL, verl/workers/actor/dp_actor.py, core_algos.py):
prompts that the initial model solves in all of its pre-samples ("perfect" prompts) get an
f-divergence loss evaluated on those pre-sampled reference trajectories; every other prompt gets
the RL (GRPO) loss with no KL term.
    L = L_GRPO(no KL; rows with is_ref_sample = 0) + η · agg_{i,t} f(u_{i,t}),  u = π_θ/π_ref per token
on rows with is_ref_sample = 1, where
    forward_kl: f(u) = u − log u − 1            (k3 with the roles swapped: E_{π_ref} → KL(π_ref‖π_θ))
    js:         f(u) = u log u − (u+1) log((u+1)/2)   (the authors' "js_low_var")
Both generators are ≥ 0 with equality iff u = 1, so the term is zero (and has zero gradient) when
π_θ = π_ref on the reference samples.

Batch design: the trainer appends the reference model's pre-sampled trajectories to the batch
(rows with is_ref_sample = 1, ref_logp = log π_ref of those tokens, reward = their verdict, group =
their prompt). With dph_require_all_solved (default) only reference rows of prompts whose reference
rows all pass are used, which implements the "perfect prompt" split inside the loss; the trainer
may also do the split itself. Aggregation: both terms use grpo_loss_agg (the authors use one
loss_agg_mode for both). Differences from the authors' code: they clamp the log-ratio to ±20 and
the forward-KL term to ±10 (we do not), and they process RL and reference micro-batches
separately (we sum the two aggregated terms in one loss).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from pipeline.objectives.common import aggregate, common_diagnostics, group_index, group_sum
from pipeline.objectives.grpo import grpo_advantages, policy_loss

if TYPE_CHECKING:
    from pipeline.objectives import ObjectiveBatch, ObjectiveConfig


def forward_kl_generator(log_u: Tensor) -> Tensor:
    """f(u) = u − log u − 1, from log u (expm1 keeps it exact near u = 1)."""
    return torch.expm1(log_u) - log_u


def js_generator(log_u: Tensor) -> Tensor:
    """f(u) = u log u − (u+1) log((u+1)/2), from log u; log(1+u) = softplus(log u)."""
    u = torch.exp(log_u)
    return u * log_u - (u + 1) * (F.softplus(log_u) - math.log(2.0))


GENERATORS = {"forward_kl": forward_kl_generator, "js": js_generator}


@torch.no_grad()
def divergence_rows(batch: "ObjectiveBatch", require_all_solved: bool) -> Tensor:
    """[N] bool: the reference rows that get the divergence term."""
    ref = batch.ref_rows()
    if not require_all_solved or not bool(ref.any()):
        return ref
    inv, n_groups = group_index(batch.group)
    n_ref = group_sum(ref.to(torch.float64), inv, n_groups)
    n_ref_pass = group_sum((ref & (batch.reward > 0.5)).to(torch.float64), inv, n_groups)
    perfect = (n_ref > 0) & (n_ref_pass == n_ref)
    return ref & perfect[inv]


def dph_rl_loss(batch: "ObjectiveBatch", cfg: "ObjectiveConfig") -> tuple[Tensor, dict[str, float]]:
    if cfg.dph_divergence not in GENERATORS:
        raise ValueError(f"unknown dph_divergence {cfg.dph_divergence!r}: expected {sorted(GENERATORS)}")
    rl = ~batch.ref_rows()
    div = divergence_rows(batch, cfg.dph_require_all_solved)
    adv = grpo_advantages(batch.reward[rl], batch.group[rl], cfg.grpo_scale_by_std, cfg.grpo_std_unbiased,
                          cfg.grpo_eps)
    rl_loss, diag = policy_loss(batch.policy_logp[rl], batch.old_logp[rl], batch.ref_logp[rl], batch.mask[rl],
                                adv, cfg, 0.0)
    f_tok = GENERATORS[cfg.dph_divergence](batch.policy_logp[div] - batch.ref_logp[div])
    div_loss = aggregate(f_tok, batch.mask[div], cfg.grpo_loss_agg, cfg.loss_norm_tokens)
    loss = rl_loss + cfg.dph_eta * div_loss
    inv, n_groups = group_index(batch.group)
    diag.update(common_diagnostics(batch, inv, n_groups))
    diag.update({"rl_loss": float(rl_loss.detach()), "divergence_loss": float(div_loss.detach()),
                 "n_rl_rows": float(rl.sum()), "n_divergence_rows": float(div.sum()),
                 "n_ref_rows_dropped": float((batch.ref_rows() & ~div).sum())})
    return loss, diag
