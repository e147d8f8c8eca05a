"""Typed configs, one dataclass per stage. The YAML under `conf/` is merged onto these.

Hydra composes `conf/config.yaml` on top of `RootConfig` (registered below as `base_config`), so
an unknown key or a value of the wrong type is an error naming the key before any work starts.
Keep every field a plain str/int/float/bool/list (OmegaConf validates those).
"""

from __future__ import annotations

from dataclasses import dataclass, field, make_dataclass
from typing import Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from pipeline import objectives
from pipeline.stages import STAGES


@dataclass
class ModelConfig:
    name: str = MISSING
    # A hub name or local folder loaded with from_pretrained. Empty: the model is built and trained
    # from scratch by the `pretrain` stage (the embedded tiny_prop model).
    path: str = ""
    # Architecture of a from-scratch model (a transformers Llama); ignored when `path` is set.
    vocab_size: int = 768
    hidden_size: int = 128
    intermediate_size: int = 384
    num_layers: int = 4
    num_heads: int = 4
    max_length: int = 320
    dtype: str = "float32"  # float32 | bfloat16 | float16
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # How the model is prompted and how its completion becomes a proof (pipeline/prompts.py):
    # prop | deepseek_prover | deepseek_prover_cot | kimina_prover.
    prompt_style: str = "prop"


@dataclass
class PretrainConfig:
    """Bootstraps the embedded base model from the proof generator's corpus (tiny_prop only)."""
    seed: int = 0
    # Theorems beyond the train split (none is an eval theorem up to renaming): the first
    # `extra_theorems` rows of `extra_path`.
    extra_path: str = "pkg://lean_env/data/prop_pretrain.jsonl"
    extra_theorems: int = 6000
    proofs_per_theorem: int = 8
    # Proofs longer than this are left out of the corpus (0: no limit): the longest 5% cost many
    # tokens that a 10-minute model cannot learn from anyway.
    max_proof_chars: int = 320
    # Weight of an auxiliary next-token loss on the prompt (the statement), which the model reads
    # anyway: learning to predict formulas costs no extra compute (0: completion loss only).
    prompt_loss_weight: float = 0.5
    # Small batches: on a CPU a token costs the same in a batch of 16 as in one of 128, and more steps
    # per token learn faster (the measurements behind this: docs/results.md).
    steps: int = 3000
    batch_size: int = 16
    lr: float = 2e-3
    warmup_steps: int = 100
    weight_decay: float = 0.01
    checkpoint_every: int = 500
    num_threads: int = 0  # 0: torch default (with processes > 1: 1 per process)
    # Data-parallel processes: each computes the gradient of its share of every batch, the shares
    # are summed (gloo), all take the same step. Every step waits for the slowest process, so it
    # pays only on cores free for this run: on the shared 2-core machine it was slower than one
    # process (docs/results.md, "Throughput"); time a short run both ways first. Part of the
    # artifact key: the sum of the shares rounds differently from one process's.
    processes: int = 1


@dataclass
class DatasetConfig:
    name: str = MISSING
    train_path: str = MISSING  # jsonl or parquet with columns id, statement (and optional extras)
    eval_path: str = MISSING
    # prompt_template and proof_prefix are used by model.prompt_style=prop only: the prompt is the
    # template filled from the row, and the verifier sees proof_prefix + completion (the model
    # continues after `:= by`). The Lean prover styles build their own prompt around `header`.
    prompt_template: str = "{statement} := by"
    proof_prefix: str = "by"
    # The Lean file header the benchmark pins (imports, options, opens), put before the statement.
    header: str = ""
    train_limit: int = 0  # 0: all theorems
    eval_limit: int = 0
    # Theorems the policy is evaluated on after each training round (eval.trajectory_samples): the
    # training trajectories of the sweep report. Disjoint from train and eval; empty: none.
    valid_path: str = ""
    valid_limit: int = 0


