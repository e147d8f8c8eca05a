"""Throughput of one training step of the train stage's inner loop (score with the policy, objective,
backward, AdamW step) for the tiny_prop architecture on this machine.

    python scripts/bench_train.py [--objective alpha_dpg] [--batch 64] [--prompt-len 40] [--completion-len 80]

Uses random token ids (throughput does not depend on their values) and the model size of
conf/model/tiny_prop.yaml merged onto pipeline.config.ModelConfig.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from omegaconf import OmegaConf

from pipeline.config import ModelConfig, TrainConfig
from pipeline.model import completion_logprobs, resolve_device
from pipeline.objectives import ObjectiveBatch, aggregation_of, compute_loss, options_of


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--objective", default="alpha_dpg")
    ap.add_argument("--batch", type=int, default=64, help="sequences per step")
    ap.add_argument("--group", type=int, default=8, help="samples per prompt")
    ap.add_argument("--prompt-len", type=int, default=40)
    ap.add_argument("--completion-len", type=int, default=80)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="float32")
    args = ap.parse_args()

    conf = Path(__file__).resolve().parents[1] / "conf" / "model" / "tiny_prop.yaml"
    mcfg = OmegaConf.merge(OmegaConf.structured(ModelConfig), OmegaConf.load(conf))
    from transformers import LlamaConfig, LlamaForCausalLM

    device = resolve_device(args.device)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=mcfg.vocab_size, hidden_size=mcfg.hidden_size, intermediate_size=mcfg.intermediate_size,
        num_hidden_layers=mcfg.num_layers, num_attention_heads=mcfg.num_heads, num_key_value_heads=mcfg.num_heads,
        max_position_embeddings=mcfg.max_length, tie_word_embeddings=True)).to(device)
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[args.dtype]
    model.to(dtype)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    cfg = OmegaConf.structured(TrainConfig)
    n, t = args.batch, args.completion_len
    prompts = torch.randint(3, mcfg.vocab_size, (n, args.prompt_len)).tolist()
    completions = torch.randint(3, mcfg.vocab_size, (n, t)).tolist()
    params = sum(p.numel() for p in model.parameters())

    def step():
        logp, mask = completion_logprobs(model, prompts, completions)
        batch = ObjectiveBatch(policy_logp=logp, old_logp=logp.detach(), ref_logp=logp.detach(), mask=mask.float(),
                               reward=(torch.rand(n) < 0.4).float(),
                               group=torch.arange(n) // args.group)
        loss, _ = compute_loss(args.objective, batch, options_of(cfg, args.objective), aggregation_of(cfg))
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.time()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    dt = (time.time() - started) / args.steps
    tokens = n * (args.prompt_len + t)
    print(f"model {params/1e6:.2f}M params on {device} ({args.dtype}), {torch.get_num_threads()} threads; "
          f"objective {args.objective}, {n} sequences x {args.prompt_len}+{t} tokens")
    print(f"train step: {dt*1000:.1f} ms/step, {1/dt:.2f} steps/s, {n/dt:.0f} sequences/s, {tokens/dt:.0f} tokens/s")


if __name__ == "__main__":
    main()
