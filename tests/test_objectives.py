"""Closed-form and limit-case tests of pipeline.objectives (see shared/reference/objectives.md)."""

from __future__ import annotations

import math
from dataclasses import fields
from itertools import combinations_with_replacement

import numpy as np
import pytest
import torch

from pipeline.objectives import OBJECTIVES, ObjectiveBatch, ObjectiveConfig, compute_loss
from pipeline.objectives.alpha_dpg import (alpha_divergence, alpha_dpg_advantages, kl, log_importance_weights,
                                           scaled_alpha_divergence)
from pipeline.objectives.common import aggregate, group_index, k3, loo_mean, seq_logp
from pipeline.objectives.dph_rl import forward_kl_generator, js_generator
from pipeline.objectives.eco import variance_penalty
from pipeline.objectives.fdpg import js_divergence_x2
from pipeline.objectives.grpo import (clipped_token_loss, ds_advantages, grpo_advantages, mara_rewards,
                                      unlikeliness_rewards)

DT = torch.float64


def cfg(**kw) -> ObjectiveConfig:
    return ObjectiveConfig(**kw)


def make_batch(n_groups=3, k=4, t=6, seed=0, reward=None, policy_eq_ref=False, on_policy=False, log_z=None,
               is_ref=None, dtype=DT):
    """A random token-level batch; variable completion lengths; returns (batch, policy leaf)."""
    g = torch.Generator().manual_seed(seed)
    n = n_groups * k
    pol = (-1.0 - 0.5 * torch.rand(n, t, generator=g, dtype=dtype)).requires_grad_()
    ref = pol.detach() if policy_eq_ref else pol.detach() + 0.3 * torch.randn(n, t, generator=g, dtype=dtype)
    old = pol.detach() if (on_policy or policy_eq_ref) else pol.detach() + 0.2 * torch.randn(n, t, generator=g, dtype=dtype)
    lengths = torch.randint(2, t + 1, (n,), generator=g)
    mask = (torch.arange(t)[None, :] < lengths[:, None]).to(dtype)
    if reward is None:
        reward = (torch.rand(n, generator=g) < 0.5).to(dtype)
    batch = ObjectiveBatch(policy_logp=pol, old_logp=old, ref_logp=ref, mask=mask,
                           reward=torch.as_tensor(reward, dtype=dtype),
                           group=torch.arange(n_groups).repeat_interleave(k), log_z=log_z, is_ref_sample=is_ref)
    return batch, pol


def grad_of(loss, leaf):
    (gr,) = torch.autograd.grad(loss, leaf, allow_unused=True)
    return torch.zeros_like(leaf) if gr is None else gr


# ====================================================================== the α-divergence closed form

def test_alpha_divergence_limits():
    g = torch.Generator().manual_seed(1)
    p = torch.softmax(torch.randn(7, generator=g, dtype=DT), 0)
    pi = torch.softmax(torch.randn(7, generator=g, dtype=DT), 0)
    fwd, rev = kl(p, pi), kl(pi, p)
    assert alpha_divergence(p, pi, 1e-6).item() == pytest.approx(fwd.item(), rel=1e-5)
    assert alpha_divergence(p, pi, 1 - 1e-6).item() == pytest.approx(rev.item(), rel=1e-5)
    half = alpha_divergence(p, pi, 0.5).item()
    assert half == pytest.approx(4 * (1 - torch.sqrt(p * pi).sum()).item(), rel=1e-12)
    assert half == pytest.approx(2 * ((p.sqrt() - pi.sqrt()) ** 2).sum().item(), rel=1e-10)
    # exact endpoints
    assert alpha_divergence(p, pi, 0.0).item() == pytest.approx(fwd.item(), rel=1e-14)
    assert alpha_divergence(p, pi, 1.0).item() == pytest.approx(rev.item(), rel=1e-14)
    with pytest.raises(ValueError):
        alpha_divergence(p, pi, 1.5)


def test_scaled_alpha_divergence_with_rejected_outcomes():
    """F_α = (1−α)D_α is finite on [0, 1] even when p has zeros: F_1 = 1 − P_π(accepted)."""
    p = torch.tensor([0.5, 0.5, 0.0, 0.0], dtype=DT)
    pi = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=DT)
    assert scaled_alpha_divergence(p, pi, 1.0).item() == pytest.approx(0.7)
    assert scaled_alpha_divergence(p, pi, 1 - 1e-9).item() == pytest.approx(0.7, abs=1e-7)
    assert scaled_alpha_divergence(p, pi, 1e-9).item() == pytest.approx(kl(p, pi).item(), rel=1e-6)
    assert math.isinf(alpha_divergence(p, pi, 1.0).item())  # reverse KL is infinite: π has rejected mass


# ====================================================================== α-DPG expected gradient

A_PROBS = torch.tensor([0.30, 0.05, 0.25, 0.10, 0.20, 0.10], dtype=DT)
VERDICT = torch.tensor([1.0, 1.0, 0.0, 1.0, 0.0, 0.0], dtype=DT)
THETA0 = torch.tensor([0.2, -0.3, 0.5, 0.0, -0.1, 0.3], dtype=DT)
Z_TRUE = float((A_PROBS * VERDICT).sum())
P_TARGET = A_PROBS * VERDICT / Z_TRUE


