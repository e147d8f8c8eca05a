"""Models and tokenizers: the embedded tiny model is built here; every model (tiny or hub) is loaded here.

- `train_tokenizer` trains a byte-level BPE (exact round trip of any text: whitespace, indentation,
  Unicode) and wraps it as a `PreTrainedTokenizerFast` with `<pad>`, `<s>` (prepended to every
  encoded text, as Llama tokenizers do) and `</s>`.
- `new_model` builds a transformers Llama from `ModelConfig`.
- `load` goes through `AutoModelForCausalLM` / `AutoTokenizer.from_pretrained` for every model, the
  tiny one included, so nothing downstream special-cases it.
- `completion_logprobs` scores completions by teacher forcing with the same left-padded layout and
  position ids the sampler uses, so its numbers match the sampler's `logp`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch

PAD, BOS, EOS = "<pad>", "<s>", "</s>"

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


# ---------------------------------------------------------------- tokenizer


def train_tokenizer(texts, vocab_size: int):
    """A byte-level BPE trained on `texts` (an iterable of str), as a PreTrainedTokenizerFast."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    # add_prefix_space=False and no normaliser: the bytes of the text are the bytes that come back.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, bos_id)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD, bos_token=BOS, eos_token=EOS,
        clean_up_tokenization_spaces=False,
        padding_side="left",
        model_max_length=1_000_000,
    )


def encode_prompts(tokenizer, prompts: Sequence[str]) -> list[list[int]]:
    """Prompt token ids with the tokenizer's own special tokens (BOS for Llama-style tokenizers)."""
    return [list(ids) for ids in tokenizer(list(prompts), add_special_tokens=True)["input_ids"]]


def encode_completions(tokenizer, completions: Sequence[str], add_eos: bool = True) -> list[list[int]]:
    """Completion token ids (no BOS), followed by EOS when `add_eos`: the training target."""
    ids = tokenizer(list(completions), add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    return [list(x) + ([eos] if add_eos else []) for x in ids]


def decode_completion(tokenizer, ids: Sequence[int]) -> str:
    return tokenizer.decode(list(ids), skip_special_tokens=True, clean_up_tokenization_spaces=False)


# ---------------------------------------------------------------- model


def new_model(model_cfg, tokenizer):
    """A freshly initialised transformers Llama shaped by `model_cfg`."""
    from transformers import LlamaConfig, LlamaForCausalLM

    if model_cfg.hidden_size % model_cfg.num_heads:
        raise ValueError(f"model.hidden_size={model_cfg.hidden_size} is not a multiple of "
                         f"model.num_heads={model_cfg.num_heads}")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=model_cfg.hidden_size,
        intermediate_size=model_cfg.intermediate_size,
        num_hidden_layers=model_cfg.num_layers,
        num_attention_heads=model_cfg.num_heads,
        num_key_value_heads=model_cfg.num_heads,
        max_position_embeddings=model_cfg.max_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        attention_dropout=0.0,
        initializer_range=0.02,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def set_progress(enabled: bool) -> None:
    """Show or hide transformers' own progress bars (loading and writing weights)."""
    from transformers.utils import logging as hf_logging

    (hf_logging.enable_progress_bar if enabled else hf_logging.disable_progress_bar)()


def resolve_device(spec: str = "auto") -> torch.device:
    spec = (spec or "auto").lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"model.device={spec!r} but CUDA is not available")
    return torch.device(spec)


def resolve_dtype(name) -> torch.dtype:
    if isinstance(name, torch.dtype):
        return name
    if name not in DTYPES:
        raise ValueError(f"model.dtype={name!r}: expected one of {list(DTYPES)}")
    return DTYPES[name]


def load(path, device="auto", dtype="float32"):
    """(model in eval mode on `device`, tokenizer with a pad token and left padding) from a folder or hub name."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = resolve_device(device) if isinstance(device, str) else device
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=resolve_dtype(dtype))
    model.to(device)
    model.eval()
    return model, tokenizer


def model_dir(artifact) -> str:
    """Where a pretrain artifact's model lives: its own `model/`, or the external path in its meta."""
    meta_file = Path(artifact.path) / "meta.json"
    meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
    if meta.get("external_path"):
        return str(meta["external_path"])
    return str(Path(artifact.path) / "model")


# ---------------------------------------------------------------- scoring


def pack_left(prompt_ids: Sequence[Sequence[int]], pad_id: int, device=None):
    """Left-pad prompts: (input_ids [N, P], attention_mask [N, P])."""
    n = len(prompt_ids)
    width = max(len(p) for p in prompt_ids)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    for i, p in enumerate(prompt_ids):
        if len(p):
            ids[i, width - len(p):] = torch.as_tensor(list(p), dtype=torch.long)
            mask[i, width - len(p):] = 1
    return ids.to(device), mask.to(device)


def position_ids_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """Position 0 at each row's first real token (what generate() does for left-padded prompts)."""
    return (mask.long().cumsum(-1) - 1).clamp_min(0)


