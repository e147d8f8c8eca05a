"""α-DPG: distribution matching to p(y|x) = a(y|x)·b(y|x)/Z(x) under the Amari α-divergence.

Closed form (Amari; α-DPG paper, Kruszewski et al. 2025, "Whatever Remains Must Be True",
arXiv 2512.05962, as written in shared/reference/objectives.md §"α-divergence" and §"Gradient";
the paper's own equation numbers could not be checked with our tools, only its abstract):
    D_α(p, π) = (1 − Σ_y p^(1−α) π^α) / (α(1−α)),   D_0 = KL(p‖π),  D_1 = KL(π‖p).
Gradient:  ∇_θ D_α = −1/(1−α) · E_{y∼q}[ w(y) ∇ log π_θ(y) ],  w = p^(1−α) π_θ^α / q.

SCALE CONVENTION. The loss here has expected gradient (1−α)·∇D_α (not ∇D_α), i.e. it is the
gradient of the *scaled* divergence
    F_α(p, π) = (1−α)·D_α = (1 − Σ_y p^(1−α) π^α) / α,
which is finite on all of [0, 1]: F_0 = KL(p‖π) and F_1 = 1 − P_π(accepted) (its gradient is the
binary-reward policy gradient, −∇P_π(b = 1)). This is the same scale as naver/alpha-dpg's
pseudo-reward (p/π)^(1−α) − 1, "Amari's f' times (1−α)". `scaled_alpha_divergence` is F_α.
At α = 1 the estimator is the exact limit: w = 1{accepted}·π_θ/q (see DISAGREEMENT below).

Estimator (per prompt, k samples, stop-gradient on everything but log π_θ(y_i)):
    log w_i = (1−α)(log a_i − log Z) + α log π_θ(y_i) − log q_i   if y_i is accepted; w_i = 0 otherwise
    w̃_i     = normalised weight (alpha_dpg_norm), then min(w̃_i, clip_max)
    A_i     = w̃_i − ρ_i·β_i,   ρ_i = π_θ(y_i)/q(y_i),  β_i = baseline of w̃ in the prompt
    loss    = − mean_prompts mean_i A_i · ℓ_i,   ℓ_i = Σ_t log π_θ (or token mean if length_norm)
Normalisations (all sequence log-probs are masked token SUMS inside the weights):
- z_estimate: w̃ = w with log Z from `z_source`. With the true Z, E[∇loss] = (1−α)∇D_α exactly,
  on- or off-policy, with baseline none or leave_one_out: multiplying the baseline by ρ makes any
  β_i independent of y_i a zero-mean control variate, since E_q[ρ∇log π] = Σ_y ∇π = 0.
- self_normalised: w̃_i = w_i / mean_{j∈prompt} w_j, Z cancels. A ratio estimator: as k → ∞ the
  per-prompt gradient → −E_q[w∇log π]/E_q[w] = (1−α)∇D_α / S_α with S_α = Σ p^(1−α)π^α
  (S_0 = 1; S_1 = P_π(accepted), so α = 1 gives −∇log P_π(accepted)); the bias is O(1/k).
- batch: w̃_i = w_i / mean_{batch} w (log Z from `z_source`); prompts compete for weight.
The `mean` baseline includes y_i itself (O(1/k) bias); `leave_one_out` excludes it.
α = 0 with q = a (offline base samples): w ∝ b, so self_normalised + baseline none is SFT on the
accepted base samples: with alpha_dpg_prompt_mean="solved" it equals rsft(rsft_norm="prompt").

Paper preset (naver/alpha-dpg, verl `core_algos.compute_fcdpg_advantage` + `fcdpg` policy loss +
`ray_trainer.compute_partition_function`; examples/lean/alpha-dpg.sh):
    Ẑ = min(1, mean_{i∈prompt} a_i b_i / π_old,i)   (reset every step; z_source=group_is)
      — with z_source=auto and batch.log_z given, the cached value is used instead, like their
        code's precomputed "partition_function" path (no cap then)
    R_i = (p_i/π_old,i)^(1−α) − 1  on accepted, −1 on rejected,  R_i ← min(R_i, 10)
    A_i = R_i − mean_{j≠i} R_j,    loss = mean_i(−A_i Σ_t log π_θ) / 1024
Their code computes R = −f'(t), t = π_old/p, f'(t) = 1 − t^(α−1) = −expm1((α−1) log t); with
α = 0 this is f'(t) = 1 − 1/t (their special case, numerically the same formula here).
DISAGREEMENT (reported): their α = 1 special case f'(t) = log t − 1 is the reverse-KL generator,
the α → 1 limit of the *unscaled* Amari f', not of the (1−α)-scaled f' they use for α < 1, whose
limit is f' = 0 on accepted and 1 on rejected proofs; with a 0/1 verifier log t = +∞ on rejected
proofs, so their α = 1 gives pseudo-reward −∞ there (−∞ or NaN advantages after the baseline). We use the exact limit of
the scaled family at α = 1 in both modes (R = b − 1, i.e. leave-one-out RL on the verdict).
Also unlike their code, the paper preset here averages over the whole batch instead of per
micro-batch, and has no moving-average Z across steps (reset_z = true in their example anyway).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from pipeline.objectives.common import (accepted_mask, baseline, common_diagnostics, group_count, group_index,
                                        group_logsumexp, group_sum, prompt_mean, seq_logp, weight_diagnostics)

if TYPE_CHECKING:
    from pipeline.objectives import ObjectiveBatch, ObjectiveConfig


# ---- closed forms on categorical distributions (tests, diagnostics)

def kl(p: Tensor, q: Tensor, dim: int = -1) -> Tensor:
    """KL(p‖q) = Σ p log(p/q), with 0 log 0 = 0 (and +∞ where p > 0 = q)."""
    return (torch.xlogy(p, p) - torch.xlogy(p, q)).sum(dim)


def _amari_sum(p: Tensor, pi: Tensor, alpha: float, dim: int) -> Tensor:
    """Σ p^(1−α) π^α in log space (0 where either is 0), for 0 < α < 1."""
    return torch.exp((1 - alpha) * torch.log(p) + alpha * torch.log(pi)).sum(dim)


def alpha_divergence(p: Tensor, pi: Tensor, alpha: float, dim: int = -1) -> Tensor:
    """Amari D_α(p, π) = (1 − Σ p^(1−α)π^α)/(α(1−α)); exact endpoints D_0 = KL(p‖π), D_1 = KL(π‖p).
    D_½ = 4(1 − Σ√(pπ)) = 2Σ(√p − √π)²."""
    _check_alpha(alpha)
    if alpha == 0.0:
        return kl(p, pi, dim)
    if alpha == 1.0:
        return kl(pi, p, dim)
    return (1 - _amari_sum(p, pi, alpha, dim)) / (alpha * (1 - alpha))


def scaled_alpha_divergence(p: Tensor, pi: Tensor, alpha: float, dim: int = -1) -> Tensor:
    """F_α = (1−α)·D_α(p, π) = (1 − Σ p^(1−α)π^α)/α: the quantity whose gradient the α-DPG loss
    estimates. F_0 = KL(p‖π); F_1 = 1 − Σ_{p>0} π (one minus the acceptance probability)."""
    _check_alpha(alpha)
    if alpha == 0.0:
        return kl(p, pi, dim)
    if alpha == 1.0:
        return 1 - torch.where(p > 0, pi, torch.zeros_like(pi)).sum(dim)
    return (1 - _amari_sum(p, pi, alpha, dim)) / alpha


def _check_alpha(alpha: float) -> None:
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")


# ---- weights

@torch.no_grad()
def group_is_log_z(seq_ref: Tensor, seq_old: Tensor, accepted: Tensor, inv: Tensor, n_groups: int) -> Tensor:
    """[G] in-batch importance-sampling estimate log Ẑ = log mean_{i∈g} a_i b_i / q_i (-inf: none accepted)."""
    x = torch.where(accepted, seq_ref - seq_old, torch.full_like(seq_ref, -math.inf))
    return group_logsumexp(x, inv, n_groups) - torch.log(group_count(inv, n_groups, x.dtype))


@torch.no_grad()
def resolve_log_z(batch: "ObjectiveBatch", source: str, seq_ref: Tensor, seq_old: Tensor, accepted: Tensor,
                  inv: Tensor, n_groups: int, cap_estimate_at_one: bool = False) -> tuple[Tensor, float]:
    """Per-sample log Z [N] (float64) and the fraction of prompts that fell back to the in-batch
    estimate. `source`: auto | log_z | group_is (see ObjectiveConfig.z_source)."""
    est = group_is_log_z(seq_ref, seq_old, accepted, inv, n_groups)
    if cap_estimate_at_one:
        est = est.clamp(max=0.0)
    if source == "group_is":
        return est[inv], 1.0
    if source not in ("auto", "log_z"):
        raise ValueError(f"unknown z_source {source!r}: expected auto | log_z | group_is")
    if batch.log_z is None:
        if source == "log_z":
            raise ValueError("z_source='log_z' needs batch.log_z")
        return est[inv], 1.0
    cached = batch.log_z.detach().to(torch.float64)[batch.group]
    finite = torch.isfinite(cached)
    fallback = group_sum((~finite).to(torch.float64), inv, n_groups) > 0
    return torch.where(finite, cached, est[inv]), float(fallback.to(torch.float64).mean())


@torch.no_grad()
def log_importance_weights(seq_pol: Tensor, seq_old: Tensor, seq_ref: Tensor, accepted: Tensor,
                           log_z: Tensor | float, alpha: float) -> Tensor:
    """log w = (1−α)(log a − log Z) + α log π_θ − log q on accepted samples, −∞ on rejected ones.
    Exact at both ends: α = 0 gives log p/q, α = 1 gives log π_θ/q on accepted samples (the
    indicator 1{b=1} is applied by masking, so 0·(−∞) never appears)."""
    _check_alpha(alpha)
    lw = (1 - alpha) * (seq_ref - log_z) + alpha * seq_pol - seq_old
    return torch.where(accepted, lw, torch.full_like(lw, -math.inf))


@torch.no_grad()
def normalise_weights(log_w: Tensor, inv: Tensor, n_groups: int, mode: str) -> Tensor:
    """Normalised weights w̃ [N] from log w (see module docstring); 0 where log w = −∞."""
    pos = torch.isfinite(log_w)
    if mode == "z_estimate":
        return torch.where(pos, torch.exp(log_w), torch.zeros_like(log_w))
    if mode == "self_normalised":
        lse = group_logsumexp(log_w, inv, n_groups)
        k = group_count(inv, n_groups, log_w.dtype)
        shifted = torch.where(pos, log_w - lse[inv] + torch.log(k[inv]), torch.zeros_like(log_w))
        return torch.where(pos, torch.exp(shifted), torch.zeros_like(log_w))
    if mode == "batch":
        if not bool(pos.any()):
            return torch.zeros_like(log_w)
        lse = torch.logsumexp(log_w[pos], 0)
        shifted = torch.where(pos, log_w - lse + math.log(log_w.numel()), torch.zeros_like(log_w))
        return torch.where(pos, torch.exp(shifted), torch.zeros_like(log_w))
    raise ValueError(f"unknown alpha_dpg_norm {mode!r}: expected self_normalised | z_estimate | batch")


def _sequence_scores(batch: "ObjectiveBatch") -> tuple[Tensor, Tensor, Tensor]:
    """Sequence log-prob sums in float64, all detached: (log π_θ, log q, log a)."""
    f = lambda x: seq_logp(x.detach().to(torch.float64), batch.mask)  # noqa: E731
    return f(batch.policy_logp), f(batch.old_logp), f(batch.ref_logp)


@torch.no_grad()
def alpha_dpg_advantages(batch: "ObjectiveBatch", cfg: "ObjectiveConfig", inv: Tensor, n_groups: int
                         ) -> tuple[Tensor, dict]:
    """Per-sample coefficients A_i [N] (float64) multiplying −ℓ_i in the α-DPG loss, and diagnostics."""
    alpha, norm = float(cfg.alpha), cfg.alpha_dpg_norm
    pol, old, ref = _sequence_scores(batch)
    acc = accepted_mask(batch.reward)
    diag: dict = {}
    if norm == "self_normalised":
        log_z = torch.zeros_like(ref)  # cancels in w / mean_g(w)
    else:
        log_z, fb = resolve_log_z(batch, cfg.z_source, ref, old, acc, inv, n_groups)
        diag["z_fallback_frac"] = fb
        diag["log_z_mean"] = float(log_z[acc].mean()) if bool(acc.any()) else 0.0
    w = normalise_weights(log_importance_weights(pol, old, ref, acc, log_z, alpha), inv, n_groups, norm)
    if cfg.alpha_dpg_clip_max is not None:
        diag["frac_clipped"] = float((w > cfg.alpha_dpg_clip_max).to(torch.float64).mean())
        w = w.clamp(max=float(cfg.alpha_dpg_clip_max))
    rho = torch.exp(pol - old)
    adv = w - rho * baseline(w, inv, n_groups, cfg.alpha_dpg_baseline)
    diag.update(weight_diagnostics(w, acc, inv, n_groups))
    diag["ratio_mean"] = float(rho.mean()) if rho.numel() else 0.0
    return adv, diag


@torch.no_grad()
def paper_pseudo_rewards(batch: "ObjectiveBatch", cfg: "ObjectiveConfig", inv: Tensor, n_groups: int
                         ) -> tuple[Tensor, dict]:
    """naver/alpha-dpg pseudo-rewards R_i = (p_i/π_old,i)^(1−α) − 1 (−1 on rejected), clipped from above."""
    alpha = float(cfg.alpha)
    _check_alpha(alpha)
    _, old, ref = _sequence_scores(batch)
    acc = accepted_mask(batch.reward)
    log_z, fb = resolve_log_z(batch, cfg.z_source, ref, old, acc, inv, n_groups, cap_estimate_at_one=True)
    log_t = torch.where(acc, old - (ref - log_z), torch.zeros_like(old))  # t = π_old / p on accepted
    r = torch.where(acc, torch.expm1(-(1 - alpha) * log_t), torch.full_like(old, -1.0))
    diag = {"z_fallback_frac": fb, "pseudo_reward_mean": float(r.mean()) if r.numel() else 0.0}
    if cfg.alpha_dpg_paper_clip is not None:
        diag["frac_clipped"] = float((r > cfg.alpha_dpg_paper_clip).to(torch.float64).mean())
        r = r.clamp(max=float(cfg.alpha_dpg_paper_clip))
    return r, diag


def alpha_dpg_loss(batch: "ObjectiveBatch", cfg: "ObjectiveConfig", preset: str | None = None
                   ) -> tuple[Tensor, dict[str, float]]:
    """α-DPG surrogate loss (module docstring); `preset` overrides cfg.alpha_dpg_preset."""
    preset = preset or cfg.alpha_dpg_preset
    inv, n_groups = group_index(batch.group)
    diag = common_diagnostics(batch, inv, n_groups)
    diag["alpha"] = float(cfg.alpha)
    if preset == "paper":
        r, d = paper_pseudo_rewards(batch, cfg, inv, n_groups)
        adv = r - baseline(r, inv, n_groups, "leave_one_out")
        ell = seq_logp(batch.policy_logp, batch.mask)
        loss = -(adv.to(ell.dtype) * ell).mean() / cfg.loss_norm_tokens
        w = torch.where(accepted_mask(batch.reward), r + 1, torch.zeros_like(r))  # (p/π_old)^(1−α)
        diag.update(d)
        diag.update(weight_diagnostics(w, accepted_mask(batch.reward), inv, n_groups))
    elif preset in ("none", "", None):
        adv, d = alpha_dpg_advantages(batch, cfg, inv, n_groups)
        ell = seq_logp(batch.policy_logp, batch.mask, cfg.length_norm)
        keep = _prompt_selection(batch, inv, n_groups, cfg.alpha_dpg_prompt_mean)
        loss = -prompt_mean(adv.to(ell.dtype) * ell, inv, n_groups, keep)
        diag.update(d)
    else:
        raise ValueError(f"unknown alpha_dpg_preset {preset!r}: expected none | paper")
    diag["advantage_abs_mean"] = float(adv.abs().mean()) if adv.numel() else 0.0
    return loss, diag


def alpha_dpg_paper_loss(batch: "ObjectiveBatch", cfg: "ObjectiveConfig") -> tuple[Tensor, dict[str, float]]:
    """The paper preset regardless of cfg.alpha_dpg_preset (registered as 'alpha_dpg_paper')."""
    return alpha_dpg_loss(batch, cfg, preset="paper")


def _prompt_selection(batch: "ObjectiveBatch", inv: Tensor, n_groups: int, kind: str) -> Tensor | None:
    if kind == "all":
        return None
    if kind == "solved":
        return group_sum(accepted_mask(batch.reward).to(torch.float64), inv, n_groups) > 0
    raise ValueError(f"unknown alpha_dpg_prompt_mean {kind!r}: expected all | solved")
