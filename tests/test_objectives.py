"""Closed-form, limit-case and expected-gradient tests of pipeline.objectives (docs/objectives.md).

Values are checked against computations written independently of the implementation: closed forms,
plain-Python loops over the formulas, exact enumeration of small categorical problems, and a
line-by-line re-implementation of the α-DPG authors' update."""

from __future__ import annotations

import math
from dataclasses import fields
from itertools import combinations_with_replacement

import numpy as np
import pytest
import torch

from pipeline.objectives import (REGISTRY, Aggregation, ObjectiveBatch, compute_loss, get_objective,
                                 register_objective)
from pipeline.objectives.alpha_dpg import (AlphaDPGOptions, AlphaDPGPaperOptions, alpha_divergence,
                                           alpha_dpg_advantages, log_importance_weights, scaled_alpha_divergence)
from pipeline.objectives.common import group_index, k3, seq_logp
from pipeline.objectives.dph_rl import DPHRLOptions, forward_kl_generator, js_generator
from pipeline.objectives.eco import ECOOptions
from pipeline.objectives.fdpg import FDPGOptions, js_divergence_x2
from pipeline.objectives.grpo import (DSGRPOOptions, GRPOOptions, MARAOptions, UnlikelinessOptions,
                                      clipped_token_loss, ds_advantages, grpo_advantages, mara_rewards,
                                      unlikeliness_rewards)
from pipeline.objectives.rsft import RSFTOptions

DT = torch.float64
SEQ = Aggregation("seq_mean_token_sum")  # loss = Σ_i s_i / N: the scale the expectation tests are written on


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


def seq_sums(b):
    """Plain per-row sums of the masked token log-probs, as Python floats: (π_θ, q, a)."""
    m = b.mask.tolist()
    row = lambda x: [sum(v for v, keep in zip(r, mr) if keep) for r, mr in zip(x.detach().tolist(), m)]  # noqa: E731
    return row(b.policy_logp), row(b.old_logp), row(b.ref_logp)


def groups_of(b) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for i, g in enumerate(b.group.tolist()):
        out.setdefault(g, []).append(i)
    return out


# ====================================================================== the α-divergence closed form

def _np_kl(p, q):
    return float(sum(pi * math.log(pi / qi) for pi, qi in zip(p, q) if pi > 0))


def test_alpha_divergence_limits():
    g = torch.Generator().manual_seed(1)
    p = torch.softmax(torch.randn(7, generator=g, dtype=DT), 0)
    pi = torch.softmax(torch.randn(7, generator=g, dtype=DT), 0)
    fwd, rev = _np_kl(p.tolist(), pi.tolist()), _np_kl(pi.tolist(), p.tolist())  # Σ p log(p/π), written out
    assert alpha_divergence(p, pi, 1e-6).item() == pytest.approx(fwd, rel=1e-5)
    assert alpha_divergence(p, pi, 1 - 1e-6).item() == pytest.approx(rev, rel=1e-5)
    half = alpha_divergence(p, pi, 0.5).item()
    hellinger2 = sum((math.sqrt(a) - math.sqrt(b)) ** 2 for a, b in zip(p.tolist(), pi.tolist()))
    assert half == pytest.approx(2 * hellinger2, rel=1e-10)
    # exact endpoints, against the written-out KL (not the module's own kl)
    assert alpha_divergence(p, pi, 0.0).item() == pytest.approx(fwd, rel=1e-12)
    assert alpha_divergence(p, pi, 1.0).item() == pytest.approx(rev, rel=1e-12)
    with pytest.raises(ValueError):
        alpha_divergence(p, pi, 1.5)


def test_scaled_alpha_divergence_with_rejected_outcomes():
    """F_α = (1−α)D_α is finite on [0, 1] even when p has zeros: F_1 = 1 − P_π(accepted)."""
    p = torch.tensor([0.5, 0.5, 0.0, 0.0], dtype=DT)
    pi = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=DT)
    assert scaled_alpha_divergence(p, pi, 1.0).item() == pytest.approx(0.7)
    assert scaled_alpha_divergence(p, pi, 1 - 1e-9).item() == pytest.approx(0.7, abs=1e-7)
    assert scaled_alpha_divergence(p, pi, 1e-9).item() == pytest.approx(_np_kl(p.tolist(), pi.tolist()), rel=1e-6)
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


def mc_gradient(name, opt, k, n_groups, seed, proposal=None):
    """Monte-Carlo mean gradient of the loss wrt the logits, and its standard error (per component)."""
    theta = THETA0.clone().requires_grad_()
    batch, pol, y = categorical_batch(theta, k, n_groups, seed, proposal=proposal)
    loss, _ = compute_loss(name, batch, opt, SEQ)
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
    opt = AlphaDPGOptions(alpha=alpha, norm="z_estimate", baseline=base, z_source="log_z")
    mean, se = mc_gradient("alpha_dpg", opt, k=4, n_groups=12000, seed=11)
    exact = exact_scaled_gradient(alpha)
    assert torch.all((mean - exact).abs() <= 4 * se + 1e-9), (mean, exact, se)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("base", ["none", "mean", "leave_one_out"])