def categorical_batch(theta, k, n_groups, seed, with_log_z=True, proposal=None):
    """n_groups prompts (all the same categorical problem), k samples each from `proposal`
    (default: on-policy, q = π_θ), T = 1."""
    g = torch.Generator().manual_seed(seed)
    q = torch.softmax(theta.detach(), 0) if proposal is None else proposal
    y = torch.multinomial(q.expand(n_groups, -1).contiguous(), k, replacement=True, generator=g).reshape(-1)
    logpi = torch.log_softmax(theta, 0)
    pol = logpi[y].unsqueeze(1)
    old = pol.detach() if proposal is None else torch.log(proposal)[y].unsqueeze(1)
    batch = ObjectiveBatch(policy_logp=pol, old_logp=old, ref_logp=torch.log(A_PROBS)[y].unsqueeze(1),
                           mask=torch.ones(y.numel(), 1, dtype=DT), reward=VERDICT[y],
                           group=torch.arange(n_groups).repeat_interleave(k),
                           log_z=torch.full((n_groups,), math.log(Z_TRUE), dtype=DT) if with_log_z else None)
    return batch, pol, y


def mc_gradient(name, c, k, n_groups, seed, proposal=None):
    """Monte-Carlo mean gradient of the loss wrt the logits, and its standard error (per component)."""
    theta = THETA0.clone().requires_grad_()
    batch, pol, y = categorical_batch(theta, k, n_groups, seed, proposal=proposal)
    loss, _ = compute_loss(name, batch, c)
    g_theta, g_pol = torch.autograd.grad(loss, [theta, pol])
    pi = torch.softmax(THETA0, 0)
    per_sample = g_pol * (torch.nn.functional.one_hot(y, 6).to(DT) - pi)  # dL/dℓ_i · ∇_θ log π(y_i)
    per_group = torch.zeros(n_groups, 6, dtype=DT).index_add_(0, batch.group, per_sample) * n_groups
    assert torch.allclose(per_group.mean(0), g_theta, atol=1e-10)
    return g_theta, per_group.std(0) / math.sqrt(n_groups)


def exact_scaled_gradient(alpha):
    theta = THETA0.clone().requires_grad_()
    (g,) = torch.autograd.grad(scaled_alpha_divergence(P_TARGET, torch.softmax(theta, 0), alpha), theta)
    return g


@pytest.mark.parametrize("alpha", [0.0, 0.25, 0.5, 0.9, 0.99, 1.0])
@pytest.mark.parametrize("base", ["none", "leave_one_out"])
def test_alpha_dpg_expected_gradient_matches_closed_form(alpha, base):
    """With the true Z (z_estimate) and on-policy samples, E[∇loss] = (1−α)∇D_α(p, π_θ) = ∇F_α."""
    c = cfg(alpha=alpha, alpha_dpg_norm="z_estimate", alpha_dpg_baseline=base, z_source="log_z")
    mean, se = mc_gradient("alpha_dpg", c, k=4, n_groups=12000, seed=11)
    exact = exact_scaled_gradient(alpha)
    assert torch.all((mean - exact).abs() <= 4 * se + 1e-9), (mean, exact, se)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("base", ["none", "mean", "leave_one_out"])
def test_alpha_dpg_expected_gradient_off_policy(alpha, base):
    """Samples from the base model (q = a, offline): the importance weights and the ratio-weighted
    baseline ρ_i·β_i keep E[∇loss] = (1−α)∇D_α for baselines none and leave_one_out. The mean
    baseline contains the sample's own weight, an O(1/k) bias: checked at k = 64 with a 2 % margin."""
    k = 64 if base == "mean" else 4
    c = cfg(alpha=alpha, alpha_dpg_norm="z_estimate", alpha_dpg_baseline=base, z_source="log_z")
    mean, se = mc_gradient("alpha_dpg", c, k=k, n_groups=48000 // k, seed=31, proposal=A_PROBS)
    exact = exact_scaled_gradient(alpha)
    tol = 4 * se + (0.02 * exact.abs().max() if base == "mean" else 1e-9)
    assert torch.all((mean - exact).abs() <= tol), (mean, exact, se)


def _exact_self_normalised_expectation(alpha: float, k: int) -> np.ndarray:
    """E over k on-policy samples of the self-normalised (baseline none) group gradient wrt logits,
    by enumerating count vectors: g(n) = π − (n∘w)/Σ n∘w, w ∝ p^(1−α) π^(α−1) (0 if no accepted)."""
    pi = torch.softmax(THETA0, 0).numpy()
    p = P_TARGET.numpy()
    w = np.where(p > 0, p ** (1 - alpha) * pi ** (alpha - 1), 0.0)
    combos = np.array(list(combinations_with_replacement(range(6), k)))
    counts = (combos[:, :, None] == np.arange(6)).sum(1)
    logpmf = math.lgamma(k + 1) - np.vectorize(math.lgamma)(counts + 1).sum(1) + counts @ np.log(pi)
    nw = counts * w
    s = nw.sum(1, keepdims=True)
    g = np.where(s > 0, pi - nw / np.where(s > 0, s, 1), 0.0)
    return (np.exp(logpmf)[:, None] * g).sum(0)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 0.9])
def test_self_normalised_bias_vanishes_as_k_grows(alpha):
    """Self-normalisation is a ratio estimator: its finite-k expectation is biased, O(1/k), toward
    the limit (1−α)∇D_α / S_α, S_α = Σ p^(1−α)π^α. Our loss matches the exact finite-k expectation."""
    pi = torch.softmax(THETA0, 0)
    s_alpha = float((P_TARGET ** (1 - alpha) * pi ** alpha).sum())
    limit = exact_scaled_gradient(alpha).numpy() / s_alpha
    bias = {k: np.abs(_exact_self_normalised_expectation(alpha, k) - limit).max() for k in (2, 4, 16)}
    assert bias[2] > bias[4] > bias[16]
    assert bias[16] < 0.25 * bias[4]  # at least as fast as 1/k
    assert 16 * bias[16] < np.abs(limit).max() * 2  # k·bias stays bounded
    c = cfg(alpha=alpha, alpha_dpg_norm="self_normalised", alpha_dpg_baseline="none")
    mean, se = mc_gradient("alpha_dpg", c, k=4, n_groups=12000, seed=5)
    expected = torch.as_tensor(_exact_self_normalised_expectation(alpha, 4))
    assert torch.all((mean - expected).abs() <= 4 * se + 1e-9), (mean, expected, se)


