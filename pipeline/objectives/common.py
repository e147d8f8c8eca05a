"""Shared tensor helpers for the objectives: sequence log-probs, per-prompt (group) reductions,
KL estimators and the diagnostics every objective reports (the loss scale is `base.Aggregation`).

Conventions used everywhere in `pipeline.objectives`:
- A sequence log-prob is the masked token sum; `length_norm=True` gives the masked token mean.
  Masked positions are zeroed with `torch.where` before summing, so padding may hold anything
  (even -inf) without producing NaN.
- `group` holds prompt ids; they need not be contiguous. Reductions go through
  `torch.unique(return_inverse=True)`, so the order of groups is the sorted order of the ids.
- Importance weights and pseudo-rewards are computed in float64 under `torch.no_grad()` and cast
  back to the policy dtype only where they multiply a log-prob.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


# ---- sequence log-probs

def masked(x: Tensor, mask: Tensor) -> Tensor:
    """x with masked-out positions set to 0 (safe when padding holds -inf or NaN)."""
    return torch.where(mask > 0, x, torch.zeros_like(x))


def seq_logp(logp: Tensor, mask: Tensor, length_norm: bool = False) -> Tensor:
    """[N, T] token log-probs -> [N] sequence log-prob: masked sum, or masked mean if length_norm."""
    s = masked(logp, mask).sum(-1)
    if length_norm:
        s = s / mask.sum(-1).clamp(min=1)
    return s


# ---- groups (one group = the samples of one prompt)

def group_index(group: Tensor) -> tuple[Tensor, int]:
    """Contiguous group index in [0, G) for every sample, and G."""
    uniq, inv = torch.unique(group, return_inverse=True)
    return inv, int(uniq.numel())


def group_sum(x: Tensor, inv: Tensor, n_groups: int) -> Tensor:
    return torch.zeros(n_groups, dtype=x.dtype, device=x.device).index_add_(0, inv, x)


def group_count(inv: Tensor, n_groups: int, dtype=torch.float64) -> Tensor:
    return group_sum(torch.ones_like(inv, dtype=dtype), inv, n_groups)


def group_mean(x: Tensor, inv: Tensor, n_groups: int) -> Tensor:
    """[G] mean of x over each group."""
    return group_sum(x, inv, n_groups) / group_count(inv, n_groups, x.dtype).clamp(min=1)


def group_max(x: Tensor, inv: Tensor, n_groups: int) -> Tensor:
    out = torch.full((n_groups,), -math.inf, dtype=x.dtype, device=x.device)
    return out.scatter_reduce(0, inv, x, reduce="amax", include_self=True)


def group_logsumexp(x: Tensor, inv: Tensor, n_groups: int) -> Tensor:
    """[G] log Σ_{i∈g} exp(x_i); -inf for a group whose entries are all -inf."""
    m = group_max(x, inv, n_groups)
    m_safe = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    s = group_sum(torch.exp(x - m_safe[inv]), inv, n_groups)
    return torch.log(s) + m_safe


def loo_mean(x: Tensor, inv: Tensor, n_groups: int) -> Tensor:
    """[N] leave-one-out mean of x within each group: mean_{j∈g, j≠i} x_j (0 for a group of one)."""
    s = group_sum(x, inv, n_groups)[inv]
    n = group_count(inv, n_groups, x.dtype)[inv]
    return torch.where(n > 1, (s - x) / (n - 1).clamp(min=1), torch.zeros_like(x))


def baseline(x: Tensor, inv: Tensor, n_groups: int, kind: str) -> Tensor:
    """Per-sample baseline of x within its group: 'none' (0), 'mean' (group mean), 'leave_one_out'."""
    if kind == "none":
        return torch.zeros_like(x)
    if kind == "mean":
        return group_mean(x, inv, n_groups)[inv]
    if kind == "leave_one_out":
        return loo_mean(x, inv, n_groups)
    raise ValueError(f"unknown baseline {kind!r}: expected none | mean | leave_one_out")


# ---- KL estimators (Schulman, "Approximating KL divergence", 2020)

def k3(logp: Tensor, ref_logp: Tensor, clamp: float | None = None) -> Tensor:
    """Per-token k3 = r − log r − 1 with r = π_ref/π_θ: ≥ 0, = 0 iff π_θ = π_ref on that token,
    unbiased for KL(π_θ‖π_ref) on samples of π_θ. Computed as expm1(d) − d, d = log r.
    `clamp`: verl's "low_var_kl" (used by the α-DPG authors' RL baseline) clamps log r to ±20 and
    the k3 value to at most `clamp` (10 there)."""
    d = ref_logp - logp
    if clamp is None:
        return torch.expm1(d) - d
    d = d.clamp(-20.0, 20.0)
    return (torch.expm1(d) - d).clamp(max=float(clamp))


# ---- diagnostics

@torch.no_grad()
def ess(w: Tensor, inv: Tensor, n_groups: int) -> tuple[Tensor, Tensor]:
    """Per-group effective sample size (Σw)²/Σw² (0 for a group with no weight) and group sizes."""
    s1 = group_sum(w, inv, n_groups)
    s2 = group_sum(w * w, inv, n_groups)
    e = torch.where(s2 > 0, s1 * s1 / s2.clamp(min=1e-300), torch.zeros_like(s1))
    return e, group_count(inv, n_groups, w.dtype)


@torch.no_grad()
def weight_diagnostics(w: Tensor, accepted: Tensor, inv: Tensor, n_groups: int, prefix: str = "") -> dict:
    """ESS (mean over prompts with some weight, and as a fraction of k) and the mean weight on
    accepted samples, for non-negative weights w [N]."""
    e, k = ess(w, inv, n_groups)
    has = e > 0
    out = {
        f"{prefix}ess": float(e[has].mean()) if bool(has.any()) else 0.0,
        f"{prefix}ess_frac": float((e[has] / k[has]).mean()) if bool(has.any()) else 0.0,
        f"{prefix}ess_batch": float(w.sum() ** 2 / (w * w).sum()) if bool((w > 0).any()) else 0.0,
        f"{prefix}mean_weight_accepted": float(w[accepted].mean()) if bool(accepted.any()) else 0.0,
        f"{prefix}max_weight": float(w.max()) if w.numel() else 0.0,
    }
    return out


@torch.no_grad()
def common_diagnostics(batch, inv: Tensor, n_groups: int) -> dict:
    """Acceptance rate, fraction of prompts with no / only accepted samples, and sequence-level KL
    estimates of policy vs reference on the batch samples (k1 = Σ_t log π_θ/π_ref, k3 = Σ_t k3_t;
    unbiased for KL(π_θ‖π_ref) only when the samples come from π_θ)."""
    acc = (batch.reward > 0.5).to(torch.float64)
    n_acc = group_sum(acc, inv, n_groups)
    k = group_count(inv, n_groups)
    pol = batch.policy_logp.detach()
    ref = batch.ref_logp.detach()
    return {
        "acceptance": float(acc.mean()) if acc.numel() else 0.0,
        "frac_prompts_no_accepted": float((n_acc == 0).to(torch.float64).mean()) if n_groups else 0.0,
        "frac_prompts_all_accepted": float((n_acc == k).to(torch.float64).mean()) if n_groups else 0.0,
        "kl_k1": float(masked(pol - ref, batch.mask).sum(-1).mean()) if acc.numel() else 0.0,
        "kl_k3": float(masked(k3(pol, ref), batch.mask).sum(-1).mean()) if acc.numel() else 0.0,
        "kl_k1_policy_old": float(masked(pol - batch.old_logp.detach(), batch.mask).sum(-1).mean())
        if acc.numel() else 0.0,
        "n_prompts": float(n_groups),
        "n_samples": float(acc.numel()),
    }


def accepted_mask(reward: Tensor) -> Tensor:
    """The verifier's verdict as a bool: reward > 0.5 (rewards are 0/1)."""
    return reward > 0.5
