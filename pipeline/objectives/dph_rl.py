"""DPH-RL: RL plus a mass-covering f-divergence to the initial policy on its own samples.

"The Choice of Divergence: A Neglected Key to Mitigating Diversity Collapse in RL with Verifiable
Reward" (arXiv 2509.07430; code seamoke/DPH-RL): prompts that the initial model solves in all of its
samples ("perfect" prompts) get an f-divergence loss on those reference samples; the policy's samples
get the RL (GRPO) loss without KL:
    L = L_GRPO(no KL; rows with is_ref_sample = 0) + η · L_f(rows with is_ref_sample = 1),
    L_f: per token f(u), u = π_θ/π_ref, forward_kl f(u) = u − log u − 1, js f(u) = u log u − (u+1) log((u+1)/2)
each term summed per sequence and scaled by the run's `Aggregation` over its own rows, so η weighs
a per-sample mean divergence against a per-sample RL loss whatever the two row counts are.

The train stage appends the base model's samples of the round's prompts (needs_base_samples): they
are extra rows, not budget — optimiser steps and `train_samples` count the policy's samples only, so
DPH-RL gets the same steps and policy samples as every other method (docs/objectives.md, "DPH-RL").
With require_all_solved (default) only reference rows of prompts whose reference rows all pass are
used. Differences from the authors' code: they clamp the forward-KL term to ±10 (we do not), and
they process RL and reference micro-batches separately (we sum the two terms in one loss).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from pipeline.objectives.base import Aggregation, ObjectiveBatch, register_objective
from pipeline.objectives.common import common_diagnostics, group_index, group_sum
from pipeline.objectives.grpo import ClippedPGOptions, grpo_advantages, policy_loss

TITLES = {"forward_kl": "DPH-RL fwd KL", "js": "DPH-RL JS"}


@dataclass
class DPHRLOptions(ClippedPGOptions):
    """`train.dph_rl.*` (the clip and advantage options are GRPO's; the RL term has no KL)."""
    divergence: str = "forward_kl"  # forward_kl: f(u) = u − log u − 1 | js: f(u) = u log u − (u+1) log((u+1)/2)
    eta: float = 0.1  # η, weight of the divergence term (paper range 0.01–0.2)
    require_all_solved: bool = True  # the divergence term uses only reference rows of prompts whose reference samples all pass

    def check(self) -> None:
        super().check()
        if self.divergence not in GENERATORS:
            raise ValueError(f"divergence={self.divergence!r}: expected one of {' | '.join(GENERATORS)}")
        if self.eta < 0:
            raise ValueError(f"eta={self.eta} must be >= 0")


def forward_kl_generator(log_u: Tensor) -> Tensor:
    """f(u) = u − log u − 1, from log u (expm1 keeps it exact near u = 1)."""
    return torch.expm1(log_u) - log_u


def js_generator(log_u: Tensor) -> Tensor:
    """f(u) = u log u − (u+1) log((u+1)/2), from log u; log(1+u) = softplus(log u)."""
    u = torch.exp(log_u)
    return u * log_u - (u + 1) * (F.softplus(log_u) - math.log(2.0))


GENERATORS = {"forward_kl": forward_kl_generator, "js": js_generator}


@torch.no_grad()
def divergence_rows(batch: ObjectiveBatch, require_all_solved: bool) -> Tensor:
    """[N] bool: the reference rows that get the divergence term."""
    ref = batch.ref_rows()
    if not require_all_solved or not bool(ref.any()):
        return ref
    inv, n_groups = group_index(batch.group)
    n_ref = group_sum(ref.to(torch.float64), inv, n_groups)
    n_ref_pass = group_sum((ref & (batch.reward > 0.5)).to(torch.float64), inv, n_groups)
    perfect = (n_ref > 0) & (n_ref_pass == n_ref)
    return ref & perfect[inv]


@register_objective("dph_rl", options=DPHRLOptions, title=lambda o: TITLES[o.divergence], modes=("online",),
                    needs_base_samples=True, policy_temperature="sampler")
def dph_rl_loss(batch: ObjectiveBatch, opt: DPHRLOptions, agg: Aggregation) -> tuple[Tensor, dict[str, float]]:
    if opt.divergence not in GENERATORS:
        raise ValueError(f"unknown dph_rl divergence {opt.divergence!r}: expected {sorted(GENERATORS)}")
    rl = ~batch.ref_rows()
    div = divergence_rows(batch, opt.require_all_solved)
    adv = grpo_advantages(batch.reward[rl], batch.group[rl], opt.scale_by_std, opt.std_unbiased, opt.eps)
    rl_loss, diag = policy_loss(batch, rl, adv, opt, 0.0, agg)
    f_tok = GENERATORS[opt.divergence](batch.policy_logp[div] - batch.ref_logp[div])
    div_loss = agg.tokens(f_tok, batch.mask[div])
    loss = rl_loss + opt.eta * div_loss
    inv, n_groups = group_index(batch.group)
    diag.update(common_diagnostics(batch, inv, n_groups))
    diag.update({"rl_loss": float(rl_loss.detach()), "divergence_loss": float(div_loss.detach()),
                 "n_rl_rows": float(rl.sum()), "n_divergence_rows": float(div.sum()),
                 "n_ref_rows_dropped": float((batch.ref_rows() & ~div).sum())})
    return loss, diag
