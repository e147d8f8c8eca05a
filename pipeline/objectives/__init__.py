"""Training objectives: α-DPG (DMVR) and the baselines beside it, as pure functions of tensors.

Every objective is `fn(batch: ObjectiveBatch, cfg: ObjectiveConfig) -> (scalar loss, diagnostics)`
and is registered in `OBJECTIVES`; `compute_loss(name, batch, cfg)` dispatches. `cfg` is only read
by attribute, so an OmegaConf node built from `ObjectiveConfig` (or a subclass such as the train
stage's config) works as well as the dataclass. The mathematics is in
shared/reference/objectives.md; pipeline/objectives/README.md has one row per objective.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable, Optional

import torch
from torch import Tensor


@dataclass
class ObjectiveBatch:
    """One optimiser step's samples; N samples (rows), T token positions.

    policy_logp   [N, T] token log-probs under π_θ (carries the gradient)
    old_logp      [N, T] under the proposal q that drew the samples (π_old, or the base model a
                  for offline data); no gradient
    ref_logp      [N, T] under the frozen base / reference model a; no gradient
    mask          [N, T] float, 1 on completion tokens
    reward        [N] float in {0, 1}, the verifier's verdict b(y|x)
    group         [N] long, prompt id; samples of one prompt share it
    log_z         optional [G] float, cached log Z(x) per prompt, indexed by the group id
                  (log_z[group[i]] belongs to sample i); non-finite entries are treated as missing
    is_ref_sample optional [N] bool/float, DPH-RL only: 1 on rows that are pre-sampled trajectories
                  of the initial (reference) model, which get the divergence term instead of the
                  RL term (their reward is the verdict on the reference sample)
    """

    policy_logp: Tensor
    old_logp: Tensor
    ref_logp: Tensor
    mask: Tensor
    reward: Tensor
    group: Tensor
    log_z: Optional[Tensor] = None
    is_ref_sample: Optional[Tensor] = None

    def __post_init__(self) -> None:
        n, t = self.policy_logp.shape
        for name in ("old_logp", "ref_logp", "mask"):
            if tuple(getattr(self, name).shape) != (n, t):
                raise ValueError(f"ObjectiveBatch.{name} has shape {tuple(getattr(self, name).shape)}, expected {(n, t)}")
        for name in ("reward", "group"):
            if tuple(getattr(self, name).shape) != (n,):
                raise ValueError(f"ObjectiveBatch.{name} has shape {tuple(getattr(self, name).shape)}, expected {(n,)}")
        if self.is_ref_sample is not None and tuple(self.is_ref_sample.shape) != (n,):
            raise ValueError(f"ObjectiveBatch.is_ref_sample has shape {tuple(self.is_ref_sample.shape)}, expected {(n,)}")
        # The proposal and reference never carry gradient, whatever the caller passed.
        self.old_logp = self.old_logp.detach()
        self.ref_logp = self.ref_logp.detach()

    def ref_rows(self) -> Tensor:
        """[N] bool: the DPH-RL reference-trajectory rows (all False when the flag is absent)."""
        if self.is_ref_sample is None:
            return torch.zeros_like(self.reward, dtype=torch.bool)
        return self.is_ref_sample > 0.5


@dataclass
class ObjectiveConfig:
    """Every option of every objective, flat, with defaults (merged with Hydra structured configs).
    Prefixes name the objective that reads a field; unprefixed fields are shared."""

    # ---- shared
    alpha: float = 0.25  # α-DPG's α in [0, 1]: 0 forward KL(p‖π) (mass-covering), 1 the binary-RL limit; 0.25 as in naver/alpha-dpg's Lean example
    length_norm: bool = False  # alpha_dpg/fdpg/rsft/eco: the policy term is the token-mean log π instead of the sequence sum (weights always use sums; True makes α-DPG biased)
    z_source: str = "auto"  # alpha_dpg (z_estimate, batch, paper) and fdpg: where log Z comes from. auto: batch.log_z where finite, else the in-batch estimate; log_z: require batch.log_z; group_is: always the in-batch estimate log mean_i a·b/q
    loss_norm_tokens: int = 1024  # constant divisor of the seq_mean_token_sum_norm aggregation (alpha-dpg's MAX_TOKENS)

    # ---- alpha_dpg
    alpha_dpg_norm: str = "self_normalised"  # self_normalised: w/mean_g(w) per prompt (Z cancels); z_estimate: w with log Z from z_source (unbiased); batch: w/mean(w) over the whole batch
    alpha_dpg_baseline: str = "leave_one_out"  # none | mean | leave_one_out: mean of the normalised weights in the prompt (times the ratio π_θ/q, so it stays a control variate off-policy)
    alpha_dpg_clip_max: Optional[float] = None  # clip the normalised weights from above (None: no clipping)
    alpha_dpg_prompt_mean: str = "all"  # all: the loss averages over every prompt in the batch; solved: only over prompts with >= 1 accepted sample
    alpha_dpg_preset: str = "none"  # none | paper: reproduce naver/alpha-dpg (pseudo-reward (p/π_old)^(1-α) - 1, clip, leave-one-out, seq-mean-token-sum-norm); ignores the four alpha_dpg_* options above and length_norm; set z_source=group_is for their per-step Z (auto uses batch.log_z when given)
    alpha_dpg_paper_clip: Optional[float] = 10.0  # paper preset: pseudo-reward clip from above (alpha-dpg's pseudo_reward_clip)

    # ---- rsft (RS-FT / RAFT)
    rsft_norm: str = "sample"  # sample: mean NLL over all accepted samples of the batch; prompt: mean over solved prompts of the per-prompt mean NLL

    # ---- grpo family (grpo, grpo_no_kl, ds_grpo, unlikeliness, mara, the RL part of dph_rl)
    grpo_scale_by_std: bool = True  # divide the centred reward by the group std (False: Dr. GRPO)
    grpo_std_unbiased: bool = False  # False: population std (divide by N); True: sample std (N-1, torch/verl default)
    grpo_eps: float = 1e-6  # added to the std before dividing
    grpo_clip_eps: float = 0.2  # PPO clip ε (ratio clipped to [1-ε, 1+ε_high])
    grpo_clip_eps_high: Optional[float] = None  # upper clip ε (None: same as grpo_clip_eps)
    grpo_kl_coef: float = 0.04  # β of the k3 KL(π_θ‖π_ref) penalty (DeepSeekMath uses 0.04); grpo_no_kl and the RL part of dph_rl force 0
    grpo_loss_agg: str = "seq_mean_token_mean"  # token_mean | seq_mean_token_mean (GRPO Eq. 3) | seq_mean_token_sum | seq_mean_token_sum_norm

    # ---- ds_grpo (differential smoothing)
    ds_gamma_p: float = 0.01  # A_i -= γ_p·log π_old(y_i) on correct samples (entropy bonus); 0 recovers GRPO
    ds_gamma_n: float = 0.01  # A_i += γ_n·log π_old(y_i) on incorrect samples; 0 recovers GRPO
    ds_length_norm: bool = False  # use the token-mean log π_old instead of the sequence sum

    # ---- eco (NLL + λ·variance of log P over a theorem's accepted proofs)
    eco_lambda: float = 0.1  # λ; 0 recovers rsft

    # ---- unlikeliness (Rewarding the Unlikely)
    unlikely_beta_rank: float = 0.25  # β_rank; 0 recovers GRPO
    unlikely_rank_by: str = "seq_sum"  # rank samples by the sequence sum (seq_sum) or token mean (token_mean, the authors' code) of log π_old
    unlikely_formula: str = "paper"  # paper: r·(1 - β(G - rank)/G), rank 0 most likely; code: r·(1 - β(G - 1 - rank)/G) as in the authors' release

    # ---- dph_rl
    dph_divergence: str = "forward_kl"  # forward_kl: f(u) = u - log u - 1; js: f(u) = u log u - (u+1) log((u+1)/2); u = π_θ/π_ref per token
    dph_eta: float = 0.1  # η, weight of the divergence term (paper range 0.01-0.2)
    dph_require_all_solved: bool = True  # the divergence term uses only reference rows of prompts whose reference samples all pass

    # ---- mara
    mara_beta: float = 0.1  # β of the augmentation R(z) + β(log π_ref(z) - log π_ref(y)); also used as the KL coefficient
    mara_tau: float = 1.0  # reward threshold τ of the samples that are augmented

    # ---- fdpg
    fdpg_divergence: str = "js"  # js (disco's JS = 2·JSD) | kl (forward KL(p‖π)) | tv
    fdpg_baseline: str = "leave_one_out"  # none | mean | leave_one_out, on the pseudo-rewards -f'(π/p)


LossFn = Callable[[ObjectiveBatch, ObjectiveConfig], "tuple[Tensor, dict[str, float]]"]

from pipeline.objectives import alpha_dpg, dph_rl, eco, fdpg, grpo, rsft  # noqa: E402  (registry below)

OBJECTIVES: dict[str, LossFn] = {
    "alpha_dpg": alpha_dpg.alpha_dpg_loss,
    "alpha_dpg_paper": alpha_dpg.alpha_dpg_paper_loss,
    "rsft": rsft.rsft_loss,
    "grpo": grpo.grpo_loss,
    "grpo_no_kl": grpo.grpo_no_kl_loss,
    "ds_grpo": grpo.ds_grpo_loss,
    "unlikeliness": grpo.unlikeliness_loss,
    "mara": grpo.mara_loss,
    "eco": eco.eco_loss,
    "dph_rl": dph_rl.dph_rl_loss,
    "fdpg": fdpg.fdpg_loss,
}


def compute_loss(name: str, batch: ObjectiveBatch, cfg: ObjectiveConfig) -> tuple[Tensor, dict[str, float]]:
    """The registered objective `name` on `batch`: (scalar loss to minimise, float diagnostics)."""
    if name not in OBJECTIVES:
        raise KeyError(f"unknown objective {name!r}; registered: {sorted(OBJECTIVES)}")
    return OBJECTIVES[name](batch, cfg)


def config_fields() -> list[str]:
    return [f.name for f in fields(ObjectiveConfig)]


__all__ = ["ObjectiveBatch", "ObjectiveConfig", "OBJECTIVES", "compute_loss", "config_fields"]
