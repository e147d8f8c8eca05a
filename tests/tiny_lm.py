"""A tiny Llama fitted for a few steps to a handful of proofs: the model the sampler tests draw from.

Fitting makes EOS come up within a short budget now and then, which the sampler's finished/unfinished
paths need; the sizes are the callers' (a one-layer model is enough for the power sampler)."""

from types import SimpleNamespace

import torch

from pipeline.model import completion_logprobs, encode_completions, encode_prompts, new_model, train_tokenizer


def fit_tiny_lm(prompts: list[str], completions: list[str], *, num_layers: int, max_length: int, steps: int):
    """(model, tokenizer): a fresh 32-wide Llama, `steps` AdamW steps of NLL on the completions, eval mode."""
    tok = train_tokenizer(prompts + completions * 4, 300)
    torch.manual_seed(0)
    model = new_model(SimpleNamespace(hidden_size=32, intermediate_size=64, num_layers=num_layers, num_heads=2,
                                      max_length=max_length), tok)
    p, c = encode_prompts(tok, prompts), encode_completions(tok, completions)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(steps):
        lp, mask = completion_logprobs(model, p, c)
        loss = -lp.sum() / mask.sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return model, tok