def test_alpha_dpg_expected_gradient_off_policy(alpha, base):
    """Samples from the base model (q = a, offline): the importance weights and the ratio-weighted
    baseline ρ_i·β_i keep E[∇loss] = (1−α)∇D_α for baselines none and leave_one_out. The mean
    baseline contains the sample's own weight, an O(1/k) bias: checked at k = 64 with a 2 % margin."""
    k = 64 if base == "mean" else 4
    opt = AlphaDPGOptions(alpha=alpha, norm="z_estimate", baseline=base, z_source="log_z")
    mean, se = mc_gradient("alpha_dpg", opt, k=k, n_groups=48000 // k, seed=31, proposal=A_PROBS)
    exact = exact_scaled_gradient(alpha)
    tol = 4 * se + (0.02 * exact.abs().max() if base == "mean" else 1e-9)
    assert torch.all((mean - exact).abs() <= tol), (mean, exact, se)


def exact_self_normalised_expectation(alpha: float, k: int, base: str) -> np.ndarray:
    """E over k on-policy samples of one prompt's self-normalised gradient wrt the logits, by
    enumerating the multinomial count vectors n (written from docs/objectives.md, not from the code):
    w_y = p_y^(1−α) π_y^(α−1) (0 if rejected), S = Σ n_y w_y, w̃_y = k w_y / S, and
        none:          A_y = w̃_y
        leave_one_out: A_y = w̃_y − (k − w̃_y)/(k − 1) = k/(k−1)·(w̃_y − 1)
    (all A = 0 when S = 0), gradient −(1/k) Σ_y n_y A_y (e_y − π)."""
    pi = torch.softmax(THETA0, 0).numpy()
    p = P_TARGET.numpy()
    w = np.where(p > 0, p ** (1 - alpha) * pi ** (alpha - 1), 0.0)
    total = np.zeros(6)
    for combo in combinations_with_replacement(range(6), k):
        n = np.bincount(combo, minlength=6)
        prob = math.exp(math.lgamma(k + 1) - sum(math.lgamma(c + 1) for c in n) + float(n @ np.log(pi)))
        s = float(n @ w)
        if s == 0:
            continue
        wt = k * w / s
        a = wt if base == "none" else k / (k - 1) * (wt - 1)
        grad = -(1 / k) * sum(n[y] * a[y] * (np.eye(6)[y] - pi) for y in range(6))
        total += prob * grad
    return total


def self_normalised_limit(alpha: float) -> np.ndarray:
    """k → ∞: (1−α)∇D_α / S_α with S_α = Σ p^(1−α)π^α (docs/objectives.md, "Self-normalisation")."""
    pi = torch.softmax(THETA0, 0)
    accepted = P_TARGET > 0  # the sum runs over p > 0 (0^0 would count rejected outcomes at α = 1)
    s_alpha = float((P_TARGET[accepted] ** (1 - alpha) * pi[accepted] ** alpha).sum())
    return exact_scaled_gradient(alpha).numpy() / s_alpha


@pytest.mark.parametrize("alpha", [0.0, 0.5, 0.9])
def test_self_normalised_bias_vanishes_as_k_grows(alpha):
    """Self-normalisation is a ratio estimator: its finite-k expectation is biased, O(1/k), toward
    the limit (1−α)∇D_α / S_α. Our loss matches the exact finite-k expectation."""
    limit = self_normalised_limit(alpha)
    bias = {k: np.abs(exact_self_normalised_expectation(alpha, k, "none") - limit).max() for k in (2, 4, 16)}
    assert bias[2] > bias[4] > bias[16]
    assert bias[16] < 0.25 * bias[4]  # at least as fast as 1/k
    opt = AlphaDPGOptions(alpha=alpha, norm="self_normalised", baseline="none")
    mean, se = mc_gradient("alpha_dpg", opt, k=4, n_groups=12000, seed=5)
    expected = torch.as_tensor(exact_self_normalised_expectation(alpha, 4, "none"))
    assert torch.all((mean - expected).abs() <= 4 * se + 1e-9), (mean, expected, se)


def relative_bias(alpha: float, k: int, base: str) -> float:
    """‖E[ĝ] − g∞‖ / ‖g∞‖ of the self-normalised estimator against its k → ∞ limit g∞."""
    limit = self_normalised_limit(alpha)
    return float(np.linalg.norm(exact_self_normalised_expectation(alpha, k, base) - limit) / np.linalg.norm(limit))


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_default_estimator_expected_gradient(alpha):
    """The sweep's estimator (self-normalised weights, leave-one-out baseline) against the exact
    gradient on an enumerable problem. Its advantage is k/(k−1)(w̃_i − 1), not w̃_i minus a zero-mean
    control variate: the baseline is applied only where a prompt has an accepted sample, so it adds
    its own O(1/k) bias. Checked: (1) the implementation's expectation equals the enumerated one
    (Monte Carlo); (2) its bias against the limit is not the none-baseline's, shrinks like 1/k, and
    the expected gradient still points the way of the exact (1−α)∇D_α (cosine > 0.9 at k = 4).
    The measured biases are in docs/objectives.md ("Self-normalisation and the leave-one-out baseline")."""
    opt = AlphaDPGOptions(alpha=alpha, norm="self_normalised", baseline="leave_one_out")
    mean, se = mc_gradient("alpha_dpg", opt, k=4, n_groups=12000, seed=17)
    expected4 = exact_self_normalised_expectation(alpha, 4, "leave_one_out")
    assert torch.all((mean - torch.as_tensor(expected4)).abs() <= 4 * se + 1e-9), (mean, expected4, se)

    none4 = exact_self_normalised_expectation(alpha, 4, "none")
    assert np.abs(expected4 - none4).max() > 1e-3  # not a zero-mean control variate
    # what it adds, in closed form: E[g_loo] = k/(k−1)·E[g_none] + k/(k−1)·(1 − P)^(k−1)·∇_θ P_π(accepted)
    pi = torch.softmax(THETA0, 0).numpy()
    accepted = VERDICT.numpy() > 0.5
    p_acc = pi[accepted].sum()
    grad_p = pi * accepted - p_acc * pi  # ∇_θ Σ_{y accepted} π_y = Σ_acc π_y (e_y − π)
    assert np.allclose(expected4, 4 / 3 * none4 + 4 / 3 * (1 - p_acc) ** 3 * grad_p, atol=1e-12)
    b8, b16 = (relative_bias(alpha, k, "leave_one_out") for k in (8, 16))
    assert b16 < 0.6 * b8  # O(1/k) once k is large enough that a prompt is rarely all-rejected
    exact = exact_scaled_gradient(alpha).numpy()
    cosine = float(expected4 @ exact / np.linalg.norm(expected4) / np.linalg.norm(exact))
    assert cosine > 0.9


def test_default_advantage_is_k_over_k_minus_one_times_centred_weight():
    """On-policy (ρ = 1), self-normalised + leave-one-out: A_i = k/(k−1)(w̃_i − 1) on prompts with an
    accepted sample, 0 on the others (the identity the README used to call a zero-mean control variate)."""
    reward = torch.tensor([1, 0, 1, 0, 0, 0, 0, 0, 1, 1, 1, 0.0])  # prompt 1 unsolved
    b, _ = make_batch(seed=8, on_policy=True, reward=reward)
    inv, n = group_index(b.group)
    adv = alpha_dpg_advantages(b, AlphaDPGOptions(alpha=0.5), inv, n)[0]
    pol, old, ref = seq_sums(b)
    for g, rows in groups_of(b).items():
        w = [math.exp(0.5 * ref[i] + 0.5 * pol[i] - old[i]) if reward[i] > 0.5 else 0.0 for i in rows]
        k, s = len(rows), sum(w)
        for i, wi in zip(rows, w):
            expected = k / (k - 1) * (k * wi / s - 1) if s > 0 else 0.0
            assert adv[i].item() == pytest.approx(expected, rel=1e-10, abs=1e-12)


def test_alpha_one_weights_are_indicator_times_ratio():
    b, _ = make_batch(seed=4)
    pol, old, ref = (seq_logp(x.detach(), b.mask) for x in (b.policy_logp, b.old_logp, b.ref_logp))
    acc = b.reward > 0.5
    lw = log_importance_weights(pol, old, ref, acc, torch.zeros_like(ref), 1.0)
    assert torch.allclose(torch.exp(lw), acc.to(DT) * torch.exp(pol - old))
    lw0 = log_importance_weights(pol, old, ref, acc, torch.zeros_like(ref), 0.0)
    assert torch.allclose(torch.exp(lw0), acc.to(DT) * torch.exp(ref - old))


# ====================================================================== α-DPG limits and options

def test_alpha0_offline_equals_rsft_prompt_norm():
    """α = 0 on base samples (q = a), self-normalised, no baseline: every solved prompt's accepted
    samples get weight k/n_acc, which is RS-FT with norm=prompt; loss and gradient equal."""
    reward = torch.tensor([1, 0, 1, 1, 0, 0, 0, 0, 0, 1, 1, 1.0])  # prompt 1 unsolved
    b, pol = make_batch(reward=reward)
    b.old_logp = b.ref_logp.clone()  # offline: the proposal is the base model
    for agg in (Aggregation(), SEQ, Aggregation("token_mean"), Aggregation("seq_mean_token_mean")):
        l_dpg, _ = compute_loss("alpha_dpg", b, AlphaDPGOptions(alpha=0.0, baseline="none"), agg)
        l_sft, _ = compute_loss("rsft", b, RSFTOptions(norm="prompt"), agg)
        assert l_dpg.item() == pytest.approx(l_sft.item(), rel=1e-12)
        assert torch.allclose(grad_of(l_dpg, pol), grad_of(l_sft, pol), atol=1e-12)
    # the same through z_estimate with the in-batch Ẑ
    l_z = compute_loss("alpha_dpg", b, AlphaDPGOptions(alpha=0.0, baseline="none", norm="z_estimate",
                                                       z_source="group_is"), SEQ)[0]
    assert l_z.item() == pytest.approx(compute_loss("rsft", b, RSFTOptions(norm="prompt"), SEQ)[0].item(), rel=1e-12)


def test_rsft_values():
    reward = torch.tensor([1, 0, 1, 1, 0, 0, 0, 0, 0, 1, 1, 1.0])
    b, pol = make_batch(reward=reward, seed=2)
    pol_sum, _, _ = seq_sums(b)
    n = len(reward)
    sample = -sum(pol_sum[i] for i in range(n) if reward[i] > 0.5) / n
    assert compute_loss("rsft", b, RSFTOptions(norm="sample"), SEQ)[0].item() == pytest.approx(sample)
    prompt = 0.0
    for rows in groups_of(b).values():
        acc = [i for i in rows if reward[i] > 0.5]
        prompt -= sum(len(rows) / len(acc) * pol_sum[i] for i in acc) if acc else 0.0
    assert compute_loss("rsft", b, RSFTOptions(norm="prompt"), SEQ)[0].item() == pytest.approx(prompt / n)
    default = compute_loss("rsft", b, RSFTOptions(norm="sample"))[0].item()  # token sum / 1024
    assert default == pytest.approx(sample / 1024)


def test_self_normalised_ignores_log_z_and_z_estimate_scales_with_it():
    b, _ = make_batch(seed=7, log_z=torch.tensor([-1.0, -0.3, -2.0], dtype=DT))
    b2, _ = make_batch(seed=7, log_z=torch.tensor([-3.0, 0.0, -1.0], dtype=DT))
    opt = AlphaDPGOptions(alpha=0.3, norm="self_normalised")
    assert compute_loss("alpha_dpg", b, opt)[0].item() == pytest.approx(compute_loss("alpha_dpg", b2, opt)[0].item())
    # z_estimate, baseline none: shifting log Z by δ scales every weight by exp(−(1−α)δ)
    opt = AlphaDPGOptions(alpha=0.3, norm="z_estimate", baseline="none", z_source="log_z")
    b3, _ = make_batch(seed=7, log_z=torch.tensor([-1.0, -0.3, -2.0], dtype=DT) + 0.5)
    ratio = compute_loss("alpha_dpg", b3, opt)[0] / compute_loss("alpha_dpg", b, opt)[0]
    assert ratio.item() == pytest.approx(math.exp(-0.7 * 0.5), rel=1e-10)


def reference_advantages(b, alpha, norm, base, clip=None) -> list[float]:
    """α-DPG advantages from the formulas, in plain Python (log Z: the batch's cached value of the
    prompt, which cancels in self_normalised; z_estimate is covered by the expected-gradient tests)."""
    pol, old, ref = seq_sums(b)
    reward = b.reward.tolist()
    n = len(reward)
    log_z = [b.log_z[g].item() for g in b.group.tolist()]
    w = [math.exp((1 - alpha) * (ref[i] - log_z[i]) + alpha * pol[i] - old[i]) if reward[i] > 0.5 else 0.0
         for i in range(n)]
    groups = groups_of(b)
    if norm == "self_normalised":
        wt = [0.0] * n
        for rows in groups.values():
            m = sum(w[i] for i in rows) / len(rows)
            for i in rows:
                wt[i] = w[i] / m if m > 0 else 0.0
    else:  # batch
        m = sum(w) / n
        wt = [x / m for x in w]
    if clip is not None:
        wt = [min(x, clip) for x in wt]
    adv = []
    for i in range(n):
        rows = next(r for r in groups.values() if i in r)
        if base == "none":
            beta = 0.0
        elif base == "mean":
            beta = sum(wt[j] for j in rows) / len(rows)
        else:
            others = [wt[j] for j in rows if j != i]
            beta = sum(others) / len(others)
        adv.append(wt[i] - math.exp(pol[i] - old[i]) * beta)
    return adv


@pytest.mark.parametrize("norm", ["self_normalised", "batch"])
@pytest.mark.parametrize("base", ["none", "mean", "leave_one_out"])
@pytest.mark.parametrize("clip", [None, 1.2])
def test_advantages_against_the_formulas_off_policy(norm, base, clip):
    """Off-policy (q ≠ π_θ): A_i = w̃_i − ρ_i β_i with ρ = π_θ/q, every normalisation, baseline and clip."""
    b, _ = make_batch(seed=9, log_z=torch.tensor([-1.0, -0.3, -2.0], dtype=DT))
    inv, n = group_index(b.group)
    adv = alpha_dpg_advantages(b, AlphaDPGOptions(alpha=0.3, norm=norm, baseline=base, clip_max=clip), inv, n)[0]
    assert adv.tolist() == pytest.approx(reference_advantages(b, 0.3, norm, base, clip), rel=1e-10, abs=1e-12)


def test_invalid_options_are_refused_naming_the_field():
    for bad, field in ((AlphaDPGOptions(norm="nope"), "norm"), (AlphaDPGOptions(baseline="nope"), "baseline"),
                       (AlphaDPGOptions(alpha=1.5), "alpha"), (GRPOOptions(kl_coef=-1), "kl_coef"),
                       (DPHRLOptions(divergence="tv"), "divergence"), (RSFTOptions(norm="x"), "norm"),
                       (FDPGOptions(divergence="rkl"), "divergence"), (UnlikelinessOptions(formula="x"), "formula")):
        with pytest.raises(ValueError, match=field):
            bad.check()


def test_z_source_options():
    log_z = torch.tensor([-1.0, float("-inf"), -2.0], dtype=DT)
    b, pol = make_batch(seed=12, log_z=log_z, reward=torch.ones(12))
    loss, diag = compute_loss("alpha_dpg", b, AlphaDPGOptions(norm="z_estimate", z_source="auto"))
    assert torch.isfinite(loss) and diag["z_fallback_frac"] == pytest.approx(1 / 3)
    b_none, _ = make_batch(seed=12, reward=torch.ones(12))
    with pytest.raises(ValueError):
        compute_loss("alpha_dpg", b_none, AlphaDPGOptions(norm="z_estimate", z_source="log_z"))
    l_is = compute_loss("alpha_dpg", b, AlphaDPGOptions(norm="z_estimate", z_source="group_is"))[0]
    l_is2 = compute_loss("alpha_dpg", b_none, AlphaDPGOptions(norm="z_estimate", z_source="auto"))[0]
    assert l_is.item() == pytest.approx(l_is2.item())


# ====================================================================== α-DPG paper preset

def authors_update(seq_target, seq_old, seq_pol_live, mask_len, uid, alpha, clip=10.0, z_default=1e-4):
    """The authors' update written the way their code computes it (naver/alpha-dpg,
    ray_trainer.compute_partition_function with reset_z, core_algos.compute_fcdpg_advantage with
    loss_divergence='alpha' and use_baseline, apply_leave_one_out_baseline, and the fcdpg policy loss
    with loss_agg_mode='seq-mean-token-sum-norm'), on plain Python lists; returns the loss as a
    function of the live sequence log-probs."""
    n = len(uid)
    # compute_partition_function: pointwise exp(target − π_old), a moving average reset per prompt
    # (reset_z) and updated with this batch's values, clamped at 1; then z == 0 → z_default
    point = [math.exp(t - o) for t, o in zip(seq_target, seq_old)]
    z_of = {}
    for key in dict.fromkeys(uid):
        vals = [point[i] for i in range(n) if uid[i] == key]
        z_of[key] = sum(vals) / len(vals)
    z = [min(z_of[key], 1.0) for key in uid]
    z = [zi + z_default if zi == 0 else zi for zi in z]
    # compute_fcdpg_advantage, alpha branch
    pseudo = []
    for i in range(n):
        log_t = seq_old[i] - (seq_target[i] - math.log(z[i]))
        if abs(alpha - 1.0) < 1e-8:
            raise NotImplementedError("their α = 1 branch: see test_paper_preset_alpha_limits")
        f_prime = -math.expm1(-log_t) if abs(alpha) < 1e-8 else -math.expm1(log_t * (alpha - 1.0))
        pseudo.append(min(-f_prime, clip))
    adv = []
    for i in range(n):
        others = [pseudo[j] for j in range(n) if uid[j] == uid[i] and j != i]
        adv.append(pseudo[i] - (sum(others) / len(others) if others else 0.0))
    # fcdpg loss: (−A · Σ_t mask·log π).mean() / 1024 (advantages are repeated over the tokens)
    return sum(-a * lp for a, lp in zip(adv, seq_pol_live)) / n / 1024, pseudo


@pytest.mark.parametrize("alpha", [0.0, 0.25, 0.5, 0.99])
def test_paper_preset_is_the_authors_update(alpha):
    """On a toy batch with a prompt that has no accepted sample (Ẑ = z_default there) and one clipped
    pseudo-reward: the preset's loss and gradient equal the authors' update, Ẑ estimated per prompt
    from this batch alone (not the cached base pass rate, which the batch also carries)."""
    reward = torch.tensor([1, 0, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1.0])  # prompt 1: nothing accepted
    b, pol = make_batch(reward=reward, seed=13, log_z=torch.tensor([-0.1, -0.2, -0.3], dtype=DT))
    b.old_logp[0] -= 3.0  # one accepted proof very unlikely under π_old: its pseudo-reward is clipped at 10
    _, old, ref = seq_sums(b)
    target = [r if reward[i] > 0.5 else -math.inf for i, r in enumerate(ref)]  # log a + log b
    live = seq_logp(pol, b.mask)
    expected, pseudo = authors_update(target, old, list(live.unbind(0)), None, b.group.tolist(), alpha)
    loss, diag = compute_loss("alpha_dpg_paper", b, AlphaDPGPaperOptions(alpha=alpha))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-10)
    assert torch.allclose(grad_of(loss, pol), grad_of(expected, pol), atol=1e-14)
    assert pseudo[0] == 10.0 or alpha > 0.9
    assert diag["frac_clipped"] > 0 or alpha > 0.9
    assert all(pseudo[i] == -1.0 for i in range(12) if reward[i] == 0)


