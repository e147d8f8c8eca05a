"""GRPO and the reward/advantage modifications built on it: DS-GRPO, Rewarding the Unlikely, MARA.

GRPO (DeepSeekMath, Shao et al. 2024, Eq. 3 and the outcome-supervision advantage of §4.1.2):
    Â_i = (r_i − mean_g r) / (std_g r + eps)          (all tokens of y_i share Â_i)
    L   = −agg_{i,t}[ min(ρ_{i,t} Â_i, clip(ρ_{i,t}, 1−ε, 1+ε_high) Â_i) − β·k3_{i,t} ]
    ρ_{i,t} = π_θ/π_old per token,  k3 = π_ref/π_θ − log(π_ref/π_θ) − 1 (Eq. 4).
Conventions: std is the POPULATION std (divide by N) unless grpo_std_unbiased (N−1, which verl
and the authors' releases use via torch.std); grpo_scale_by_std=False is Dr. GRPO's centring only.
A group whose rewards are all equal (all correct, all wrong, or a single sample) gets Â = 0
exactly (also with eps = 0).
Aggregation defaults to seq_mean_token_mean (1/G Σ_i 1/|o_i| Σ_t, Eq. 3); the sequence mean is
over the whole batch (equal to the per-question mean when groups have equal size). The log-ratio
is clamped to [−20, 20] before exp, as in verl, so an extreme ratio cannot overflow. The KL is
added per token inside the aggregation, as in Eq. 3.

DS-GRPO (Gai et al., arXiv 2511.19942, Eq. 6 as given in shared/reference/objectives.md; our
search tools returned only the abstract, so the equation is taken from the note): after GRPO
normalisation, A_i ← A_i − γ_p log π_old(y_i) on correct samples and A_i + γ_n log π_old(y_i) on
incorrect ones; log π_old is the sequence sum (token mean if ds_length_norm). Worked example:
r = [1,1,0,0], log π_old = [−10,−20,−10,−20], γ = 0.01 → [1.1, 1.2, −1.1, −1.2].
Defaults γ_p = γ_n = 0.01 are our choice (the paper's values were not found). The modification is
applied to every sample, so an all-wrong group still gets A_i = γ_n log π_old(y_i) ≠ 0: DS-GRPO
has a (sharpening) signal on unsolved prompts that GRPO does not.

Rewarding the Unlikely (He, Fried, Welleck, arXiv 2506.02355; the unlikeliness reward as given in
the reference note, equation number not verified): r_i ← r_i·(1 − β_rank(G − rank_i)/G)
with rank 0 the most likely sample of the group under π_old, then GRPO. We rank all G samples of
the group (ties by sample order) by the sequence-sum log π_old by default. The authors' release
(AndreHe02/rewarding-unlikely-release, ray_lean_trainer._compute_advantages) ranks by the token-mean
log-prob, uses 1 − β(G − 1 − rank)/G (β/G less penalty on every sample) and torch.std (N−1):
unlikely_formula='code', unlikely_rank_by='token_mean', grpo_std_unbiased=True reproduce it.
Paper settings: β_rank = 0.25, G = 32, KL 0.10, two PPO epochs.

MARA (GX-Chen et al., arXiv 2510.20817; the augmentation as given in the reference note): for samples with r ≥ τ, r ← r(z) + β(log π_ref(z) − log π_ref(y))
with z the sample of the group with r ≥ τ and the largest log π_ref (sequence sum), so that
π_ref(y)·exp(r/β) is the same for every such sample: the KL-regularised optimum is uniform over
them. The KL coefficient is set to mara_beta (theory: the β of the reward must be the KL weight);
this is exact for the sequence-level KL-regularised objective and approximate with GRPO's k3 loss
and std normalisation (set grpo_scale_by_std=False to keep the reward scale).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from pipeline.objectives.common import (aggregate, common_diagnostics, group_count, group_index, group_max,
                                        group_mean, k3, masked, seq_logp)

if TYPE_CHECKING:
    from pipeline.objectives import ObjectiveBatch, ObjectiveConfig


# ---- advantages

@torch.no_grad()
def grpo_advantages(reward: Tensor, group: Tensor, scale_by_std: bool = True, unbiased_std: bool = False,
                    eps: float = 1e-6) -> Tensor:
    """[N] float64 group-normalised advantages (r − mean_g r)/(std_g r + eps)."""
    inv, n_groups = group_index(group)
    r = reward.detach().to(torch.float64)
    centred = r - group_mean(r, inv, n_groups)[inv]
    if not scale_by_std:
        return centred
    var = group_mean(centred * centred, inv, n_groups)
    if unbiased_std:
        n = group_count(inv, n_groups)
        var = torch.where(n > 1, var * n / (n - 1).clamp(min=1), torch.zeros_like(var))
    std = var.sqrt()[inv]
    return torch.where(std > 0, centred / (std + eps), torch.zeros_like(centred))


@torch.no_grad()
def ds_advantages(adv: Tensor, reward: Tensor, seq_old: Tensor, gamma_p: float, gamma_n: float) -> Tensor:
    """Differential smoothing: A − γ_p·log π_old on correct samples, A + γ_n·log π_old on incorrect ones."""
    correct = reward > 0.5
    return torch.where(correct, adv - gamma_p * seq_old, adv + gamma_n * seq_old)


@torch.no_grad()
def likelihood_ranks(score: Tensor, group: Tensor) -> tuple[Tensor, Tensor]:
    """rank [N] (0 = highest score within its group; ties by sample order) and group size [N]."""
    inv, n_groups = group_index(group)
    order = torch.sort(-score.to(torch.float64), stable=True).indices
    order = order[torch.sort(inv[order], stable=True).indices]  # by group, then by score desc
    size = group_count(inv, n_groups, torch.long)
    start = torch.cumsum(size, 0) - size
    rank = torch.empty_like(inv)
    rank[order] = torch.arange(inv.numel(), device=inv.device) - start[inv[order]]
    return rank, size[inv]


@torch.no_grad()
def unlikeliness_rewards(reward: Tensor, group: Tensor, score: Tensor, beta_rank: float,
                         formula: str = "paper") -> Tensor:
    """r_i·(1 − β(G − rank_i)/G) (paper) or r_i·(1 − β(G − 1 − rank_i)/G) (code); rank 0 = most likely."""
    rank, size = likelihood_ranks(score, group)
    rank, size = rank.to(torch.float64), size.to(torch.float64)
    if formula == "paper":
        penalty = (size - rank) / size
    elif formula == "code":
        penalty = (size - 1 - rank) / size
    else:
        raise ValueError(f"unknown unlikely_formula {formula!r}: expected paper | code")
    return reward.detach().to(torch.float64) * (1 - beta_rank * penalty)


@torch.no_grad()
def mara_rewards(reward: Tensor, group: Tensor, seq_ref: Tensor, beta: float, tau: float) -> Tensor:
    """MARA: r(z) + β(log π_ref(z) − log π_ref(y)) for samples with r ≥ τ; other rewards unchanged."""
    inv, n_groups = group_index(group)
    r = reward.detach().to(torch.float64)
    ref = seq_ref.detach().to(torch.float64)
    high = r >= tau
    best = group_max(torch.where(high, ref, torch.full_like(ref, -math.inf)), inv, n_groups)
    is_z = high & (ref == best[inv])
    r_z = group_max(torch.where(is_z, r, torch.full_like(r, -math.inf)), inv, n_groups)
    return torch.where(high, r_z[inv] + beta * (best[inv] - ref), r)


# ---- the clipped policy loss shared by the GRPO family

def clipped_token_loss(policy_logp: Tensor, old_logp: Tensor, adv: Tensor, mask: Tensor, eps_low: float,
                       eps_high: float) -> tuple[Tensor, Tensor, Tensor]:
    """Per-token −min(ρA, clip(ρ, 1−ε_low, 1+ε_high)A), the clipped indicator and ρ (all [N, T])."""
    ratio = torch.exp(masked(policy_logp - old_logp, mask).clamp(-20.0, 20.0))
    a = adv.to(policy_logp.dtype).unsqueeze(-1)
    unclipped = -a * ratio
    clipped = -a * ratio.clamp(1 - eps_low, 1 + eps_high)
    return torch.maximum(unclipped, clipped), clipped > unclipped, ratio


def policy_loss(policy_logp: Tensor, old_logp: Tensor, ref_logp: Tensor, mask: Tensor, adv: Tensor,
                cfg: "ObjectiveConfig", kl_coef: float) -> tuple[Tensor, dict]:
    """GRPO Eq. 3: aggregated clipped surrogate plus kl_coef·k3 per token."""
    eps_high = cfg.grpo_clip_eps if cfg.grpo_clip_eps_high is None else cfg.grpo_clip_eps_high
    loss_tok, is_clipped, ratio = clipped_token_loss(policy_logp, old_logp, adv, mask, cfg.grpo_clip_eps, eps_high)
    kl_tok = k3(policy_logp, ref_logp)
    if kl_coef:
        loss_tok = loss_tok + kl_coef * kl_tok
    loss = aggregate(loss_tok, mask, cfg.grpo_loss_agg, cfg.loss_norm_tokens)
    m = mask > 0
    n_tok = max(int(m.sum()), 1)
    diag = {
        "clip_frac": float((is_clipped & m).sum()) / n_tok,
        "ratio_mean": float(ratio.detach()[m].mean()) if bool(m.any()) else 1.0,
        "kl_k3_token_mean": float(kl_tok.detach()[m].mean()) if bool(m.any()) else 0.0,
        "kl_coef": float(kl_coef),
        "advantage_mean": float(adv.mean()) if adv.numel() else 0.0,
        "advantage_abs_mean": float(adv.abs().mean()) if adv.numel() else 0.0,
        "frac_zero_advantage": float((adv == 0).to(torch.float64).mean()) if adv.numel() else 0.0,
    }
    return loss, diag


def _advantages(batch: "ObjectiveBatch", cfg: "ObjectiveConfig", reward: Tensor | None = None) -> Tensor:
    return grpo_advantages(batch.reward if reward is None else reward, batch.group, cfg.grpo_scale_by_std,
                           cfg.grpo_std_unbiased, cfg.grpo_eps)


def _finish(batch: "ObjectiveBatch", cfg: "ObjectiveConfig", adv: Tensor, kl_coef: float, extra: dict | None = None):
    loss, diag = policy_loss(batch.policy_logp, batch.old_logp, batch.ref_logp, batch.mask, adv, cfg, kl_coef)
    inv, n_groups = group_index(batch.group)
    diag.update(common_diagnostics(batch, inv, n_groups))
    diag.update(extra or {})
    return loss, diag


# ---- registered objectives

def grpo_loss(batch: "ObjectiveBatch", cfg: "ObjectiveConfig") -> tuple[Tensor, dict[str, float]]:
    """GRPO with the k3 KL penalty at cfg.grpo_kl_coef (0 disables it)."""
    return _finish(batch, cfg, _advantages(batch, cfg), float(cfg.grpo_kl_coef))


def grpo_no_kl_loss(batch: "ObjectiveBatch", cfg: "ObjectiveConfig") -> tuple[Tensor, dict[str, float]]:
    """GRPO without the KL term, whatever cfg.grpo_kl_coef says."""
    return _finish(batch, cfg, _advantages(batch, cfg), 0.0)


def ds_grpo_loss(batch: "ObjectiveBatch", cfg: "ObjectiveConfig") -> tuple[Tensor, dict[str, float]]:
    """DS-GRPO: GRPO advantages with differential smoothing (γ_p on correct, γ_n on incorrect)."""
    seq_old = seq_logp(batch.old_logp.to(torch.float64), batch.mask, cfg.ds_length_norm)
    adv = ds_advantages(_advantages(batch, cfg), batch.reward, seq_old, cfg.ds_gamma_p, cfg.ds_gamma_n)
    return _finish(batch, cfg, adv, float(cfg.grpo_kl_coef))


def unlikeliness_loss(batch: "ObjectiveBatch", cfg: "ObjectiveConfig") -> tuple[Tensor, dict[str, float]]:
    """GRPO on the unlikeliness reward (rank penalty on likely correct samples)."""
    if cfg.unlikely_rank_by not in ("seq_sum", "token_mean"):
        raise ValueError(f"unknown unlikely_rank_by {cfg.unlikely_rank_by!r}: expected seq_sum | token_mean")
    score = seq_logp(batch.old_logp.to(torch.float64), batch.mask, cfg.unlikely_rank_by == "token_mean")
    r = unlikeliness_rewards(batch.reward, batch.group, score, cfg.unlikely_beta_rank, cfg.unlikely_formula)
    return _finish(batch, cfg, _advantages(batch, cfg, r), float(cfg.grpo_kl_coef),
                   {"shaped_reward_mean": float(r.mean()) if r.numel() else 0.0})


def mara_loss(batch: "ObjectiveBatch", cfg: "ObjectiveConfig") -> tuple[Tensor, dict[str, float]]:
    """GRPO on MARA-augmented rewards with KL coefficient mara_beta."""
    seq_ref = seq_logp(batch.ref_logp.to(torch.float64), batch.mask)
    r = mara_rewards(batch.reward, batch.group, seq_ref, cfg.mara_beta, cfg.mara_tau)
    return _finish(batch, cfg, _advantages(batch, cfg, r), float(cfg.mara_beta),
                   {"shaped_reward_mean": float(r.mean()) if r.numel() else 0.0})