def test_alpha_endpoints_are_continuous_and_finite():
    for a0, a1 in [(0.0, 1e-9), (1.0, 1 - 1e-9)]:
        outs = []
        for a in (a0, a1):
            for norm in ("self_normalised", "z_estimate", "batch"):
                b, pol = make_batch(seed=3, log_z=torch.tensor([-1.0, -0.5, -2.0], dtype=DT))
                loss, diag = compute_loss("alpha_dpg", b, cfg(alpha=a, alpha_dpg_norm=norm))
                gr = grad_of(loss, pol)
                assert torch.isfinite(loss) and torch.all(torch.isfinite(gr))
                assert all(math.isfinite(v) for v in diag.values())
                outs.append(gr)
        for x, y in zip(outs[:3], outs[3:]):
            assert torch.allclose(x, y, atol=1e-6)


def test_alpha_one_weights_are_indicator_times_ratio():
    b, _ = make_batch(seed=4)
    pol, old, ref = (seq_logp(x.detach(), b.mask) for x in (b.policy_logp, b.old_logp, b.ref_logp))
    acc = b.reward > 0.5
    lw = log_importance_weights(pol, old, ref, acc, torch.zeros_like(ref), 1.0)
    assert torch.allclose(torch.exp(lw), acc.to(DT) * torch.exp(pol - old))
    lw0 = log_importance_weights(pol, old, ref, acc, torch.zeros_like(ref), 0.0)
    assert torch.allclose(torch.exp(lw0), acc.to(DT) * torch.exp(ref - old))


# ====================================================================== α-DPG limits and options

def test_alpha0_offline_equals_rsft():
    """α = 0 on base samples (q = a): α-DPG is the mean NLL of the accepted samples."""
    reward = torch.tensor([1, 0, 1, 1, 0, 0, 1, 0, 0, 1, 1, 1.0])
    b, pol = make_batch(reward=reward)
    b.old_logp = b.ref_logp.clone()  # offline: the proposal is the base model
    c = cfg(alpha=0.0, alpha_dpg_norm="self_normalised", alpha_dpg_baseline="none", alpha_dpg_prompt_mean="solved",
            rsft_norm="prompt")
    l_dpg, _ = compute_loss("alpha_dpg", b, c)
    l_sft, _ = compute_loss("rsft", b, c)
    assert l_dpg.item() == pytest.approx(l_sft.item(), rel=1e-12)
    assert torch.allclose(grad_of(l_dpg, pol), grad_of(l_sft, pol), atol=1e-12)
    # every prompt solved here, so 'all' is the same; with z_estimate and the group IS estimate too
    for c2 in (cfg(alpha=0.0, alpha_dpg_baseline="none", rsft_norm="prompt"),
               cfg(alpha=0.0, alpha_dpg_baseline="none", rsft_norm="prompt", alpha_dpg_norm="z_estimate",
                   z_source="group_is")):
        assert compute_loss("alpha_dpg", b, c2)[0].item() == pytest.approx(l_sft.item(), rel=1e-12)
    # rsft_norm = sample differs unless prompts have equal numbers of accepted samples
    manual = -seq_logp(pol, b.mask)[reward > 0.5].mean()
    assert compute_loss("rsft", b, cfg(rsft_norm="sample"))[0].item() == pytest.approx(manual.item())


def test_self_normalised_ignores_log_z_and_z_estimate_scales_with_it():
    b, _ = make_batch(seed=7, log_z=torch.tensor([-1.0, -0.3, -2.0], dtype=DT))
    b2, _ = make_batch(seed=7, log_z=torch.tensor([-3.0, 0.0, -1.0], dtype=DT))
    c = cfg(alpha=0.3, alpha_dpg_norm="self_normalised")
    assert compute_loss("alpha_dpg", b, c)[0].item() == pytest.approx(compute_loss("alpha_dpg", b2, c)[0].item())
    # z_estimate, baseline none: shifting log Z by δ scales every weight by exp(−(1−α)δ)
    c = cfg(alpha=0.3, alpha_dpg_norm="z_estimate", alpha_dpg_baseline="none", z_source="log_z")
    b3, _ = make_batch(seed=7, log_z=torch.tensor([-1.0, -0.3, -2.0], dtype=DT) + 0.5)
    ratio = compute_loss("alpha_dpg", b3, c)[0] / compute_loss("alpha_dpg", b, c)[0]
    assert ratio.item() == pytest.approx(math.exp(-0.7 * 0.5), rel=1e-10)


def _advantages(b, c):
    inv, n = group_index(b.group)
    return alpha_dpg_advantages(b, c, inv, n)[0], inv