def test_paper_preset_alpha_limits():
    """α = 0: pseudo-reward p/π_old − 1 (their f'(t) = 1 − 1/t). α = 1: the exact limit b − 1
    (NOT their reverse-KL special case, which is −∞ on rejected proofs)."""
    from pipeline.objectives.alpha_dpg import paper_pseudo_rewards

    reward = torch.tensor([1, 0, 1, 1, 0, 0, 1, 0, 1, 1, 1, 1.0])
    b, _ = make_batch(reward=reward, seed=14)
    inv, n = group_index(b.group)
    r0, _ = paper_pseudo_rewards(b, AlphaDPGPaperOptions(alpha=0.0, pseudo_reward_clip=None), inv, n)
    _, old, ref = seq_sums(b)
    for rows in groups_of(b).values():
        z = min(1.0, sum(math.exp(ref[i] - old[i]) for i in rows if reward[i] > 0.5) / len(rows))
        for i in rows:
            if reward[i] > 0.5:
                assert r0[i].item() == pytest.approx(math.exp(ref[i] - math.log(z) - old[i]) - 1, rel=1e-10)
    r1, _ = paper_pseudo_rewards(b, AlphaDPGPaperOptions(alpha=1.0), inv, n)
    assert torch.equal(r1, reward - 1)
    assert torch.isfinite(compute_loss("alpha_dpg_paper", b, AlphaDPGPaperOptions(alpha=1.0))[0])