def _options_section(backend: str) -> type:
    """The config section of a verifier backend: its constructor's keyword options
    (lean_env.verifier.backend_option_defaults), typed by their defaults; None-default ones take any value."""
    from typing import Any

    from dataclasses import make_dataclass

    from lean_env.verifier import backend_option_defaults

    fields_ = []
    for name, default in backend_option_defaults(backend).items():
        if isinstance(default, (list, tuple)):
            fields_.append((name, list, field(default_factory=lambda d=default: list(d))))
        elif isinstance(default, (bool, int, float, str)):
            fields_.append((name, type(default), field(default=default)))
        else:
            fields_.append((name, Optional[Any], field(default=None)))
    return make_dataclass(f"{backend}_options", fields_)


def _verifier_config() -> type:
    """VerifierConfig: the shared options, then one section per backend of this build, named after it
    (`verifier.lean_repl.project`, …), made from what the backend itself declares."""
    from lean_env.verifier import _in_build, backend_names

    sections = [(name, _options_section(name)) for name in backend_names() if _in_build(name)]
    return make_dataclass("VerifierConfig", [
        ("backend", str, field(default="prop")),
        # 0: the backend's default (prop: in-process, the checker is fast; lean_repl: CPUs - 1 capped
        # by memory); N: a pool of N worker processes
        ("workers", int, field(default=0)),
        ("timeout", float, field(default=10.0)),  # seconds per proof
        ("cache", bool, field(default=True)),  # verdict cache under <output_dir>/cache/
        *[(name, cls, field(default_factory=cls)) for name, cls in sections],
    ])


VerifierConfig = _verifier_config()


def backend_options(vcfg) -> dict:
    """Constructor options for `get_backend(vcfg.backend, **options)`: the backend's own section,
    without empty strings (which mean "the backend's default")."""
    section = vcfg.get(vcfg.backend) if OmegaConf.is_config(vcfg) else getattr(vcfg, vcfg.backend, None)
    if section is None:
        return {}
    options = OmegaConf.to_container(section, resolve=True) if OmegaConf.is_config(section) else dict(vars(section))
    return {k: v for k, v in options.items() if v != ""}


@dataclass
class SamplerConfig:
    name: str = "hf"
    samples_per_prompt: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    # The embedded benchmark's length budget, in the shipped model's tokens (EOS included): every
    # theorem of its splits has a proof this short, and on ~18 % of them only a rare, compact proof
    # style fits (lean_env/propgen: DESIGN_BUDGET_TOKENS; docs/results.md). Hub provers need far more
    # (the α-DPG authors sample 1,024): set it with the model.
    max_new_tokens: int = 44
    batch_size: int = 256  # sequences per generate() call
    prompts_per_shard: int = 64  # resumption granularity
    seed: int = 0
    # CPU threads while sampling (0: the process's, see `threads`). On a CPU shared with other jobs
    # use 1: a decode step is hundreds of small ops, and each waits for the slowest thread.
    num_threads: int = 0
    # Processes drawing the sample stage's shards at once (hf and power-on-hf samplers), one torch
    # thread each unless num_threads says otherwise: a second process, not a second thread, is what
    # a second core is good for here (docs/results.md, "Throughput"). The samples do not depend on it.
    workers: int = 1
    # sampler=hf only (pipeline/sampling/hf.py): the decode path. auto: the lean Llama decoder
    # (pipeline/sampling/fast.py) where it covers the model, else the transformers decode loop;
    # fast | loop | generate force one (fast refuses a model it does not cover).
    method: str = "auto"
    # sampler=vllm only (see pipeline/sampling/vllm.py): GPUs per engine, the fraction of GPU memory
    # the engine may take (weights + KV cache; leave room for training when both share a GPU), and
    # the longest prompt + completion (0: the model's own limit).
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    max_model_len: int = 0
    # vLLM on the CPU (vLLM's CPU build; pipeline/sampling/vllm.py says why each is needed):
    # chunked prefill (null: off on CPU, vLLM's default on GPU), the KV cache in GiB (0: 2 GiB on
    # CPU, or $VLLM_CPU_KVCACHE_SPACE; on GPU sized by gpu_memory_utilization), and how online
    # training gives the engine the policy's new weights each round (auto: recreate on CPU,
    # inplace on GPU).
    enable_chunked_prefill: Optional[bool] = None
    kv_cache_gib: float = 0.0
    weight_reload: str = "auto"  # auto | inplace | recreate
    # After each reload, the engine's log-probs of reload_check_samples of the round's samples are
    # compared with the new weights' teacher-forced ones: a mean gap per token above
    # reload_check_tol (0: by model.dtype, see RELOAD_CHECK_TOL) stops the run.
    reload_check_samples: int = 4
    reload_check_tol: float = 0.0
    # ---- name: power (conf/sampler/power.yaml; pipeline/sampling/power.py): the policy's evaluation
    # samples from p^gamma by block-wise Metropolis-Hastings. Ignored by the other samplers; the
    # base model's evaluation and the train-split samples are always drawn plainly.
    gamma: float = 4.0  # the power (the paper's α); 1 samples from p itself
    block_size: int = 16  # tokens added per block before its MH steps
    mcmc_steps: int = 4  # MH steps per block
    proposal_temperature: float = 0.0  # 0: 1/gamma, the paper's proposal
    proposal: str = "hf"  # the engine that draws proposals (pipeline/sampling/power.py: HFProposal)


