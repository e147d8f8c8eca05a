"""GRPO and the reward/advantage modifications built on it: DS-GRPO, Rewarding the Unlikely, MARA.

GRPO (DeepSeekMath, Shao et al. 2024, Eq. 3–4, outcome supervision §4.1.2):
    Â_i = (r_i − mean_g r) / (std_g r + eps)          (all tokens of y_i share Â_i)
    per token  l_{i,t} = −min(ρ_{i,t} Â_i, clip(ρ_{i,t}, 1−ε, 1+ε_high) Â_i) + β·k3_{i,t}
    ρ_{i,t} = π_θ/π_old,  k3 = π_ref/π_θ − log(π_ref/π_θ) − 1,
summed per sequence and scaled by the run's `Aggregation` (the same for every objective; GRPO's own
seq_mean_token_mean is one of its modes). Conventions: population std unless std_unbiased (N−1, as
torch.std, verl and the authors' releases); scale_by_std=False is Dr. GRPO's centring only; a group
whose rewards are all equal gets Â = 0 exactly; the log-ratio is clamped to [−20, 20] before exp.
Log-probs are read at the sampler's temperature (policy_temperature="sampler"): π_old is the
distribution sampled from, and the ratio must compare like with like.

DS-GRPO (Gai et al., arXiv 2511.19942, Eq. 6): A_i − γ_p log π_old(y_i) on correct samples,
A_i + γ_n log π_old(y_i) on incorrect ones, after GRPO normalisation. Rewarding the Unlikely (He,
Fried, Welleck, arXiv 2506.02355): r_i·(1 − β_rank(G − rank_i)/G), rank 0 the most likely correct
sample, then GRPO (formula="code", rank_by="token_mean", std_unbiased=True: the authors' release).
MARA (GX-Chen et al., arXiv 2510.20817): r ≥ τ → r(z) + β(log π_ref(z) − log π_ref(y)), KL weight β,
no std scaling (scaling would break the uniform-target property). Derivations, the worked examples
and where we depart from the papers: docs/objectives.md, "GRPO and its variants".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from pipeline.objectives.base import Aggregation, ObjectiveBatch, register_objective
from pipeline.objectives.common import (common_diagnostics, group_count, group_index, group_max, group_mean, k3,
                                        masked, seq_logp)


# ---- options

@dataclass
class ClippedPGOptions:
    """Group advantages and the clipped-ratio surrogate, shared by the GRPO family and DPH-RL's RL term."""
    scale_by_std: bool = True  # divide the centred reward by the group std (False: Dr. GRPO)
    std_unbiased: bool = False  # False: population std (divide by N); True: sample std (N−1, torch/verl)
    eps: float = 1e-6  # added to the std before dividing
    clip_eps: float = 0.2  # PPO clip ε (ratio clipped to [1−ε, 1+ε_high])
    clip_eps_high: Optional[float] = None  # upper clip ε (None: clip_eps)

    def check(self) -> None:
        if self.clip_eps <= 0 or (self.clip_eps_high is not None and self.clip_eps_high <= 0):
            raise ValueError(f"clip_eps={self.clip_eps} and clip_eps_high={self.clip_eps_high} must be > 0")
        if self.eps < 0:
            raise ValueError(f"eps={self.eps} must be >= 0")


@dataclass
class GRPOOptions(ClippedPGOptions):
    """`train.grpo.*`."""
    kl_coef: float = 0.04  # β of the k3 KL(π_θ‖π_ref) penalty (DeepSeekMath: 0.04); 0: no KL term
    kl_clamp: Optional[float] = None  # clamp k3 per token at this value (verl's low_var_kl: 10); None: no clamp

    def check(self) -> None:
        super().check()
        if self.kl_coef < 0:
            raise ValueError(f"kl_coef={self.kl_coef} must be >= 0")


@dataclass
class DSGRPOOptions(GRPOOptions):
    """`train.ds_grpo.*`."""
    gamma_p: float = 0.01  # A_i −= γ_p·log π_old(y_i) on correct samples; 0 recovers GRPO (value: our choice)
    gamma_n: float = 0.01  # A_i += γ_n·log π_old(y_i) on incorrect samples; 0 recovers GRPO
    length_norm: bool = False  # use the token-mean log π_old instead of the sequence sum


@dataclass
class UnlikelinessOptions(GRPOOptions):
    """`train.unlikeliness.*`."""
    kl_coef: float = 0.10  # the paper's KL weight
    beta_rank: float = 0.25  # β_rank; 0 recovers GRPO
    rank_by: str = "seq_sum"  # rank by the sequence sum (seq_sum) or token mean (token_mean, the authors' code) of log π_old
    formula: str = "paper"  # paper: r·(1 − β(G − rank)/G); code: r·(1 − β(G − 1 − rank)/G) as in the authors' release

    def check(self) -> None:
        super().check()
        if self.rank_by not in ("seq_sum", "token_mean"):
            raise ValueError(f"rank_by={self.rank_by!r}: expected seq_sum | token_mean")
        if self.formula not in ("paper", "code"):
            raise ValueError(f"formula={self.formula!r}: expected paper | code")