def test_paper_preset_matches_z_estimate_up_to_the_constant():
    """On-policy, Ẑ ≤ 1, no clipping: paper = z_estimate(group IS) + leave-one-out, divided by 1024."""
    b, pol = make_batch(seed=15, on_policy=True, reward=torch.tensor([1, 0, 1, 1, 0, 0, 1, 0, 1, 1, 1, 1.0]))
    b.ref_logp = b.old_logp - 0.5  # a < q on every sample, so Ẑ < 1 and the cap is inactive
    g_paper = grad_of(compute_loss("alpha_dpg_paper", b, AlphaDPGPaperOptions(alpha=0.25, pseudo_reward_clip=None))[0],
                      pol)
    opt = AlphaDPGOptions(alpha=0.25, norm="z_estimate", z_source="group_is", baseline="leave_one_out")
    g_z = grad_of(compute_loss("alpha_dpg", b, opt, SEQ)[0], pol)
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
    pi = [0.2, 0.3, 0.5]
    ref = [0.4, 0.4, 0.2]
    k3_values = k3(torch.tensor(pi, dtype=DT).log(), torch.tensor(ref, dtype=DT).log()).tolist()
    assert sum(p * v for p, v in zip(pi, k3_values)) == pytest.approx(_np_kl(pi, ref))
    # verl's low_var_kl clamp (the α-DPG authors' RL baseline): at most the clamp, else unchanged
    far = torch.tensor([0.0, -15.0], dtype=DT)  # log π_ref/π_θ = 15: k3 = e^15 − 16
    assert k3(far, torch.zeros(2, dtype=DT), clamp=10.0).tolist() == pytest.approx([0.0, 10.0])
    assert k3(lp, other, clamp=10.0).tolist() == pytest.approx(k3(lp, other).tolist())