@dataclass
class TrainSettings:
    """The train loop and what every objective shares. Each registered objective adds its own section
    `train.<name>` (its options dataclass in pipeline/objectives/), e.g. `train.alpha_dpg.alpha`."""
    objective: str = "alpha_dpg"  # a registered objective (pipeline/objectives), or none: no training
    mode: str = "offline"  # offline: one round on base samples; online: sample from the policy each round
    rounds: int = 1
    prompts_per_round: int = 0  # 0: every train theorem
    # k samples per prompt: offline, the `sample` stage's sampler.samples_per_prompt; online, the
    # same sampler settings drawn from the current policy each round.
    epochs_per_round: int = 1
    # Policy samples per optimiser step, rounded to whole prompts. DPH-RL's base-model rows come on
    # top: the budget (steps, train_samples) counts the policy's samples only.
    batch_size: int = 64
    # The loss scale, one for every objective (docs/objectives.md, "One loss scale"): each objective's
    # per-sequence terms are summed over the batch and divided by N·loss_norm_tokens
    # (seq_mean_token_sum_norm, the α-DPG authors' choice for their method and their RL baseline),
    # N (seq_mean_token_sum), N with per-sequence token means (seq_mean_token_mean) or the batch's
    # token count (token_mean). Change it for a whole sweep, never for one method.
    loss_agg: str = "seq_mean_token_sum_norm"
    loss_norm_tokens: int = 1024
    lr: float = 1e-4
    # Linear warm-up over this fraction of the run's optimiser steps, then constant (the α-DPG
    # authors' lr_warmup_steps_ratio: 0.05); 0: none.
    warmup_frac: float = 0.0
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # max gradient norm; the train artifact reports how often it bit
    # A batch in which no sample carries signal (no accepted proof, every GRPO advantage 0) has a zero
    # gradient, yet Adam would still move every weight along its momentum, and with sparse rewards
    # most batches are such: the policy would drift from the base with nothing learnt
    # (docs/results.md). True: such steps (and non-finite ones) are not taken, only counted (`skipped_steps`).
    skip_empty_steps: bool = True
    seed: int = 0
    checkpoint_every_steps: int = 20
    # Scale (pipeline/distributed.py). strategy: none (one process, any device) | fsdp (FSDP2 under
    # torchrun, one process per GPU). precision: FSDP's compute dtype, fp32 | bf16 (fp32 master
    # weights either way; one process computes in model.dtype). grad_accum: micro-batches per
    # optimiser step (the same loss and gradient as one batch, one extra no-grad forward).
    # cpu_offload: FSDP keeps sharded weights, gradients and optimiser state on the CPU.
    strategy: str = "none"
    precision: str = "fp32"
    gradient_checkpointing: bool = False
    grad_accum: int = 1
    cpu_offload: bool = False


