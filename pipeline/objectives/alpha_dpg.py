"""α-DPG: distribution matching to p(y|x) = a(y|x)·b(y|x)/Z(x) under the Amari α-divergence
(Kruszewski et al., "Whatever Remains Must Be True", arXiv 2512.05962), and the α-DPG authors' own
estimator as the preset `alpha_dpg_paper` (naver/alpha-dpg, examples/lean/alpha-dpg.sh).

The mathematics (the divergence, the (1−α) scale convention, the estimator, its normalisations and
baselines, the bias of the self-normalised one, the paper preset and where it departs from the
authors' code at α = 1) is derived in docs/objectives.md, sections "α-DPG" and "The paper preset".
In short, per prompt with k samples from q and stop-gradient on everything but log π_θ:
    log w_i = (1−α)(log a_i − log Z) + α log π_θ(y_i) − log q_i  on accepted y_i, w_i = 0 otherwise
    A_i     = w̃_i − ρ_i·β_i,   ρ_i = π_θ(y_i)/q(y_i),   s_i = −A_i ℓ_i   (summed and scaled by `Aggregation`)
and the paper preset uses R_i = (p_i/π_old,i)^(1−α) − 1 (−1 on rejected), clipped at 10, minus its
leave-one-out mean, with Ẑ re-estimated per prompt on every batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from pipeline.objectives.base import Aggregation, ObjectiveBatch, register_objective
from pipeline.objectives.common import (accepted_mask, baseline, common_diagnostics, group_count, group_index,
                                        group_logsumexp, group_sum, seq_logp, weight_diagnostics)

NORMS = ("self_normalised", "z_estimate", "batch")
BASELINES = ("none", "mean", "leave_one_out")
Z_SOURCES = ("auto", "log_z", "group_is")


@dataclass
class AlphaDPGOptions:
    """`train.alpha_dpg.*` (docs/objectives.md, "α-DPG")."""
    alpha: float = 0.25  # α in [0, 1]: 0 forward KL(p‖π) (mass-covering), 1 the binary-RL limit
    norm: str = "self_normalised"  # self_normalised: w / mean_prompt(w) (Z cancels) | z_estimate: w with log Z from z_source | batch: w / mean_batch(w)
    baseline: str = "leave_one_out"  # none | mean | leave_one_out, of the normalised weights in the prompt, times ρ = π_θ/q
    clip_max: Optional[float] = None  # clip the normalised weights from above (None: no clipping)
    z_source: str = "auto"  # z_estimate and batch: auto (batch.log_z where finite, else the in-batch estimate) | log_z | group_is

    def check(self) -> None:
        _check_alpha(self.alpha, "alpha")
        _check_choice("norm", self.norm, NORMS)
        _check_choice("baseline", self.baseline, BASELINES)
        _check_choice("z_source", self.z_source, Z_SOURCES)
        if self.clip_max is not None and self.clip_max <= 0:
            raise ValueError(f"clip_max={self.clip_max} must be > 0 (or null)")


@dataclass
class AlphaDPGPaperOptions:
    """`train.alpha_dpg_paper.*` (docs/objectives.md, "The paper preset")."""
    alpha: float = 0.25  # the authors' Lean example
    pseudo_reward_clip: Optional[float] = 10.0  # their algorithm.fcdpg.pseudo_reward_clip
    z_default: float = 1e-4  # their algorithm.fcdpg.z_default: Ẑ of a prompt with no accepted sample

    def check(self) -> None:
        _check_alpha(self.alpha, "alpha")
        if self.z_default <= 0:
            raise ValueError(f"z_default={self.z_default} must be > 0")


def _check_choice(name: str, value: str, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r}: expected one of {' | '.join(choices)}")


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


def _check_alpha(alpha: float, name: str = "alpha") -> None:
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"{name}={alpha} is outside [0, 1]")


# ---- weights

@torch.no_grad()
def group_is_log_z(seq_ref: Tensor, seq_old: Tensor, accepted: Tensor, inv: Tensor, n_groups: int) -> Tensor:
    """[G] in-batch importance-sampling estimate log Ẑ = log mean_{i∈g} a_i b_i / q_i (-inf: none accepted)."""
    x = torch.where(accepted, seq_ref - seq_old, torch.full_like(seq_ref, -math.inf))
    return group_logsumexp(x, inv, n_groups) - torch.log(group_count(inv, n_groups, x.dtype))


@torch.no_grad()
def resolve_log_z(batch: ObjectiveBatch, source: str, seq_ref: Tensor, seq_old: Tensor, accepted: Tensor,
                  inv: Tensor, n_groups: int, cap_estimate_at_one: bool = False) -> tuple[Tensor, float]:
    """Per-sample log Z [N] (float64) and the fraction of prompts that fell back to the in-batch
    estimate. `source`: auto | log_z | group_is (see AlphaDPGOptions.z_source)."""
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
    raise ValueError(f"unknown weight normalisation {mode!r}: expected self_normalised | z_estimate | batch")


def _sequence_scores(batch: ObjectiveBatch) -> tuple[Tensor, Tensor, Tensor]:
    """Sequence log-prob sums in float64, all detached: (log π_θ, log q, log a)."""
    f = lambda x: seq_logp(x.detach().to(torch.float64), batch.mask)  # noqa: E731
    return f(batch.policy_logp), f(batch.old_logp), f(batch.ref_logp)


@torch.no_grad()
def alpha_dpg_advantages(batch: ObjectiveBatch, opt: AlphaDPGOptions, inv: Tensor, n_groups: int
                         ) -> tuple[Tensor, dict]:
    """Per-sample coefficients A_i [N] (float64) multiplying −ℓ_i in the α-DPG loss, and diagnostics."""
    alpha = float(opt.alpha)
    pol, old, ref = _sequence_scores(batch)
    acc = accepted_mask(batch.reward)
    diag: dict = {}
    if opt.norm == "self_normalised":
        log_z = torch.zeros_like(ref)  # cancels in w / mean_g(w)
    else:
        log_z, fb = resolve_log_z(batch, opt.z_source, ref, old, acc, inv, n_groups)
        diag["z_fallback_frac"] = fb
        diag["log_z_mean"] = float(log_z[acc].mean()) if bool(acc.any()) else 0.0
    w = normalise_weights(log_importance_weights(pol, old, ref, acc, log_z, alpha), inv, n_groups, opt.norm)
    if opt.clip_max is not None:
        diag["frac_clipped"] = float((w > opt.clip_max).to(torch.float64).mean())
        w = w.clamp(max=float(opt.clip_max))
    rho = torch.exp(pol - old)
    adv = w - rho * baseline(w, inv, n_groups, opt.baseline)
    diag.update(weight_diagnostics(w, acc, inv, n_groups))
    diag["ratio_mean"] = float(rho.mean()) if rho.numel() else 0.0
    return adv, diag


@register_objective("alpha_dpg", options=AlphaDPGOptions, title="α-DPG", axis="alpha", axis_symbol="α")
def alpha_dpg_loss(batch: ObjectiveBatch, opt: AlphaDPGOptions, agg: Aggregation) -> tuple[Tensor, dict[str, float]]:
    """α-DPG surrogate: Σ_i −A_i ℓ_i on the run's loss scale (module docstring)."""
    inv, n_groups = group_index(batch.group)
    adv, diag = alpha_dpg_advantages(batch, opt, inv, n_groups)
    ell = agg.seq(batch.policy_logp, batch.mask)
    loss = agg.reduce(-adv.to(ell.dtype) * ell, batch.mask)
    diag.update(common_diagnostics(batch, inv, n_groups))
    diag["alpha"] = float(opt.alpha)
    diag["advantage_abs_mean"] = float(adv.abs().mean()) if adv.numel() else 0.0
    return loss, diag