def test_weight_normalisations_and_baselines():
    b, _ = make_batch(seed=8, on_policy=True, log_z=torch.tensor([-1.0, -0.3, -2.0], dtype=DT))
    acc = b.reward > 0.5
    w_self, inv = _advantages(b, cfg(alpha_dpg_norm="self_normalised", alpha_dpg_baseline="none"))
    for gi in range(3):  # mean weight 1 within every solved prompt, 0 on rejected
        sel = inv == gi
        if bool(acc[sel].any()):
            assert w_self[sel].mean().item() == pytest.approx(1.0)
    assert torch.all(w_self[~acc] == 0)
    w_batch, _ = _advantages(b, cfg(alpha_dpg_norm="batch", alpha_dpg_baseline="none"))
    assert w_batch.mean().item() == pytest.approx(1.0)
    a_mean, _ = _advantages(b, cfg(alpha_dpg_norm="self_normalised", alpha_dpg_baseline="mean"))
    for gi in range(3):  # on-policy (ρ = 1) the mean baseline centres each prompt
        assert a_mean[inv == gi].sum().item() == pytest.approx(0.0, abs=1e-12)
    a_loo, _ = _advantages(b, cfg(alpha_dpg_norm="self_normalised", alpha_dpg_baseline="leave_one_out"))
    assert torch.allclose(a_loo, w_self - loo_mean(w_self, inv, 3))
    a_clip, _ = _advantages(b, cfg(alpha_dpg_norm="self_normalised", alpha_dpg_baseline="none",
                                   alpha_dpg_clip_max=1.2))
    assert a_clip.max().item() <= 1.2 + 1e-12 and torch.allclose(a_clip, w_self.clamp(max=1.2))
    with pytest.raises(ValueError):
        _advantages(b, cfg(alpha_dpg_norm="nope"))
    with pytest.raises(ValueError):
        _advantages(b, cfg(alpha_dpg_baseline="nope"))


def test_off_policy_baseline_uses_the_ratio():
    """A_i = w̃_i − ρ_i β_i with ρ = π_θ/q, so E_q[ρβ∇log π] = 0 off-policy too."""
    b, _ = make_batch(seed=9)
    w, inv = _advantages(b, cfg(alpha_dpg_baseline="none"))
    a, _ = _advantages(b, cfg(alpha_dpg_baseline="leave_one_out"))
    rho = torch.exp(seq_logp(b.policy_logp.detach(), b.mask) - seq_logp(b.old_logp, b.mask))
    assert torch.allclose(a, w - rho * loo_mean(w, inv, 3))


def test_length_norm_and_prompt_selection():
    reward = torch.tensor([1, 0, 1, 0, 0, 0, 0, 0, 1, 1, 0, 1.0])  # prompt 1 unsolved
    b, pol = make_batch(reward=reward, seed=10)
    c = cfg(alpha_dpg_baseline="none")
    inv, _ = group_index(b.group)
    adv = alpha_dpg_advantages(b, c, inv, 3)[0]
    ell_mean = seq_logp(pol, b.mask, length_norm=True)
    per_group = torch.stack([(adv * ell_mean)[inv == g].mean() for g in range(3)])
    assert compute_loss("alpha_dpg", b, cfg(alpha_dpg_baseline="none", length_norm=True))[0].item() == \
        pytest.approx(-per_group.mean().item())
    l_all = compute_loss("alpha_dpg", b, cfg(alpha_dpg_baseline="none", alpha_dpg_prompt_mean="all"))[0]
    l_solved = compute_loss("alpha_dpg", b, cfg(alpha_dpg_baseline="none", alpha_dpg_prompt_mean="solved"))[0]
    assert l_all.item() == pytest.approx(l_solved.item() * 2 / 3)


def test_z_source_options():
    log_z = torch.tensor([-1.0, float("-inf"), -2.0], dtype=DT)
    b, pol = make_batch(seed=12, log_z=log_z, reward=torch.ones(12))
    loss, diag = compute_loss("alpha_dpg", b, cfg(alpha_dpg_norm="z_estimate", z_source="auto"))
    assert torch.isfinite(loss) and diag["z_fallback_frac"] == pytest.approx(1 / 3)
    b_none, _ = make_batch(seed=12, reward=torch.ones(12))
    with pytest.raises(ValueError):
        compute_loss("alpha_dpg", b_none, cfg(alpha_dpg_norm="z_estimate", z_source="log_z"))
    l_is = compute_loss("alpha_dpg", b, cfg(alpha_dpg_norm="z_estimate", z_source="group_is"))[0]
    l_is2 = compute_loss("alpha_dpg", b_none, cfg(alpha_dpg_norm="z_estimate", z_source="auto"))[0]
    assert l_is.item() == pytest.approx(l_is2.item())


# ====================================================================== α-DPG paper preset

def _paper_reference(b, alpha, clip=10.0, norm_tokens=1024):
    """Independent re-implementation of naver/alpha-dpg's pseudo-reward, LOO and fcdpg loss."""
    old = seq_logp(b.old_logp, b.mask)
    ref = seq_logp(b.ref_logp, b.mask)
    acc = b.reward > 0.5
    r = torch.empty_like(old)
    for g in b.group.unique():
        sel = b.group == g
        z = min(1.0, float((acc[sel] * torch.exp(ref[sel] - old[sel])).mean()))
        for i in torch.nonzero(sel).flatten().tolist():
            if acc[i]:
                t = math.exp(old[i].item() - (ref[i].item() - math.log(z)))  # t = π_old / p
                f_prime = -math.expm1(math.log(t) * (alpha - 1))
                r[i] = -f_prime
            else:
                r[i] = -1.0
    r = r.clamp(max=clip)
    adv = torch.empty_like(r)
    for g in b.group.unique():
        idx = torch.nonzero(b.group == g).flatten()
        for i in idx:
            others = [j for j in idx.tolist() if j != i]
            adv[i] = r[i] - r[others].mean()
    ell = seq_logp(b.policy_logp, b.mask)
    return (-(adv * ell)).mean() / norm_tokens, r