def test_grpo_kl_term_is_beta_times_k3():
    """The KL part of the GRPO loss is β·Σ_{i,t} k3_{i,t} on the run's scale, k3 = r − log r − 1 with
    r = π_ref/π_θ (written out here per token), and its gradient per token is β(1 − r)/(N·1024)."""
    b, pol = make_batch(seed=16, on_policy=True)
    beta = 0.5
    with_kl, d = compute_loss("grpo", b, GRPOOptions(kl_coef=beta))
    without, _ = compute_loss("grpo", b, GRPOOptions(kl_coef=0.0))
    n = len(b.reward)
    k3_sum, grad_expected = 0.0, torch.zeros_like(pol)
    for i, (prow, rrow, mrow) in enumerate(zip(pol.tolist(), b.ref_logp.tolist(), b.mask.tolist())):
        for t, (lp, lr, m) in enumerate(zip(prow, rrow, mrow)):
            if m:
                r = math.exp(lr - lp)
                k3_sum += r - math.log(r) - 1
                grad_expected[i, t] = beta * (1 - r) / (n * 1024)
    assert (with_kl - without).item() == pytest.approx(beta * k3_sum / (n * 1024), rel=1e-10)
    assert torch.allclose(grad_of(with_kl, pol) - grad_of(without, pol), grad_expected, atol=1e-15)
    assert d["kl_k3_token_mean"] > 0
    same, _ = make_batch(seed=16, policy_eq_ref=True)  # π_θ = π_ref: the term is 0
    assert compute_loss("grpo", same, GRPOOptions(kl_coef=beta))[0].item() == \
        pytest.approx(compute_loss("grpo", same, GRPOOptions(kl_coef=0.0))[0].item(), abs=1e-15)