def completion_logprobs(model, prompt_ids: Sequence[Sequence[int]], completion_ids: Sequence[Sequence[int]],
                        *, pad_id: int | None = None, temperature: float = 1.0,
                        return_entropy: bool = False, device=None, buckets: bool | None = None):
    """Teacher-forced per-token log-probs of each completion given its prompt.

    Returns `(logp [N, T], mask [N, T])` (float32 log-probs, bool mask of real completion tokens),
    plus the per-token entropy [N, T] when `return_entropy`. Gradients flow when called outside
    `torch.no_grad()`. `device`: where the inputs go (default: the model's first parameter's
    device; FSDP with CPU offload keeps parameters on the CPU but computes on the GPU).

    Layout. One padded batch (`buckets=False`): prompts left-padded and completions right-padded, so
    every completion starts at the same column and only the last T+1 positions need logits. With
    `buckets` (default: on the CPU without FSDP or gradient checkpointing), two savings, each row's
    numbers the same up to float rounding:
    - each distinct prompt runs once and its keys and values serve every completion of it (the
      model's own KV cache, so any causal LM with full attention qualifies): a group of k samples of
      one theorem pays for its prompt once instead of k times;
    - completions run in a few passes over rows of similar length (`length_buckets`) instead of one
      padded to the longest: sampled completions vary in length several-fold, and in one batch
      padding is about half of the tokens computed.
    Under FSDP every rank must run the same number of forward passes, and on a GPU one wide pass
    costs little more than a narrow one: there the single batch is kept.
    """
    if len(prompt_ids) != len(completion_ids):
        raise ValueError(f"{len(prompt_ids)} prompts but {len(completion_ids)} completions")
    device = device if device is not None else next(model.parameters()).device
    if pad_id is None:
        pad_id = model.config.pad_token_id if model.config.pad_token_id is not None else 0
    if buckets is None:
        buckets = torch.device(device).type == "cpu" and not _is_fsdp(model) and not _checkpointing(model)
    if not buckets:
        return _completion_logprobs(model, prompt_ids, completion_ids, pad_id=pad_id, temperature=temperature,
                                    return_entropy=return_entropy, device=device)
    n = len(prompt_ids)
    t = max(1, max(len(c) for c in completion_ids))
    shared = _full_attention(model)
    # a shared prompt is paid once: rows are bucketed on their completions alone
    groups = length_buckets([0 if shared else len(p) for p in prompt_ids], [len(c) for c in completion_ids])
    if shared:
        parts = _shared_prompt_logprobs(model, prompt_ids, completion_ids, groups, pad_id=pad_id,
                                        temperature=temperature, return_entropy=return_entropy, device=device)
    else:
        parts = [_completion_logprobs(model, [prompt_ids[i] for i in rows], [completion_ids[i] for i in rows],
                                      pad_id=pad_id, temperature=temperature, return_entropy=return_entropy,
                                      device=device) for rows in groups]
    parts = [[torch.nn.functional.pad(x, (0, t - x.shape[1])) for x in out] for out in parts]
    order = torch.tensor([i for rows in groups for i in rows], device=device)
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(n, device=device)
    return tuple(torch.cat([p[k] for p in parts]).index_select(0, inverse) for k in range(len(parts[0])))


def _full_attention(model) -> bool:
    """Does every layer of `model` attend to the whole past (so a prompt's cache can be reused as is)?"""
    try:
        from transformers.cache_utils import get_layer_types_and_kwargs

        layer_types, _ = get_layer_types_and_kwargs(model.config.get_text_config(decoder=True))
    except Exception:  # noqa: BLE001 - not a transformers model, or an unusual config: no sharing
        return False
    return bool(layer_types) and all(t == "full_attention" for t in layer_types)


def _shared_prompt_logprobs(model, prompt_ids, completion_ids, groups, *, pad_id, temperature, return_entropy,
                            device) -> list[tuple]:
    """Per group of rows, completion_logprobs' outputs: every distinct prompt runs once (one padded
    batch, its KV cache kept), then each group's completions run on the cache rows of their prompts."""
    from transformers import DynamicCache

    from pipeline.sampling.hf import _cache_keyword

    distinct = sorted({tuple(p) for p in prompt_ids})
    index = {p: i for i, p in enumerate(distinct)}
    p_ids, p_mask = pack_left([list(p) for p in distinct], pad_id)
    p_ids, p_mask = p_ids.to(device), p_mask.to(device)
    cache = DynamicCache(config=model.config)
    cache_arg = _cache_keyword(model)
    out = model(input_ids=p_ids, attention_mask=p_mask, position_ids=position_ids_from_mask(p_mask),
                use_cache=True, logits_to_keep=1, **{cache_arg: cache})
    first = out.logits[:, -1]  # each prompt's last position predicts its completions' first token
    layers = [(layer.keys, layer.values) for layer in cache.layers]
    prompt_len = p_mask.sum(1)
    results = []
    for rows in groups:
        idx = torch.tensor([index[tuple(prompt_ids[i])] for i in rows], device=device)
        completions = [completion_ids[i] for i in rows]
        c_ids, c_mask = _pad_right(completions, pad_id)
        c_ids, c_mask = c_ids.to(device), c_mask.to(device)
        logits = first.index_select(0, idx)[:, None]
        if c_ids.shape[1] > 1:  # completion token j - 1 predicts token j
            rows_cache = DynamicCache(ddp_cache_data=[(k.index_select(0, idx), v.index_select(0, idx)) for k, v in layers])
            inputs = c_ids[:, :-1]
            # completion padding is attended as ordinary tokens: it lies after every real token
            attn = torch.cat([p_mask.index_select(0, idx), torch.ones_like(inputs)], 1)
            pos = prompt_len.index_select(0, idx)[:, None] + torch.arange(inputs.shape[1], device=device)
            rest = model(input_ids=inputs, attention_mask=attn, position_ids=pos, use_cache=True,
                         **{cache_arg: rows_cache}).logits
            logits = torch.cat([logits, rest], 1)
        results.append(_token_logprobs(logits, c_ids, c_mask, temperature, return_entropy))
    return results