@pytest.mark.parametrize("alpha", [0.0, 0.25, 0.5, 0.99])
def test_paper_preset_reproduces_the_authors_estimator(alpha):
    reward = torch.tensor([1, 0, 1, 1, 0, 0, 1, 0, 1, 1, 1, 1.0])
    b, pol = make_batch(reward=reward, seed=13)
    b.old_logp[0] -= 3.0  # one accepted proof very unlikely under π_old: pseudo-reward clipped at 10
    ref_loss, r = _paper_reference(b, alpha)
    loss, diag = compute_loss("alpha_dpg_paper", b, cfg(alpha=alpha))
    assert loss.item() == pytest.approx(ref_loss.item(), rel=1e-10)
    assert torch.allclose(grad_of(loss, pol), grad_of(ref_loss, pol), atol=1e-12)
    assert diag["frac_clipped"] > 0 or alpha > 0.9
    assert torch.all(r[reward == 0] == -1.0)
    same = compute_loss("alpha_dpg", b, cfg(alpha=alpha, alpha_dpg_preset="paper"))[0]
    assert same.item() == pytest.approx(loss.item())


def test_paper_preset_alpha_limits():
    """α = 0: pseudo-reward p/π_old − 1 (their f'(t) = 1 − 1/t). α = 1: the exact limit b − 1
    (NOT their reverse-KL special case, which is −∞ on rejected proofs)."""
    reward = torch.tensor([1, 0, 1, 1, 0, 0, 1, 0, 1, 1, 1, 1.0])
    b, _ = make_batch(reward=reward, seed=14)
    from pipeline.objectives.alpha_dpg import paper_pseudo_rewards
    inv, n = group_index(b.group)
    r0, _ = paper_pseudo_rewards(b, cfg(alpha=0.0, alpha_dpg_paper_clip=None), inv, n)
    old, ref = seq_logp(b.old_logp, b.mask), seq_logp(b.ref_logp, b.mask)
    from pipeline.objectives.alpha_dpg import group_is_log_z
    log_z = group_is_log_z(ref, old, reward > 0.5, inv, n).clamp(max=0)[inv]
    p_over_pi = torch.exp(ref - log_z - old)
    assert torch.allclose(r0[reward > 0.5], (p_over_pi - 1)[reward > 0.5])
    r1, _ = paper_pseudo_rewards(b, cfg(alpha=1.0), inv, n)
    assert torch.equal(r1, reward - 1)
    loss, _ = compute_loss("alpha_dpg_paper", b, cfg(alpha=1.0))
    assert torch.isfinite(loss)


def test_paper_preset_matches_z_estimate_up_to_the_constant():
    """On-policy, Ẑ ≤ 1, no clipping: paper = z_estimate(group IS) + leave-one-out, divided by 1024."""
    b, pol = make_batch(seed=15, on_policy=True, reward=torch.tensor([1, 0, 1, 1, 0, 0, 1, 0, 1, 1, 1, 1.0]))
    b.ref_logp = b.old_logp - 0.5  # a < q on every sample, so Ẑ < 1 and the cap is inactive
    g_paper = grad_of(compute_loss("alpha_dpg_paper", b, cfg(alpha=0.25, alpha_dpg_paper_clip=None))[0], pol)
    c = cfg(alpha=0.25, alpha_dpg_norm="z_estimate", z_source="group_is", alpha_dpg_baseline="leave_one_out")
    g_z = grad_of(compute_loss("alpha_dpg", b, c)[0], pol)
    assert torch.allclose(g_paper * 1024, g_z, atol=1e-12)


# ====================================================================== GRPO

def test_grpo_advantages_hand_computed():
    reward = torch.tensor([1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0.0])
    group = torch.tensor([0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 4])
    adv = grpo_advantages(reward, group, eps=0.0)
    s = 1 / math.sqrt(2)  # group 1: mean 2/3, population std √2/3
    expected = [1, -1, -1, 1, s, s, -2 * s, 0, 0, 0, 0, 0, 0]
    assert torch.allclose(adv, torch.tensor(expected, dtype=DT), atol=1e-12)
    # sample std (N−1): group 0 std = √(1/3)
    adv_u = grpo_advantages(reward, group, unbiased_std=True, eps=0.0)
    assert adv_u[0].item() == pytest.approx(0.5 / math.sqrt(1 / 3))
    assert adv_u[-1].item() == 0.0  # a group of one sample
    # Dr. GRPO: centring only
    adv_c = grpo_advantages(reward, group, scale_by_std=False)
    assert torch.allclose(adv_c[:4], torch.tensor([0.5, -0.5, -0.5, 0.5], dtype=DT))


def test_clipped_ratio_outside_the_trust_region():
    eps = 0.2
    for a, ratio, loss_exp, grad_exp in [(1.0, 1.5, -1.2, 0.0),   # clipped above: no gradient
                                         (1.0, 0.5, -0.5, -0.5),  # below 1−ε with A > 0: unclipped branch
                                         (-1.0, 1.5, 1.5, 1.5),   # A < 0, ratio high: unclipped (pessimistic)
                                         (-1.0, 0.5, 0.8, 0.0),   # A < 0, ratio low: clipped
                                         (1.0, 1.1, -1.1, -1.1)]:  # inside the region
        lp = torch.tensor([[math.log(ratio)]], dtype=DT, requires_grad=True)
        loss, clipped, _ = clipped_token_loss(lp, torch.zeros(1, 1, dtype=DT), torch.tensor([a], dtype=DT),
                                              torch.ones(1, 1, dtype=DT), eps, eps)
        assert loss.item() == pytest.approx(loss_exp)
        assert grad_of(loss.sum(), lp).item() == pytest.approx(grad_exp)
    # asymmetric clip (clip-higher): ratio 1.25 is inside [0.8, 1.28]
    lp = torch.tensor([[math.log(1.25)]], dtype=DT)
    loss, _, _ = clipped_token_loss(lp, torch.zeros(1, 1, dtype=DT), torch.tensor([1.0], dtype=DT),
                                    torch.ones(1, 1, dtype=DT), 0.2, 0.28)
    assert loss.item() == pytest.approx(-1.25)