def test_loss_aggregations():
    b, _ = make_batch(seed=17, on_policy=True)
    adv = grpo_advantages(b.reward, b.group).tolist()
    lens = b.mask.sum(-1).tolist()
    n = len(lens)
    seq = [-a * ln for a, ln in zip(adv, lens)]  # ratio 1 on-policy: per-token loss −A
    expected = {"token_mean": sum(seq) / sum(lens), "seq_mean_token_mean": sum(s / ln for s, ln in zip(seq, lens)) / n,
                "seq_mean_token_sum": sum(seq) / n, "seq_mean_token_sum_norm": sum(seq) / n / 1024}
    for mode, val in expected.items():
        loss, _ = compute_loss("grpo", b, GRPOOptions(kl_coef=0.0), Aggregation(mode))
        assert loss.item() == pytest.approx(val, abs=1e-12)
    assert compute_loss("grpo", b, GRPOOptions(kl_coef=0.0), Aggregation(norm_tokens=512))[0].item() == \
        pytest.approx(sum(seq) / n / 512)
    with pytest.raises(ValueError):
        Aggregation("nope")


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_objective_is_on_the_declared_loss_scale(name):
    """One loss scale (issue 17 item 2): every objective's loss under token sum / C is its loss under
    the plain token sum / N divided by C, and under token_mean it is the token sum over the batch's
    tokens: no objective normalises on its own."""
    is_ref = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0.0])
    reward = torch.tensor([1, 0, 1, 0, 1, 1, 1, 1, 1, 1, 0, 0.0])
    b, _ = make_batch(seed=25, reward=reward, is_ref=is_ref, log_z=torch.tensor([-1.0, -0.2, -0.8], dtype=DT))
    summed = compute_loss(name, b, None, SEQ)[0].item()
    assert compute_loss(name, b, None, Aggregation(norm_tokens=1024))[0].item() == pytest.approx(summed / 1024)
    assert compute_loss(name, b, None, Aggregation(norm_tokens=7))[0].item() == pytest.approx(summed / 7)
    if name != "dph_rl":  # DPH-RL scales its two terms over their own rows
        n, tokens = len(reward), b.mask.sum().item()
        assert compute_loss(name, b, None, Aggregation("token_mean"))[0].item() == pytest.approx(summed * n / tokens)


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
    g = grad_of(compute_loss("ds_grpo", b, DSGRPOOptions(kl_coef=0.0, eps=0.0, clip_eps=1e9), SEQ)[0], pol)
    ratio = torch.exp(pol.detach() - b.old_logp).squeeze(1)  # d(−ρA)/dlogp = −ρA, mean over 4 sequences
    assert torch.allclose(g.squeeze(1), -ratio * torch.tensor([1.1, 1.2, -1.1, -1.2], dtype=DT) / 4)


def test_ds_grpo_gamma_zero_is_grpo():
    b, pol = make_batch(seed=18)
    l_ds = compute_loss("ds_grpo", b, DSGRPOOptions(gamma_p=0.0, gamma_n=0.0))[0]
    l_g = compute_loss("grpo", b, GRPOOptions())[0]
    assert l_ds.item() == pytest.approx(l_g.item())
    assert torch.allclose(grad_of(l_ds, pol), grad_of(l_g, pol))


# ====================================================================== ECO

def test_eco_values():
    """Per accepted sample −ℓ_i + λ·Var (population variance of ℓ over the prompt's accepted
    samples): ℓ = [−1, −3] accepted, −7 rejected → Σ = (1 + 3) + λ·2·1, gradient −1 + 2λ(ℓ_i − ℓ̄)."""
    pol = torch.tensor([[-1.0], [-3.0], [-7.0]], dtype=DT, requires_grad=True)
    b = ObjectiveBatch(policy_logp=pol, old_logp=pol.detach(), ref_logp=pol.detach(),
                       mask=torch.ones(3, 1, dtype=DT), reward=torch.tensor([1.0, 1.0, 0.0], dtype=DT),
                       group=torch.zeros(3, dtype=torch.long))
    loss, d = compute_loss("eco", b, ECOOptions(lam=0.5), SEQ)
    assert loss.item() == pytest.approx((4.0 + 0.5 * 2 * 1.0) / 3) and d["logp_variance"] == pytest.approx(1.0)
    assert grad_of(loss, pol).squeeze(1).tolist() == pytest.approx([(-1 + 2 * 0.5 * 1) / 3, (-1 - 2 * 0.5 * 1) / 3, 0])
    b2, pol2 = make_batch(seed=19)
    l0, l_sft = compute_loss("eco", b2, ECOOptions(lam=0.0))[0], compute_loss("rsft", b2, RSFTOptions())[0]
    assert l0.item() == pytest.approx(l_sft.item())
    assert torch.allclose(grad_of(l0, pol2), grad_of(l_sft, pol2))
    # a single accepted proof has no spread: no penalty
    one = ObjectiveBatch(policy_logp=pol, old_logp=pol.detach(), ref_logp=pol.detach(), mask=torch.ones(3, 1, dtype=DT),
                         reward=torch.tensor([1.0, 0.0, 0.0], dtype=DT), group=torch.zeros(3, dtype=torch.long))
    assert compute_loss("eco", one, ECOOptions(lam=5.0), SEQ)[0].item() == pytest.approx(1 / 3)


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
    l_u = compute_loss("unlikeliness", b, UnlikelinessOptions(beta_rank=0.0))[0]
    l_g = compute_loss("grpo", b, GRPOOptions(kl_coef=0.10))[0]
    assert l_u.item() == pytest.approx(l_g.item())
    assert torch.allclose(grad_of(l_u, pol), grad_of(l_g, pol))
    assert torch.isfinite(compute_loss("unlikeliness", b, UnlikelinessOptions(rank_by="token_mean"))[0])