@torch.no_grad()
def paper_log_z(batch: ObjectiveBatch, opt: AlphaDPGPaperOptions, inv: Tensor, n_groups: int) -> Tensor:
    """[N] log Ẑ of each sample's prompt as the authors compute it on every batch (their
    `compute_partition_function` with reset_z): Ẑ = min(1, mean_{i∈prompt} a_i b_i / π_old,i), and
    z_default where that is 0 (no accepted sample)."""
    _, old, ref = _sequence_scores(batch)
    est = group_is_log_z(ref, old, accepted_mask(batch.reward), inv, n_groups).clamp(max=0.0)
    est = torch.where(torch.isneginf(est), torch.full_like(est, math.log(opt.z_default)), est)
    return est[inv]


@torch.no_grad()
def paper_pseudo_rewards(batch: ObjectiveBatch, opt: AlphaDPGPaperOptions, inv: Tensor, n_groups: int
                         ) -> tuple[Tensor, dict]:
    """naver/alpha-dpg pseudo-rewards R_i = (p_i/π_old,i)^(1−α) − 1 (−1 on rejected), clipped from above."""
    alpha = float(opt.alpha)
    _check_alpha(alpha, "alpha")
    _, old, ref = _sequence_scores(batch)
    acc = accepted_mask(batch.reward)
    log_z = paper_log_z(batch, opt, inv, n_groups)
    log_t = torch.where(acc, old - (ref - log_z), torch.zeros_like(old))  # t = π_old / p on accepted
    r = torch.where(acc, torch.expm1(-(1 - alpha) * log_t), torch.full_like(old, -1.0))
    diag = {"pseudo_reward_mean": float(r.mean()) if r.numel() else 0.0,
            "log_z_mean": float(log_z[acc].mean()) if bool(acc.any()) else 0.0}
    if opt.pseudo_reward_clip is not None:
        diag["frac_clipped"] = float((r > opt.pseudo_reward_clip).to(torch.float64).mean())
        r = r.clamp(max=float(opt.pseudo_reward_clip))
    return r, diag


@register_objective("alpha_dpg_paper", options=AlphaDPGPaperOptions, title="α-DPG (paper estimator)",
                    axis="alpha", axis_symbol="α", modes=("online",), fresh_rollouts_per_step=True)
def alpha_dpg_paper_loss(batch: ObjectiveBatch, opt: AlphaDPGPaperOptions, agg: Aggregation
                         ) -> tuple[Tensor, dict[str, float]]:
    """The authors' update: Σ_i −(R_i − mean_{j≠i} R_j) ℓ_i on the run's loss scale (their
    seq-mean-token-sum-norm is the default scale). One optimiser step per batch of rollouts
    (fresh_rollouts_per_step), so π_old is the policy being updated, as in their script."""
    inv, n_groups = group_index(batch.group)
    r, diag = paper_pseudo_rewards(batch, opt, inv, n_groups)
    adv = r - baseline(r, inv, n_groups, "leave_one_out")
    ell = agg.seq(batch.policy_logp, batch.mask)
    loss = agg.reduce(-adv.to(ell.dtype) * ell, batch.mask)
    acc = accepted_mask(batch.reward)
    diag.update(common_diagnostics(batch, inv, n_groups))
    diag.update(weight_diagnostics(torch.where(acc, r + 1, torch.zeros_like(r)), acc, inv, n_groups))
    diag["alpha"] = float(opt.alpha)
    diag["advantage_abs_mean"] = float(adv.abs().mean()) if adv.numel() else 0.0
    return loss, diag