def test_k3_estimator():
    lp = torch.log(torch.tensor([0.1, 0.5, 0.9], dtype=DT))
    assert torch.all(k3(lp, lp) == 0)
    other = torch.log(torch.tensor([0.2, 0.4, 0.5], dtype=DT))
    assert torch.all(k3(lp, other) > 0)
    # unbiased for KL(π‖π_ref) in expectation under π: exact on a categorical
    pi = torch.tensor([0.2, 0.3, 0.5], dtype=DT)
    ref = torch.tensor([0.4, 0.4, 0.2], dtype=DT)
    assert (pi * k3(pi.log(), ref.log())).sum().item() == pytest.approx(kl(pi, ref).item())


def test_grpo_kl_term():
    b, pol = make_batch(seed=16, policy_eq_ref=True)
    l_kl, d = compute_loss("grpo", b, cfg(grpo_kl_coef=0.5))
    l_no, _ = compute_loss("grpo_no_kl", b, cfg(grpo_kl_coef=0.5))
    assert l_kl.item() == pytest.approx(l_no.item()) and d["kl_k3_token_mean"] == 0.0
    assert torch.allclose(grad_of(l_kl, pol), grad_of(l_no, pol))
    b2, pol2 = make_batch(seed=16)
    l_kl2, d2 = compute_loss("grpo", b2, cfg(grpo_kl_coef=0.5))
    l_no2, _ = compute_loss("grpo_no_kl", b2, cfg(grpo_kl_coef=0.5))
    assert d2["kl_k3_token_mean"] > 0 and l_kl2.item() > l_no2.item()


def test_grpo_loss_aggregations():
    b, pol = make_batch(seed=17, on_policy=True)
    adv = grpo_advantages(b.reward, b.group)
    lens = b.mask.sum(-1)
    seq_sum = -(adv * lens)  # ratio 1 on-policy: per-token loss −A
    expected = {"token_mean": seq_sum.sum() / lens.sum(), "seq_mean_token_mean": (seq_sum / lens).mean(),
                "seq_mean_token_sum": seq_sum.mean(), "seq_mean_token_sum_norm": seq_sum.mean() / 1024}
    for mode, val in expected.items():
        loss, _ = compute_loss("grpo_no_kl", b, cfg(grpo_loss_agg=mode))
        assert loss.item() == pytest.approx(val.item(), abs=1e-12)
    with pytest.raises(ValueError):
        aggregate(torch.ones(2, 2), torch.ones(2, 2), "nope")


# ====================================================================== DS-GRPO

def test_ds_grpo_worked_example():
    reward = torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=DT)
    adv = grpo_advantages(reward, torch.zeros(4, dtype=torch.long), eps=0.0)
    assert torch.allclose(adv, torch.tensor([1.0, 1.0, -1.0, -1.0], dtype=DT))
    ds = ds_advantages(adv, reward, torch.tensor([-10.0, -20.0, -10.0, -20.0], dtype=DT), 0.01, 0.01)
    assert torch.allclose(ds, torch.tensor([1.1, 1.2, -1.1, -1.2], dtype=DT))
    # the same through the objective: one token per sample carries the sequence log-prob
    pol = torch.zeros(4, 1, dtype=DT, requires_grad=True)
    b = ObjectiveBatch(policy_logp=pol, old_logp=torch.tensor([[-10.0], [-20.0], [-10.0], [-20.0]], dtype=DT),
                       ref_logp=torch.zeros(4, 1, dtype=DT), mask=torch.ones(4, 1, dtype=DT), reward=reward,
                       group=torch.zeros(4, dtype=torch.long))
    g = grad_of(compute_loss("ds_grpo", b, cfg(grpo_kl_coef=0.0, grpo_eps=0.0, grpo_clip_eps=1e9))[0], pol)
    ratio = torch.exp(pol.detach() - b.old_logp).squeeze(1)  # d(−ρA)/dlogp = −ρA, mean over 4 sequences
    assert torch.allclose(g.squeeze(1), -ratio * ds / 4)


def test_ds_grpo_gamma_zero_is_grpo():
    b, pol = make_batch(seed=18)
    c = cfg(ds_gamma_p=0.0, ds_gamma_n=0.0)
    l_ds, l_g = compute_loss("ds_grpo", b, c)[0], compute_loss("grpo", b, c)[0]
    assert l_ds.item() == pytest.approx(l_g.item())
    assert torch.allclose(grad_of(l_ds, pol), grad_of(l_g, pol))


# ====================================================================== ECO

def test_eco_variance_penalty_closed_form():
    ell = torch.tensor([-1.0, -3.0], dtype=DT, requires_grad=True)
    inv = torch.zeros(2, dtype=torch.long)
    pen, n = variance_penalty(ell, torch.tensor([True, True]), inv, 1)
    assert pen.item() == pytest.approx(1.0) and n == 1
    assert torch.allclose(grad_of(pen, ell), torch.tensor([1.0, -1.0], dtype=DT))
    eq = torch.tensor([-2.0, -2.0, -5.0], dtype=DT, requires_grad=True)  # rejected third sample is ignored
    pen_eq, _ = variance_penalty(eq, torch.tensor([True, True, False]), torch.zeros(3, dtype=torch.long), 1)
    assert pen_eq.item() == 0.0 and torch.all(grad_of(pen_eq, eq) == 0)