# The train config: the shared settings plus one section per registered objective.
TrainConfig = make_dataclass(
    "TrainConfig", [(name, options, field(default_factory=options)) for name, options in objectives.sections().items()],
    bases=(TrainSettings,))
TrainConfig.__module__ = __name__
TrainConfig.__doc__ = TrainSettings.__doc__


@dataclass
class BucketsConfig:
    """Difficulty buckets by the base model's solve rate (pipeline/reporting/metrics.py: BucketRule);
    presets in conf/eval/buckets/."""
    easy: float = 0.8
    easy_inclusive: bool = False
    medium: float = 0.2
    medium_inclusive: bool = True
    name: str = "easy > 80 %, medium 20–80 %, hard < 20 % and solved, unsolvable 0/n"


@dataclass
class EvalConfig:
    buckets: BucketsConfig = field(default_factory=BucketsConfig)
    samples_per_prompt: int = 256
    # The k of pass@k; empty: follow samples_per_prompt (powers of two up to n, and n itself), so
    # eval.samples_per_prompt=64 alone gives [1, 2, 4, ..., 64]. See eval_ks.
    ks: list = field(default_factory=list)
    temperature: float = 1.0
    top_p: float = 1.0
    # Trajectories: samples per validation theorem (dataset.valid_path) with which the policy is
    # evaluated before training (round 0) and after every `trajectory_every` rounds and the last;
    # 0: no trajectory. The sweep report draws each method's path through (pass@1, pass@n).
    trajectory_samples: int = 0
    trajectory_every: int = 1


@dataclass
class LoggerConfig:
    backend: str = "wandb"  # wandb | none
    project: str = "dmvr"
    entity: str = ""
    group: str = ""  # the sweep; empty: the experiment name
    mode: str = ""  # online | offline | disabled; empty: WANDB_MODE, else offline