# ====================================================================== MARA

def test_mara_rewards_equalise_target_weights():
    reward = torch.tensor([1.0, 1.0, 0.0, 1.0], dtype=DT)
    seq_ref = torch.tensor([-3.0, -1.0, -0.5, -2.0], dtype=DT)
    r = mara_rewards(reward, torch.zeros(4, dtype=torch.long), seq_ref, beta=0.1, tau=1.0)
    assert torch.allclose(r, torch.tensor([1.2, 1.0, 0.0, 1.1], dtype=DT))
    target = r / 0.1 + seq_ref  # log π_ref(y) + r(y)/β: equal on every accepted sample
    assert torch.allclose(target[reward > 0], target[1].expand(3))


def test_mara_default_keeps_the_reward_scale():
    """MARA's options default to no std scaling (its docstring's requirement): on-policy, the
    advantage multiplying each token is the centred augmented reward itself, r_i − mean r."""
    assert MARAOptions().scale_by_std is False
    reward = torch.tensor([1.0, 1.0, 0.0, 1.0], dtype=DT)
    pol = torch.zeros(4, 1, dtype=DT, requires_grad=True)
    b = ObjectiveBatch(policy_logp=pol, old_logp=pol.detach(), ref_logp=torch.tensor([[-3.0], [-1.0], [-0.5], [-2.0]],
                                                                                       dtype=DT),
                       mask=torch.ones(4, 1, dtype=DT), reward=reward, group=torch.zeros(4, dtype=torch.long))
    rl = compute_loss("mara", b, MARAOptions(beta=0.0), SEQ)[0]  # β = 0: no augmentation, no KL
    r = [1.0, 1.0, 0.0, 1.0]
    centred = [x - sum(r) / 4 for x in r]
    assert grad_of(rl, pol).squeeze(1).tolist() == pytest.approx([-a / 4 for a in centred])


# ====================================================================== DPH-RL

def test_dph_generators():
    log_u = torch.tensor([-3.0, -0.5, 0.0, 0.4, 2.0], dtype=DT)
    for f in (forward_kl_generator, js_generator):
        v = f(log_u)
        assert v[2].item() == 0.0
        assert torch.all(v[[0, 1, 3, 4]] > 0)
    for lu, fk, js in zip(log_u.tolist(), forward_kl_generator(log_u).tolist(), js_generator(log_u).tolist()):
        u = math.exp(lu)
        assert fk == pytest.approx(u - lu - 1)
        assert js == pytest.approx(u * lu - (u + 1) * math.log((u + 1) / 2))


def test_dph_routes_perfect_prompts_to_the_divergence():
    # group 0: reference rows, all pass (perfect prompt) -> divergence term
    # group 1: policy rows with mixed rewards           -> RL term
    # group 2: reference rows, not all pass             -> dropped
    reward = torch.tensor([1, 1, 1, 1, 1, 0, 1, 0, 1, 0, 1, 1.0])
    is_ref = torch.tensor([1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1.0])
    b, pol = make_batch(reward=reward, is_ref=is_ref, seed=21)
    for div in ("forward_kl", "js"):
        opt = DPHRLOptions(divergence=div, eta=0.2)
        loss, d = compute_loss("dph_rl", b, opt, SEQ)
        g = grad_of(loss, pol)
        assert torch.all(g[8:] == 0) and d["n_divergence_rows"] == 4 and d["n_ref_rows_dropped"] == 4
        # divergence term: η · (1/4) Σ over the 4 reference rows' tokens of f(π_θ/π_ref), by autograd
        gen = forward_kl_generator if div == "forward_kl" else js_generator
        div_manual = (gen(pol[:4] - b.ref_logp[:4]) * b.mask[:4]).sum() / 4
        assert torch.allclose(g[:4], 0.2 * grad_of(div_manual, pol)[:4])
        sub = ObjectiveBatch(policy_logp=pol[4:8], old_logp=b.old_logp[4:8], ref_logp=b.ref_logp[4:8],
                             mask=b.mask[4:8], reward=reward[4:8], group=b.group[4:8])
        rl_manual = compute_loss("grpo", sub, GRPOOptions(kl_coef=0.0), SEQ)[0]
        assert torch.allclose(g[4:8], grad_of(rl_manual, pol)[4:8])
    # without the all-solved requirement group 2's reference rows get the divergence term too
    g_all = grad_of(compute_loss("dph_rl", b, DPHRLOptions(require_all_solved=False))[0], pol)
    assert torch.any(g_all[8:] != 0)


# ====================================================================== f-DPG

@pytest.mark.parametrize("kind", ["js", "kl", "tv"])
def test_fdpg_expected_gradient(kind):
    pi = torch.softmax(THETA0, 0)
    theta = THETA0.clone().requires_grad_()
    pt = torch.softmax(theta, 0)
    exact_div = {"js": lambda: js_divergence_x2(pt, P_TARGET),
                 "kl": lambda: (P_TARGET[P_TARGET > 0] * (P_TARGET[P_TARGET > 0] / pt[P_TARGET > 0]).log()).sum(),
                 "tv": lambda: 0.5 * (pt - P_TARGET).abs().sum()}[kind]()
    (exact,) = torch.autograd.grad(exact_div, theta)
    assert not torch.allclose(pi, P_TARGET)
    opt = FDPGOptions(divergence=kind, baseline="leave_one_out", z_source="log_z")
    mean, se = mc_gradient("fdpg", opt, k=4, n_groups=12000, seed=23)
    assert torch.all((mean - exact).abs() <= 4 * se + 1e-9), (mean, exact, se)


