"""f-DPG (Go et al. 2023, "Aligning Language Models with Preferences through f-divergence
Minimization", ICML; code naver/disco): minimise D_f(π_θ‖p) = E_p[f(π_θ/p)] with
    ∇_θ D_f(π_θ‖p) = E_{y∼π_θ}[ f'(π_θ(y)/p(y)) ∇ log π_θ(y) ]        (the f-DPG gradient; see the note)
i.e. policy gradient with pseudo-reward R = −f'(t), t = π_θ/p (stop-gradient). Off-policy samples
from q are reweighted by ρ = π_θ/q:
    A_i = ρ_i (R_i − β_i),   loss = −mean_prompts mean_i A_i ℓ_i,   ℓ_i = Σ_t log π_θ(y_i,t),
so E[∇loss] = ∇D_f(π_θ‖p) exactly when Z is exact and β_i does not depend on y_i (none or
leave_one_out). Generators (t = π/p; a rejected proof has p = 0, t = +∞):
    js: f'(t) = log(2t/(1+t))  (disco's JS, D_f = 2·JSD(π, p)); f'(∞) = log 2
    kl: f'(t) = −1/t           (forward KL(p‖π), the KL-DPG / α = 0 point); f'(∞) = 0
    tv: f'(t) = ½ sign(t − 1)  (total variation); f'(∞) = ½
The reverse KL (f'(t) = log t + 1) is not offered: f'(∞) = ∞ on rejected proofs with a 0/1 verifier.
The α family is alpha_dpg (whose scale is (1−α) times Amari's f', see that module).
log Z comes from z_source (as alpha_dpg's z_estimate). With all proofs rejected every sample has
the same pseudo-reward −f'(∞), which a mean or leave-one-out baseline removes (zero gradient);
with baseline none the estimator is still unbiased but that batch's gradient is not zero.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from pipeline.objectives.alpha_dpg import resolve_log_z
from pipeline.objectives.common import (accepted_mask, baseline, common_diagnostics, group_index, prompt_mean,
                                        seq_logp)

if TYPE_CHECKING:
    from pipeline.objectives import ObjectiveBatch, ObjectiveConfig


def f_prime(log_t: Tensor, kind: str) -> Tensor:
    """f'(t) from log t (+∞ allowed) for kind in js | kl | tv."""
    if kind == "js":
        return math.log(2.0) - F.softplus(-log_t)
    if kind == "kl":
        return -torch.exp(-log_t)
    if kind == "tv":
        return 0.5 * torch.sign(log_t)
    raise ValueError(f"unknown fdpg_divergence {kind!r}: expected js | kl | tv")


def js_divergence_x2(pi: Tensor, p: Tensor, dim: int = -1) -> Tensor:
    """disco's JS on categorical distributions: Σ π log(2π/(π+p)) + p log(2p/(π+p)) = 2·JSD(π, p)."""
    m = pi + p
    return (torch.xlogy(pi, 2 * pi) - torch.xlogy(pi, m) + torch.xlogy(p, 2 * p) - torch.xlogy(p, m)).sum(dim)


def fdpg_loss(batch: "ObjectiveBatch", cfg: "ObjectiveConfig") -> tuple[Tensor, dict[str, float]]:
    inv, n_groups = group_index(batch.group)
    acc = accepted_mask(batch.reward)
    with torch.no_grad():
        f = lambda x: seq_logp(x.detach().to(torch.float64), batch.mask)  # noqa: E731
        pol, old, ref = f(batch.policy_logp), f(batch.old_logp), f(batch.ref_logp)
        log_z, fb = resolve_log_z(batch, cfg.z_source, ref, old, acc, inv, n_groups)
        log_t = torch.where(acc, pol - (ref - log_z), torch.full_like(pol, math.inf))
        r = -f_prime(log_t, cfg.fdpg_divergence)
        rho = torch.exp(pol - old)
        adv = rho * (r - baseline(r, inv, n_groups, cfg.fdpg_baseline))
    ell = seq_logp(batch.policy_logp, batch.mask, cfg.length_norm)
    loss = -prompt_mean(adv.to(ell.dtype) * ell, inv, n_groups)
    diag = common_diagnostics(batch, inv, n_groups)
    diag.update({"z_fallback_frac": fb, "pseudo_reward_mean": float(r.mean()) if r.numel() else 0.0,
                 "advantage_abs_mean": float(adv.abs().mean()) if adv.numel() else 0.0,
                 "ratio_mean": float(rho.mean()) if rho.numel() else 0.0})
    return loss, diag
