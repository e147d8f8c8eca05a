"""f-DPG (Go et al. 2023, "Aligning Language Models with Preferences through f-divergence
Minimization", ICML; code naver/disco): minimise D_f(π_θ‖p) = E_p[f(π_θ/p)] by policy gradient with
pseudo-reward R = −f'(t), t = π_θ/p (stop-gradient), reweighted by ρ = π_θ/q off-policy:
    A_i = ρ_i (R_i − β_i),   s_i = −A_i ℓ_i   (summed and scaled by the run's `Aggregation`)
Generators (t = π/p; a rejected proof has p = 0, t = +∞): js f'(t) = log(2t/(1+t)) (disco's JS,
D_f = 2·JSD), kl f'(t) = −1/t (forward KL(p‖π), the α = 0 point of α-DPG), tv f'(t) = ½ sign(t − 1).
The reverse KL (f'(t) = log t + 1) is not offered: f'(∞) = ∞ on rejected proofs with a 0/1 verifier.
Derivation and conventions: docs/objectives.md, "f-DPG".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from pipeline.objectives.alpha_dpg import BASELINES, Z_SOURCES, resolve_log_z
from pipeline.objectives.base import Aggregation, ObjectiveBatch, register_objective
from pipeline.objectives.common import accepted_mask, baseline, common_diagnostics, group_index, seq_logp

DIVERGENCES = ("js", "kl", "tv")


@dataclass
class FDPGOptions:
    """`train.fdpg.*`."""
    divergence: str = "js"  # js (disco's JS = 2·JSD) | kl (forward KL(p‖π)) | tv
    baseline: str = "leave_one_out"  # none | mean | leave_one_out, on the pseudo-rewards −f'(π/p)
    z_source: str = "auto"  # auto (batch.log_z where finite, else the in-batch estimate) | log_z | group_is

    def check(self) -> None:
        for name, value, choices in (("divergence", self.divergence, DIVERGENCES),
                                     ("baseline", self.baseline, BASELINES), ("z_source", self.z_source, Z_SOURCES)):
            if value not in choices:
                raise ValueError(f"{name}={value!r}: expected one of {' | '.join(choices)}")


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


@register_objective("fdpg", options=FDPGOptions, title=lambda o: f"f-DPG {o.divergence.upper()}")
def fdpg_loss(batch: ObjectiveBatch, opt: FDPGOptions, agg: Aggregation) -> tuple[Tensor, dict[str, float]]:
    inv, n_groups = group_index(batch.group)
    acc = accepted_mask(batch.reward)
    with torch.no_grad():
        f = lambda x: seq_logp(x.detach().to(torch.float64), batch.mask)  # noqa: E731
        pol, old, ref = f(batch.policy_logp), f(batch.old_logp), f(batch.ref_logp)
        log_z, fb = resolve_log_z(batch, opt.z_source, ref, old, acc, inv, n_groups)
        log_t = torch.where(acc, pol - (ref - log_z), torch.full_like(pol, math.inf))
        r = -f_prime(log_t, opt.divergence)
        rho = torch.exp(pol - old)
        adv = rho * (r - baseline(r, inv, n_groups, opt.baseline))
    ell = agg.seq(batch.policy_logp, batch.mask)
    loss = agg.reduce(-adv.to(ell.dtype) * ell, batch.mask)
    diag = common_diagnostics(batch, inv, n_groups)
    diag.update({"z_fallback_frac": fb, "pseudo_reward_mean": float(r.mean()) if r.numel() else 0.0,
                 "advantage_abs_mean": float(adv.abs().mean()) if adv.numel() else 0.0,
                 "ratio_mean": float(rho.mean()) if rho.numel() else 0.0})
    return loss, diag
