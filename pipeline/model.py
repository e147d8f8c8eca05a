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
                        return_entropy: bool = False, device=None):
    """Teacher-forced per-token log-probs of each completion given its prompt.

    Prompts are left-padded and completions right-padded, so every completion starts at the same
    column and only the last T+1 positions need logits. Returns `(logp [N, T], mask [N, T])`
    (float32 log-probs, bool mask of real completion tokens), plus the per-token entropy [N, T] when
    `return_entropy`. Gradients flow when called outside `torch.no_grad()`. `device`: where the
    inputs go (default: the model's first parameter's device; FSDP with CPU offload keeps
    parameters on the CPU but computes on the GPU).
    """
    if len(prompt_ids) != len(completion_ids):
        raise ValueError(f"{len(prompt_ids)} prompts but {len(completion_ids)} completions")
    device = device if device is not None else next(model.parameters()).device
    if pad_id is None:
        pad_id = model.config.pad_token_id if model.config.pad_token_id is not None else 0
    n = len(prompt_ids)
    t = max(1, max(len(c) for c in completion_ids))
    p_ids, p_mask = pack_left(prompt_ids, pad_id)
    c_ids = torch.full((n, t), pad_id, dtype=torch.long)
    c_mask = torch.zeros((n, t), dtype=torch.long)
    for i, c in enumerate(completion_ids):
        if len(c):
            c_ids[i, :len(c)] = torch.as_tensor(list(c), dtype=torch.long)
            c_mask[i, :len(c)] = 1
    input_ids = torch.cat([p_ids, c_ids], 1).to(device)
    # Completion padding is attended as ordinary tokens would be: it lies after every real token,
    # so it changes nothing before it; marking it 1 keeps position ids contiguous.
    attn = torch.cat([p_mask, torch.ones_like(c_mask)], 1).to(device)
    pos = position_ids_from_mask(attn)
    out = model(input_ids=input_ids, attention_mask=attn, position_ids=pos, use_cache=False,
                logits_to_keep=t + 1)
    logits = out.logits[:, :-1, :].float()  # position P-1+j predicts completion token j
    if temperature != 1.0:
        logits = logits / temperature
    logz = torch.logsumexp(logits, dim=-1)
    target = c_ids.to(device)
    tok = logits.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    mask = c_mask.to(device).bool()
    logp = (tok - logz).masked_fill(~mask, 0.0)
    if return_entropy:
        probs = torch.softmax(logits, -1)
        ent = (logz - (probs * logits).sum(-1)).masked_fill(~mask, 0.0)
        return logp, mask, ent
    return logp, mask