@dataclass
class RootConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    verifier: VerifierConfig = field(default_factory=VerifierConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    experiment: str = "default"
    # The run's name in reports; empty: the objective's own title. An objective with a sweep axis
    # (α-DPG) always gets the axis value it trained with appended (method_label).
    # A line the sweep report prints above its tables (e.g. "too small to conclude" for a first look)
    report_note: str = ""
    method: str = ""
    stages: list = field(default_factory=lambda: list(STAGES))  # default: every stage (pipeline/stages)
    # torch CPU threads of this process (0: torch's default, every core). A sweep running N jobs in
    # parallel on one machine sets cores / N: more threads than cores makes every op wait.
    threads: int = 0
    output_dir: str = "outputs"  # the artifact store and caches live here; runs go to Hydra's run dir
    progress: bool = True


# `train.objective` of inference-time methods (conf/train/none.yaml): the train stage is skipped and
# the policy evaluated is the base model itself, e.g. decoded by the power sampler.
NO_TRAINING = "none"


def eval_ks(ecfg) -> list[int]:
    """The k of pass@k: `eval.ks` when given, else powers of two up to `eval.samples_per_prompt` and n."""
    if ecfg.ks:
        return sorted({int(k) for k in ecfg.ks})
    n = int(ecfg.samples_per_prompt)
    return sorted({2 ** i for i in range(n.bit_length()) if 2 ** i <= n} | {n})


def power_sampling(cfg) -> bool:
    """Does the run evaluate its policy with the power sampler?"""
    return cfg.sampler.name == "power"


def plain_sampler(scfg) -> str:
    """The plain sampler of a sampler config: itself, or the power sampler's proposal engine."""
    return scfg.proposal if scfg.name == "power" else scfg.name


def register() -> None:
    ConfigStore.instance().store(name="base_config", node=RootConfig)


def validate(cfg) -> None:
    """Checks that types alone cannot express; raises ValueError naming the key."""
    unknown = [s for s in cfg.stages if s not in STAGES]
    if unknown:
        raise ValueError(f"stages: unknown stage(s) {unknown}; known: {list(STAGES)}")
    if cfg.train.mode not in ("offline", "online"):
        raise ValueError(f"train.mode={cfg.train.mode!r}: expected 'offline' or 'online'")
    if cfg.train.objective != NO_TRAINING:
        _validate_objective(cfg)
    if cfg.sampler.samples_per_prompt < 1 or cfg.eval.samples_per_prompt < 1:
        raise ValueError("sampler.samples_per_prompt and eval.samples_per_prompt must be >= 1")
    bad_k = [k for k in eval_ks(cfg.eval) if not 1 <= int(k) <= cfg.eval.samples_per_prompt]
    if bad_k:
        raise ValueError(f"eval.ks {bad_k} must lie in [1, eval.samples_per_prompt={cfg.eval.samples_per_prompt}]")
    if cfg.verifier.workers < 0 or cfg.verifier.timeout <= 0:
        raise ValueError(f"verifier.workers={cfg.verifier.workers} must be >= 0 and "
                         f"verifier.timeout={cfg.verifier.timeout} > 0")
    from pipeline.prompts import STYLES

    if cfg.model.prompt_style not in STYLES:
        raise ValueError(f"model.prompt_style={cfg.model.prompt_style!r}: expected one of {sorted(STYLES)}")
    if cfg.model.prompt_style != "prop" and not cfg.dataset.header:
        raise ValueError(f"model.prompt_style={cfg.model.prompt_style} prompts with a Lean file: dataset.header "
                         f"(the benchmark's imports and options) must be set; dataset={cfg.dataset.name} has none")
    t = cfg.train
    from pipeline.distributed import PRECISIONS, STRATEGIES

    if t.strategy not in STRATEGIES:
        raise ValueError(f"train.strategy={t.strategy!r}: expected one of {list(STRATEGIES)}")
    if t.precision not in PRECISIONS:
        raise ValueError(f"train.precision={t.precision!r}: expected one of {list(PRECISIONS)}")
    if t.strategy == "none" and (t.precision != "fp32" or t.cpu_offload):
        raise ValueError("train.precision and train.cpu_offload are FSDP options (train.strategy=fsdp); "
                         "one process computes in model.dtype")
    if t.grad_accum < 1:
        raise ValueError(f"train.grad_accum={t.grad_accum} must be >= 1")
    if t.strategy == "fsdp" and t.mode == "online" and cfg.sampler.name != "vllm":
        # rank 0 samples alone while the other ranks wait; a sharded policy cannot generate on one rank
        raise ValueError("train.strategy=fsdp with train.mode=online needs sampler=vllm")
    if cfg.sampler.name not in ("hf", "vllm", "power"):
        raise ValueError(f"sampler.name={cfg.sampler.name!r}: expected 'hf', 'vllm' or 'power'")
    if cfg.pretrain.processes < 1 or cfg.pretrain.processes > cfg.pretrain.batch_size:
        raise ValueError(f"pretrain.processes={cfg.pretrain.processes} must lie in [1, pretrain.batch_size="
                         f"{cfg.pretrain.batch_size}]")
    if cfg.sampler.workers < 1:
        raise ValueError(f"sampler.workers={cfg.sampler.workers} must be >= 1")
    if cfg.sampler.method not in ("auto", "fast", "loop", "generate"):
        raise ValueError(f"sampler.method={cfg.sampler.method!r}: expected auto, fast, loop or generate")
    if cfg.sampler.weight_reload not in ("auto", "inplace", "recreate"):
        raise ValueError(f"sampler.weight_reload={cfg.sampler.weight_reload!r}: expected auto, inplace or recreate")
    if cfg.sampler.kv_cache_gib < 0 or cfg.sampler.reload_check_samples < 1 or cfg.sampler.reload_check_tol < 0:
        raise ValueError("sampler.kv_cache_gib and sampler.reload_check_tol must be >= 0, "
                         "sampler.reload_check_samples >= 1")
    if not 0.0 < cfg.sampler.gpu_memory_utilization <= 1.0:
        raise ValueError(f"sampler.gpu_memory_utilization={cfg.sampler.gpu_memory_utilization} is outside (0, 1]")
    scfg = cfg.sampler
    if scfg.name == "power":
        if scfg.gamma <= 0 or scfg.block_size < 1 or scfg.mcmc_steps < 0 or scfg.proposal_temperature < 0:
            raise ValueError(f"sampler: power sampling needs gamma > 0 (got {scfg.gamma}), block_size >= 1 "
                             f"({scfg.block_size}), mcmc_steps >= 0 ({scfg.mcmc_steps}) and "
                             f"proposal_temperature >= 0 ({scfg.proposal_temperature})")
        if scfg.proposal == "power":
            raise ValueError("sampler.proposal must be a plain sampler (e.g. hf), not 'power'")
    if cfg.logger.backend not in ("wandb", "none"):
        raise ValueError(f"logger.backend={cfg.logger.backend!r}: expected 'wandb' or 'none'")


def _validate_objective(cfg) -> None:
    t = cfg.train
    if t.objective not in objectives.REGISTRY:
        raise ValueError(f"train.objective={t.objective!r}: expected one of {sorted(objectives.REGISTRY)} or "
                         f"{NO_TRAINING!r}")
    objectives.check(t)
    if t.loss_agg not in objectives.AGG_MODES or t.loss_norm_tokens <= 0:
        raise ValueError(f"train.loss_agg={t.loss_agg!r} must be one of {objectives.AGG_MODES} and "
                         f"train.loss_norm_tokens={t.loss_norm_tokens} > 0")
    if not 0.0 <= t.warmup_frac < 1.0:
        raise ValueError(f"train.warmup_frac={t.warmup_frac} is outside [0, 1)")
    spec = objectives.get_objective(t.objective)
    if spec.fresh_rollouts_per_step and t.epochs_per_round != 1:
        raise ValueError(f"train.epochs_per_round={t.epochs_per_round}: {t.objective} takes one optimiser step per "
                         f"batch of fresh rollouts, so each sample is used once (set 1)")
    if cfg.sampler.top_p < 1.0:
        # nucleus sampling draws from a truncated, renormalised distribution whose log-probs the train
        # stage does not compute: importance weights and ratios would use the wrong proposal
        raise ValueError(f"sampler.top_p={cfg.sampler.top_p}: training needs the exact log-probs of the "
                         f"distribution sampled from, which top_p < 1 changes; sample with top_p=1 "
                         f"(eval.top_p is free)")
    method_label(cfg)  # a label that contradicts the config is an error now, not in the report


def method_label(cfg) -> str:
    """The run's label in reports, from the config actually used (the registry's label of the
    objective, with its sweep-axis value); `method`, when set, names the run instead of the title."""
    if cfg.train.objective == NO_TRAINING:
        if cfg.method:
            return cfg.method
        return f"power γ={cfg.sampler.gamma:g}" if cfg.sampler.name == "power" else "base model (no training)"
    spec = objectives.get_objective(cfg.train.objective)
    return spec.label(objectives.options_of(cfg.train), cfg.method)


def sweep_axis(cfg) -> dict | None:
    """{"name", "value"} of the run's sweep axis (α for α-DPG), or None."""
    if cfg.train.objective == NO_TRAINING:
        return None
    spec = objectives.get_objective(cfg.train.objective)
    if spec.axis is None:
        return None
    return {"name": spec.axis, "value": spec.axis_value(objectives.options_of(cfg.train))}


def to_container(node) -> dict:
    return OmegaConf.to_container(node, resolve=True)