def test_fdpg_kl_equals_alpha_dpg_at_zero_on_policy():
    b, pol = make_batch(seed=24, on_policy=True, log_z=torch.tensor([-1.0, -0.3, -2.0], dtype=DT))
    l_f = compute_loss("fdpg", b, FDPGOptions(divergence="kl", z_source="log_z"))[0]
    l_a = compute_loss("alpha_dpg", b, AlphaDPGOptions(alpha=0.0, norm="z_estimate", z_source="log_z"))[0]
    assert torch.allclose(grad_of(l_f, pol), grad_of(l_a, pol), atol=1e-12)


# ====================================================================== every objective

@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_objective_finite_and_differentiable(name):
    is_ref = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0.0])
    reward = torch.tensor([1, 0, 1, 0, 1, 1, 1, 1, 1, 1, 0, 0.0])
    b, pol = make_batch(seed=25, reward=reward, is_ref=is_ref, log_z=torch.tensor([-1.0, -0.2, -0.8], dtype=DT))
    loss, diag = compute_loss(name, b)
    assert loss.dim() == 0 and torch.isfinite(loss)
    g = grad_of(loss, pol)
    assert torch.all(torch.isfinite(g)) and torch.any(g != 0)
    assert all(isinstance(v, float) and math.isfinite(v) for v in diag.values())
    for key in ("acceptance", "frac_prompts_no_accepted", "kl_k1", "kl_k3"):
        assert key in diag
    # float32 works too
    b32, _ = make_batch(seed=25, reward=reward, is_ref=is_ref, dtype=torch.float32)
    l32, _ = compute_loss(name, b32)
    assert torch.isfinite(l32) and l32.dtype == torch.float32


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_zero_gradient_without_signal(name):
    """All rewards 0 and π_θ = π_ref = π_old: no objective moves the policy. (DS-GRPO's Eq. 6 also
    smooths incorrect samples, A_i = γ_n log π_old(y_i), so for it "no signal" needs γ_n = 0.)"""
    b, pol = make_batch(seed=26, reward=torch.zeros(12), policy_eq_ref=True,
                        is_ref=torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0.0]))
    opt = DSGRPOOptions(gamma_n=0.0) if name == "ds_grpo" else None
    loss, _ = compute_loss(name, b, opt)
    assert torch.isfinite(loss)
    assert torch.all(grad_of(loss, pol).abs() < 1e-12)
    if name == "ds_grpo":
        assert torch.any(grad_of(compute_loss(name, b, DSGRPOOptions(gamma_n=0.01))[0], pol) != 0)


@pytest.mark.parametrize("norm", ["self_normalised", "z_estimate", "batch"])
@pytest.mark.parametrize("base", ["none", "mean", "leave_one_out"])
def test_distribution_matching_zero_gradient_when_nothing_accepted(norm, base):
    """All rewards 0: distribution matching has no target (policy ≠ reference ≠ proposal here)."""
    b, pol = make_batch(seed=27, reward=torch.zeros(12), log_z=torch.tensor([-1.0, -2.0, -3.0], dtype=DT))
    for name, opt in (("alpha_dpg", AlphaDPGOptions(norm=norm, baseline=base)), ("alpha_dpg_paper", None),
                      ("rsft", None), ("eco", None), ("fdpg", FDPGOptions(baseline=base if base != "none" else "mean")),
                      ("grpo", GRPOOptions(kl_coef=0.0))):
        loss, _ = compute_loss(name, b, opt)
        assert torch.isfinite(loss) and torch.all(grad_of(loss, pol) == 0), name


# ====================================================================== the registry

def test_registry_knows_what_the_pipeline_asks():
    with pytest.raises(KeyError, match="registered"):
        get_objective("nope")
    allowed = {"str", "int", "float", "bool", "Optional[float]", "Optional[int]", "Optional[str]"}
    for spec in REGISTRY.values():
        for f in fields(spec.options):  # Hydra needs plain types in every section
            assert str(f.type) in allowed, (spec.name, f.name, f.type)
    assert get_objective("alpha_dpg").axis == "alpha" and get_objective("alpha_dpg_paper").axis == "alpha"
    assert [n for n, s in REGISTRY.items() if s.needs_base_samples] == ["dph_rl"]
    assert [n for n, s in REGISTRY.items() if s.fresh_rollouts_per_step] == ["alpha_dpg_paper"]
    assert get_objective("grpo").modes == ("online",) and get_objective("rsft").modes == ("offline", "online")
    assert get_objective("alpha_dpg").label(AlphaDPGOptions(alpha=0.3)) == "α-DPG α=0.3"
    assert get_objective("dph_rl").label(DPHRLOptions(divergence="js")) == "DPH-RL JS"
    assert get_objective("rsft").label(RSFTOptions(), "mine") == "mine"
    omegaconf = pytest.importorskip("omegaconf")
    node = omegaconf.OmegaConf.structured(AlphaDPGOptions)
    assert torch.isfinite(compute_loss("alpha_dpg", make_batch()[0], node)[0])  # a config node works too
    with pytest.raises(ValueError):
        ObjectiveBatch(policy_logp=torch.zeros(2, 3), old_logp=torch.zeros(2, 3), ref_logp=torch.zeros(2, 2),
                       mask=torch.ones(2, 3), reward=torch.zeros(2), group=torch.zeros(2, dtype=torch.long))


def test_registering_a_name_twice_or_a_bad_axis_is_refused():
    with pytest.raises(ValueError, match="registered twice"):
        register_objective("rsft", options=RSFTOptions, title="again")(lambda b, o, a: None)
    with pytest.raises(ValueError, match="axis"):
        register_objective("tmp_objective", options=RSFTOptions, title="x", axis="alpha")
    assert "tmp_objective" not in REGISTRY