def test_eco_objective():
    pol = torch.tensor([[-1.0], [-3.0], [-7.0]], dtype=DT, requires_grad=True)
    b = ObjectiveBatch(policy_logp=pol, old_logp=pol.detach(), ref_logp=pol.detach(),
                       mask=torch.ones(3, 1, dtype=DT), reward=torch.tensor([1.0, 1.0, 0.0], dtype=DT),
                       group=torch.zeros(3, dtype=torch.long))
    loss, d = compute_loss("eco", b, cfg(eco_lambda=0.5))
    assert loss.item() == pytest.approx(2.0 + 0.5 * 1.0) and d["logp_variance"] == pytest.approx(1.0)
    # NLL gradient −1/2 each, penalty gradient 0.5·[+1, −1]
    assert torch.allclose(grad_of(loss, pol).squeeze(1), torch.tensor([0.0, -1.0, 0.0], dtype=DT))
    b2, pol2 = make_batch(seed=19)
    l0, l_sft = compute_loss("eco", b2, cfg(eco_lambda=0.0))[0], compute_loss("rsft", b2, cfg())[0]
    assert l0.item() == pytest.approx(l_sft.item())
    assert torch.allclose(grad_of(l0, pol2), grad_of(l_sft, pol2))


# ====================================================================== Rewarding the Unlikely

def test_unlikeliness_rewards():
    reward = torch.tensor([1.0, 1.0, 1.0, 0.0], dtype=DT)
    group = torch.zeros(4, dtype=torch.long)
    score = torch.tensor([-5.0, -10.0, -2.0, -1.0], dtype=DT)  # ranks (0 = most likely): 2, 3, 1, 0
    r = unlikeliness_rewards(reward, group, score, 0.25)
    assert torch.allclose(r, torch.tensor([1 - 0.25 * 2 / 4, 1 - 0.25 * 1 / 4, 1 - 0.25 * 3 / 4, 0.0], dtype=DT))
    correct = reward > 0
    assert r[correct].argmin().item() == score[correct].argmax().item()  # most likely correct: largest cut
    assert r[3].item() == 0.0  # incorrect samples stay at 0
    r_code = unlikeliness_rewards(reward, group, score, 0.25, formula="code")
    assert torch.allclose(r_code, r + 0.25 / 4 * reward)  # the authors' code penalises β/G less
    # groups are ranked separately
    r2 = unlikeliness_rewards(torch.ones(4, dtype=DT), torch.tensor([0, 0, 1, 1]),
                              torch.tensor([-1.0, -2.0, -3.0, -1.0], dtype=DT), 0.5)
    assert torch.allclose(r2, torch.tensor([0.5, 0.75, 0.75, 0.5], dtype=DT))


def test_unlikeliness_beta_zero_is_grpo():
    b, pol = make_batch(seed=20)
    c = cfg(unlikely_beta_rank=0.0)
    l_u, l_g = compute_loss("unlikeliness", b, c)[0], compute_loss("grpo", b, c)[0]
    assert l_u.item() == pytest.approx(l_g.item())
    assert torch.allclose(grad_of(l_u, pol), grad_of(l_g, pol))
    assert torch.isfinite(compute_loss("unlikeliness", b, cfg(unlikely_rank_by="token_mean"))[0])


# ====================================================================== MARA

def test_mara_rewards_equalise_target_weights():
    reward = torch.tensor([1.0, 1.0, 0.0, 1.0], dtype=DT)
    seq_ref = torch.tensor([-3.0, -1.0, -0.5, -2.0], dtype=DT)
    r = mara_rewards(reward, torch.zeros(4, dtype=torch.long), seq_ref, beta=0.1, tau=1.0)
    assert torch.allclose(r, torch.tensor([1.2, 1.0, 0.0, 1.1], dtype=DT))
    target = r / 0.1 + seq_ref  # log π_ref(y) + r(y)/β: equal on every accepted sample
    assert torch.allclose(target[reward > 0], target[1].expand(3))


# ====================================================================== DPH-RL

def test_dph_generators():
    log_u = torch.tensor([-3.0, -0.5, 0.0, 0.4, 2.0], dtype=DT)
    for f in (forward_kl_generator, js_generator):
        v = f(log_u)
        assert v[2].item() == 0.0
        assert torch.all(v[[0, 1, 3, 4]] > 0)
    u = torch.exp(log_u)
    assert torch.allclose(forward_kl_generator(log_u), u - log_u - 1)
    assert torch.allclose(js_generator(log_u), u * log_u - (u + 1) * torch.log((u + 1) / 2))


def test_dph_routes_perfect_prompts_to_the_divergence():
    # group 0: reference rows, all pass (perfect prompt) -> divergence term
    # group 1: policy rows with mixed rewards           -> RL term
    # group 2: reference rows, not all pass             -> dropped
    reward = torch.tensor([1, 1, 1, 1, 1, 0, 1, 0, 1, 0, 1, 1.0])
    is_ref = torch.tensor([1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1.0])
    b, pol = make_batch(reward=reward, is_ref=is_ref, seed=21)
    for div in ("forward_kl", "js"):
        c = cfg(dph_divergence=div, dph_eta=0.2)
        loss, d = compute_loss("dph_rl", b, c)
        g = grad_of(loss, pol)
        assert torch.all(g[8:] == 0) and d["n_divergence_rows"] == 4 and d["n_ref_rows_dropped"] == 4
        gen = forward_kl_generator if div == "forward_kl" else js_generator
        div_manual = aggregate(gen(pol[:4] - b.ref_logp[:4]), b.mask[:4], c.grpo_loss_agg)
        assert torch.allclose(g[:4], 0.2 * grad_of(div_manual, pol)[:4])
        sub = ObjectiveBatch(policy_logp=pol[4:8], old_logp=b.old_logp[4:8], ref_logp=b.ref_logp[4:8],
                             mask=b.mask[4:8], reward=reward[4:8], group=b.group[4:8])
        rl_manual = compute_loss("grpo_no_kl", sub, c)[0]
        assert torch.allclose(g[4:8], grad_of(rl_manual, pol)[4:8])
    # without the all-solved requirement group 2's reference rows get the divergence term too
    g_all = grad_of(compute_loss("dph_rl", b, cfg(dph_require_all_solved=False))[0], pol)
    assert torch.any(g_all[8:] != 0)


