"""What every objective shares: the batch it reads, the loss scale it is put on, and the registry.

An objective is registered where it is defined (verl's `register_policy_loss` pattern):

    @dataclass
    class MyOptions:                       # its config section, `train.my_objective.*`
        beta: float = 0.1

    @register_objective("my_objective", options=MyOptions, title="My objective")
    def my_loss(batch: ObjectiveBatch, opt: MyOptions, agg: Aggregation): ...

The registration says what the rest of the pipeline must know about it (its sweep axis and label,
whether it needs base-model samples each round, whether it trains offline, online or both, whether
each optimiser step needs fresh rollouts, at which temperature it reads the model's log-probs), so
the train stage, the config and the reports ask the registry instead of testing names. The
mathematics of every objective is in docs/objectives.md.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, is_dataclass
from typing import Any, Callable, Optional

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
    is_ref_sample optional [N] bool/float, DPH-RL only: 1 on rows that are samples of the initial
                  (reference) model, which get the divergence term instead of the RL term (their
                  reward is the verdict on the reference sample)
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
        """[N] bool: the DPH-RL reference-sample rows (all False when the flag is absent)."""
        if self.is_ref_sample is None:
            return torch.zeros_like(self.reward, dtype=torch.bool)
        return self.is_ref_sample > 0.5


# ---- the loss scale (docs/objectives.md, "One loss scale")

AGG_MODES = ("seq_mean_token_sum_norm", "seq_mean_token_sum", "seq_mean_token_mean", "token_mean")


@dataclass(frozen=True)
class Aggregation:
    """How a batch's per-sequence losses become the scalar that is minimised: the same for every
    objective of a run (`train.loss_agg`, `train.loss_norm_tokens`).

    Each objective writes its loss as a sum over the batch's sequences of per-sequence terms s_i,
    built from sequence scores ℓ_i = `seq(token log-probs)` (or from per-token losses summed by
    `seq`), and `reduce` divides that sum by one batch-level denominator:
        seq_mean_token_sum_norm  ℓ_i = Σ_t,   loss = Σ_i s_i / (N · norm_tokens)   (default; α-DPG authors)
        seq_mean_token_sum       ℓ_i = Σ_t,   loss = Σ_i s_i / N
        seq_mean_token_mean      ℓ_i = mean_t, loss = Σ_i s_i / N                   (DeepSeekMath's GRPO)
        token_mean               ℓ_i = Σ_t,   loss = Σ_i s_i / Σ_i |y_i|            (DAPO)
    Importance weights always use token sums: they are probabilities of whole sequences.
    """

    mode: str = "seq_mean_token_sum_norm"
    norm_tokens: int = 1024

    def __post_init__(self) -> None:
        if self.mode not in AGG_MODES:
            raise ValueError(f"unknown loss aggregation {self.mode!r}: expected one of {AGG_MODES}")
        if self.norm_tokens <= 0:
            raise ValueError(f"loss_norm_tokens must be > 0, got {self.norm_tokens}")

    def seq(self, x: Tensor, mask: Tensor) -> Tensor:
        """[N, T] per-token values -> [N] per-sequence values: masked sum (masked mean for
        seq_mean_token_mean). Masked positions may hold anything, even -inf."""
        s = torch.where(mask > 0, x, torch.zeros_like(x)).sum(-1)
        if self.mode == "seq_mean_token_mean":
            s = s / mask.sum(-1).clamp(min=1)
        return s

    def reduce(self, seq_loss: Tensor, mask: Tensor) -> Tensor:
        """[N] per-sequence loss terms (of the sequences whose mask rows are given) -> the scalar loss;
        a graph-connected 0 for an empty batch."""
        if seq_loss.numel() == 0:
            return seq_loss.sum() * 0.0
        n = seq_loss.shape[0]
        if self.mode == "seq_mean_token_sum_norm":
            return seq_loss.sum() / (n * self.norm_tokens)
        if self.mode == "token_mean":
            return seq_loss.sum() / mask.sum().clamp(min=1)
        return seq_loss.sum() / n

    def tokens(self, loss_tok: Tensor, mask: Tensor) -> Tensor:
        """[N, T] per-token losses -> the scalar loss (`reduce` of `seq`)."""
        return self.reduce(self.seq(loss_tok, mask), mask)

    @property
    def description(self) -> str:
        return f"{self.mode}/{self.norm_tokens}" if self.mode == "seq_mean_token_sum_norm" else self.mode


# ---- the registry

LossFn = Callable[[ObjectiveBatch, Any, Aggregation], "tuple[Tensor, dict[str, float]]"]
MODES = ("offline", "online")


@dataclass(frozen=True)
class Objective:
    """A registered objective and what the pipeline must know about it.

    name            the value of `train.objective`, and the key of its config section `train.<name>`
    loss            fn(batch, options, aggregation) -> (scalar loss to minimise, float diagnostics)
    options         the dataclass of its section (every field a plain type, for Hydra)
    title           its name in reports, or a function of its options returning one
    modes           the `train.mode`s it supports: offline (the base model's samples) and/or online
    axis            the option a sweep varies (e.g. "alpha"); the label states its value
    axis_symbol     how the label writes the axis (e.g. "α")
    needs_base_samples     each round also needs the base model's samples of the round's prompts (DPH-RL)
    fresh_rollouts_per_step each optimiser step needs samples drawn from the current policy just
                            before it (one step per batch of rollouts: no off-policy steps)
    policy_temperature  "one": π_θ and π_ref are scored at temperature 1 (the distributions the
                        objective is about); "sampler": at the sampler's temperature, the distribution
                        actually sampled from (ratio-based RL, whose π_old is the sampler's)
    """

    name: str
    loss: LossFn
    options: type
    title: Any
    modes: tuple = MODES
    axis: Optional[str] = None
    axis_symbol: str = ""
    needs_base_samples: bool = False
    fresh_rollouts_per_step: bool = False
    policy_temperature: str = "one"

    def label(self, options, name: str = "") -> str:
        """The run's label from the config actually used: `name` (else the title) and, for an
        objective with a sweep axis, the axis value read from `options`."""
        base = name or (self.title(options) if callable(self.title) else self.title)
        if self.axis is None:
            return base
        if f"{self.axis_symbol}=" in name:
            raise ValueError(f"method={name!r} states {self.axis_symbol} itself: the label of a {self.name} run "
                             f"takes {self.axis_symbol} from train.{self.name}.{self.axis} (the value trained with); "
                             f"drop it from `method`")
        return f"{base} {self.axis_symbol}={self.axis_value(options):g}"

    def axis_value(self, options) -> Optional[float]:
        return None if self.axis is None else float(getattr(options, self.axis))


REGISTRY: dict[str, Objective] = {}


def register_objective(name: str, *, options: type, title, modes: tuple = MODES, axis: Optional[str] = None,
                       axis_symbol: str = "", needs_base_samples: bool = False,
                       fresh_rollouts_per_step: bool = False, policy_temperature: str = "one"):
    """Decorator registering `fn(batch, options, aggregation)` as the objective `name`."""
    if not is_dataclass(options):
        raise TypeError(f"objective {name!r}: options must be a dataclass, got {options!r}")
    if set(modes) - set(MODES) or not modes:
        raise ValueError(f"objective {name!r}: modes {modes} must be a non-empty subset of {MODES}")
    if policy_temperature not in ("one", "sampler"):
        raise ValueError(f"objective {name!r}: policy_temperature must be 'one' or 'sampler'")
    if axis is not None and axis not in {f.name for f in fields(options)}:
        raise ValueError(f"objective {name!r}: its axis {axis!r} is not a field of {options.__name__}")

    def decorator(fn: LossFn) -> LossFn:
        if name in REGISTRY and REGISTRY[name].loss is not fn:
            raise ValueError(f"objective {name!r} is registered twice ({REGISTRY[name].loss} and {fn})")
        REGISTRY[name] = Objective(name, fn, options, title, tuple(modes), axis, axis_symbol, needs_base_samples,
                                   fresh_rollouts_per_step, policy_temperature)
        return fn

    return decorator


def get_objective(name: str) -> Objective:
    if name not in REGISTRY:
        raise KeyError(f"unknown objective {name!r}; registered: {sorted(REGISTRY)}")
    return REGISTRY[name]