@dataclass
class MARAOptions(ClippedPGOptions):
    """`train.mara.*`. No std scaling: dividing by the group std would rescale r/β and break the
    uniform-target property that MARA's augmentation exists for (docs/objectives.md, "MARA")."""
    scale_by_std: bool = False
    beta: float = 0.1  # β of the augmentation R(z) + β(log π_ref(z) − log π_ref(y)), also the KL weight
    tau: float = 1.0  # reward threshold τ of the samples that are augmented

    def check(self) -> None:
        super().check()
        if self.beta < 0:
            raise ValueError(f"beta={self.beta} must be >= 0")


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



def policy_loss(batch: ObjectiveBatch, rows: Tensor | None, adv: Tensor, opt: ClippedPGOptions, kl_coef: float,
                agg: Aggregation, kl_clamp: float | None = None) -> tuple[Tensor, dict]:
    """GRPO Eq. 3 on `rows` of the batch (all when None): the clipped surrogate plus kl_coef·k3 per
    token, on the run's loss scale."""
    sel = (lambda x: x) if rows is None else (lambda x: x[rows])  # noqa: E731
    pol, old, ref, mask = sel(batch.policy_logp), sel(batch.old_logp), sel(batch.ref_logp), sel(batch.mask)
    eps_high = opt.clip_eps if opt.clip_eps_high is None else opt.clip_eps_high
    loss_tok, is_clipped, ratio = clipped_token_loss(pol, old, adv, mask, opt.clip_eps, eps_high)
    kl_tok = k3(pol, ref, kl_clamp)
    if kl_coef:
        loss_tok = loss_tok + kl_coef * kl_tok
    loss = agg.tokens(loss_tok, mask)
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


def _advantages(batch: ObjectiveBatch, opt: ClippedPGOptions, reward: Tensor | None = None) -> Tensor:
    return grpo_advantages(batch.reward if reward is None else reward, batch.group, opt.scale_by_std,
                           opt.std_unbiased, opt.eps)


def _finish(batch: ObjectiveBatch, opt: ClippedPGOptions, adv: Tensor, kl_coef: float, agg: Aggregation,
            kl_clamp: float | None = None, extra: dict | None = None):
    loss, diag = policy_loss(batch, None, adv, opt, kl_coef, agg, kl_clamp)
    inv, n_groups = group_index(batch.group)
    diag.update(common_diagnostics(batch, inv, n_groups))
    diag.update(extra or {})
    return loss, diag


# ---- registered objectives

def _grpo_title(o: GRPOOptions) -> str:
    name = "GRPO" if o.scale_by_std else "Dr. GRPO"
    return f"{name} no KL" if o.kl_coef == 0 else f"{name} (β={o.kl_coef:g})"


_RL = dict(modes=("online",), policy_temperature="sampler")


@register_objective("grpo", options=GRPOOptions, title=_grpo_title, **_RL)
def grpo_loss(batch: ObjectiveBatch, opt: GRPOOptions, agg: Aggregation) -> tuple[Tensor, dict[str, float]]:
    """GRPO with the k3 KL penalty at kl_coef (0: none)."""
    return _finish(batch, opt, _advantages(batch, opt), float(opt.kl_coef), agg, opt.kl_clamp)


@register_objective("ds_grpo", options=DSGRPOOptions, title="DS-GRPO", **_RL)
def ds_grpo_loss(batch: ObjectiveBatch, opt: DSGRPOOptions, agg: Aggregation) -> tuple[Tensor, dict[str, float]]:
    """DS-GRPO: GRPO advantages with differential smoothing (γ_p on correct, γ_n on incorrect)."""
    seq_old = seq_logp(batch.old_logp.to(torch.float64), batch.mask, opt.length_norm)
    adv = ds_advantages(_advantages(batch, opt), batch.reward, seq_old, opt.gamma_p, opt.gamma_n)
    return _finish(batch, opt, adv, float(opt.kl_coef), agg, opt.kl_clamp)


@register_objective("unlikeliness", options=UnlikelinessOptions, title="Unlikeliness", **_RL)
def unlikeliness_loss(batch: ObjectiveBatch, opt: UnlikelinessOptions, agg: Aggregation
                      ) -> tuple[Tensor, dict[str, float]]:
    """GRPO on the unlikeliness reward (rank penalty on likely correct samples)."""
    score = seq_logp(batch.old_logp.to(torch.float64), batch.mask, opt.rank_by == "token_mean")
    r = unlikeliness_rewards(batch.reward, batch.group, score, opt.beta_rank, opt.formula)
    return _finish(batch, opt, _advantages(batch, opt, r), float(opt.kl_coef), agg, opt.kl_clamp,
                   {"shaped_reward_mean": float(r.mean()) if r.numel() else 0.0})


@register_objective("mara", options=MARAOptions, title="MARA", **_RL)
def mara_loss(batch: ObjectiveBatch, opt: MARAOptions, agg: Aggregation) -> tuple[Tensor, dict[str, float]]:
    """GRPO on MARA-augmented rewards with KL coefficient β."""
    seq_ref = seq_logp(batch.ref_logp.to(torch.float64), batch.mask)
    r = mara_rewards(batch.reward, batch.group, seq_ref, opt.beta, opt.tau)
    return _finish(batch, opt, _advantages(batch, opt, r), float(opt.beta), agg, None,
                   {"shaped_reward_mean": float(r.mean()) if r.numel() else 0.0})