def _pad_right(seqs, pad_id: int):
    t = max(1, max(len(c) for c in seqs))
    ids = torch.full((len(seqs), t), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), t), dtype=torch.long)
    for i, c in enumerate(seqs):
        if len(c):
            ids[i, :len(c)] = torch.as_tensor(list(c), dtype=torch.long)
            mask[i, :len(c)] = 1
    return ids, mask


def _token_logprobs(logits, c_ids, c_mask, temperature: float, return_entropy: bool):
    """(logp, mask[, entropy]) [n, T] of the completion tokens from the logits [n, T, V] predicting them."""
    logits = logits.float()
    if temperature != 1.0:
        logits = logits / temperature
    logz = torch.logsumexp(logits, dim=-1)
    tok = logits.gather(-1, c_ids.unsqueeze(-1)).squeeze(-1)
    mask = c_mask.bool()
    logp = (tok - logz).masked_fill(~mask, 0.0)
    if return_entropy:
        probs = torch.softmax(logits, -1)
        ent = (logz - (probs * logits).sum(-1)).masked_fill(~mask, 0.0)
        return logp, mask, ent
    return logp, mask


def length_buckets(prompt_lens: Sequence[int], completion_lens: Sequence[int], fixed_cost: int = 64) -> list[list[int]]:
    """Row indices cut into groups of similar completion length, minimising the tokens computed
    (rows × (longest prompt + longest completion) per group) plus `fixed_cost` token-equivalents per
    forward pass (its per-op overhead: 30–60 tokens' worth for the tiny model on one CPU thread).
    Rows sorted by completion length, best cut points by dynamic programming."""
    n = len(completion_lens)
    order = sorted(range(n), key=lambda i: (completion_lens[i], prompt_lens[i]))
    best = [0.0] + [float("inf")] * n  # best[j]: cost of the first j rows in sorted order
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        longest_prompt = 0
        for i in range(j - 1, -1, -1):  # the group is sorted rows i .. j-1
            longest_prompt = max(longest_prompt, prompt_lens[order[i]])
            cost = best[i] + (j - i) * (longest_prompt + completion_lens[order[j - 1]]) + fixed_cost
            if cost < best[j]:
                best[j], cut[j] = cost, i
    groups, j = [], n
    while j > 0:
        groups.append(order[cut[j]:j])
        j = cut[j]
    return groups[::-1]


def _checkpointing(model) -> bool:
    """Is activation (gradient) checkpointing on? It recomputes layers without their cache."""
    for name in ("is_activation_checkpointing", "is_gradient_checkpointing"):  # the name changes in transformers 5
        if hasattr(type(model), name) or hasattr(model, name):
            return bool(getattr(model, name))
    return False


def _is_fsdp(model) -> bool:
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # a torch without distributed support
        return False
    return isinstance(model, FSDPModule)


def _completion_logprobs(model, prompt_ids, completion_ids, *, pad_id, temperature, return_entropy, device):
    """completion_logprobs of one padded batch."""
    p_ids, p_mask = pack_left(prompt_ids, pad_id)
    c_ids, c_mask = _pad_right(completion_ids, pad_id)
    t = c_ids.shape[1]
    input_ids = torch.cat([p_ids, c_ids], 1).to(device)
    # Completion padding is attended as ordinary tokens would be: it lies after every real token,
    # so it changes nothing before it; marking it 1 keeps position ids contiguous.
    attn = torch.cat([p_mask, torch.ones_like(c_mask)], 1).to(device)
    pos = position_ids_from_mask(attn)
    out = model(input_ids=input_ids, attention_mask=attn, position_ids=pos, use_cache=False,
                logits_to_keep=t + 1)
    # position P-1+j predicts completion token j
    return _token_logprobs(out.logits[:, :-1, :], c_ids.to(device), c_mask.to(device), temperature, return_entropy)