# ====================================================================== f-DPG

@pytest.mark.parametrize("kind", ["js", "kl", "tv"])
def test_fdpg_expected_gradient(kind):
    pi = torch.softmax(THETA0, 0)
    theta = THETA0.clone().requires_grad_()
    pt = torch.softmax(theta, 0)
    exact_div = {"js": lambda: js_divergence_x2(pt, P_TARGET), "kl": lambda: kl(P_TARGET, pt),
                 "tv": lambda: 0.5 * (pt - P_TARGET).abs().sum()}[kind]()
    (exact,) = torch.autograd.grad(exact_div, theta)
    assert not torch.allclose(pi, P_TARGET)
    c = cfg(fdpg_divergence=kind, fdpg_baseline="leave_one_out", z_source="log_z")
    mean, se = mc_gradient("fdpg", c, k=4, n_groups=12000, seed=23)
    assert torch.all((mean - exact).abs() <= 4 * se + 1e-9), (mean, exact, se)


def test_fdpg_kl_equals_alpha_dpg_at_zero_on_policy():
    b, pol = make_batch(seed=24, on_policy=True, log_z=torch.tensor([-1.0, -0.3, -2.0], dtype=DT))
    l_f = compute_loss("fdpg", b, cfg(fdpg_divergence="kl", z_source="log_z"))[0]
    l_a = compute_loss("alpha_dpg", b, cfg(alpha=0.0, alpha_dpg_norm="z_estimate", z_source="log_z"))[0]
    assert torch.allclose(grad_of(l_f, pol), grad_of(l_a, pol), atol=1e-12)


# ====================================================================== every objective

@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_every_objective_finite_and_differentiable(name):
    is_ref = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0.0])
    reward = torch.tensor([1, 0, 1, 0, 1, 1, 1, 1, 1, 1, 0, 0.0])
    b, pol = make_batch(seed=25, reward=reward, is_ref=is_ref, log_z=torch.tensor([-1.0, -0.2, -0.8], dtype=DT))
    loss, diag = compute_loss(name, b, cfg())
    assert loss.dim() == 0 and torch.isfinite(loss)
    g = grad_of(loss, pol)
    assert torch.all(torch.isfinite(g)) and torch.any(g != 0)
    assert all(isinstance(v, float) and math.isfinite(v) for v in diag.values())
    for key in ("acceptance", "frac_prompts_no_accepted", "kl_k1", "kl_k3"):
        assert key in diag
    # float32 works too
    b32, pol32 = make_batch(seed=25, reward=reward, is_ref=is_ref, dtype=torch.float32)
    l32, _ = compute_loss(name, b32, cfg())
    assert torch.isfinite(l32) and l32.dtype == torch.float32


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_zero_gradient_without_signal(name):
    """All rewards 0 and π_θ = π_ref = π_old: no objective moves the policy. (DS-GRPO's Eq. 6 also
    smooths incorrect samples, A_i = γ_n log π_old(y_i), so for it "no signal" needs γ_n = 0.)"""
    b, pol = make_batch(seed=26, reward=torch.zeros(12), policy_eq_ref=True,
                        is_ref=torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0.0]))
    loss, _ = compute_loss(name, b, cfg(ds_gamma_n=0.0))
    assert torch.isfinite(loss)
    assert torch.all(grad_of(loss, pol).abs() < 1e-12)
    if name == "ds_grpo":
        assert torch.any(grad_of(compute_loss(name, b, cfg(ds_gamma_n=0.01))[0], pol) != 0)


@pytest.mark.parametrize("name", ["alpha_dpg", "alpha_dpg_paper", "rsft", "eco", "fdpg", "grpo_no_kl"])
@pytest.mark.parametrize("norm", ["self_normalised", "z_estimate", "batch"])
def test_distribution_matching_zero_gradient_when_nothing_accepted(name, norm):
    """All rewards 0: distribution matching has no target (policy ≠ reference ≠ proposal here)."""
    b, pol = make_batch(seed=27, reward=torch.zeros(12), log_z=torch.tensor([-1.0, -2.0, -3.0], dtype=DT))
    for base in ("none", "mean", "leave_one_out"):
        loss, _ = compute_loss(name, b, cfg(alpha_dpg_norm=norm, alpha_dpg_baseline=base))
        assert torch.isfinite(loss) and torch.all(grad_of(loss, pol) == 0)


def test_registry_and_config():
    with pytest.raises(KeyError):
        compute_loss("nope", make_batch()[0], cfg())
    allowed = {"str", "int", "float", "bool", "Optional[float]", "Optional[int]", "Optional[str]"}
    for f in fields(ObjectiveConfig):
        assert str(f.type) in allowed, (f.name, f.type)
    omegaconf = pytest.importorskip("omegaconf")
    node = omegaconf.OmegaConf.structured(ObjectiveConfig)
    loss, _ = compute_loss("alpha_dpg", make_batch()[0], node)  # works on an OmegaConf node too
    assert torch.isfinite(loss)
    with pytest.raises(ValueError):
        ObjectiveBatch(policy_logp=torch.zeros(2, 3), old_logp=torch.zeros(2, 3), ref_logp=torch.zeros(2, 2),
                       mask=torch.ones(2, 3), reward=torch.zeros(2), group=torch.zeros(2, dtype=torch.long))
