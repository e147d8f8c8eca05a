"""One optimiser step of the train stage, run by tests/test_distributed.py, alone or under torchrun.

    python tests/fsdp/step.py MODEL_DIR ROWS.pkl OUT.pt STRATEGY GRAD_ACCUM [TRAIN_OVERRIDES_JSON]

Loads the model, applies `train.strategy`, takes `pipeline.stages.train.optimise_step` on the rows and
writes (loss, grad_norm, the full gradient of every parameter) from rank 0."""

import json
import sys

import pandas as pd
import torch
from omegaconf import OmegaConf

from pipeline import distributed
from pipeline.config import TrainConfig
from pipeline.model import load
from pipeline.stages.train import optimise_step


def full_gradients(model) -> dict:
    """Every parameter's gradient, gathered (a collective under FSDP: every rank calls it)."""
    out = {}
    for name, p in model.named_parameters():
        g = p.grad.full_tensor() if hasattr(p.grad, "full_tensor") else p.grad
        out[name] = g.detach().clone().cpu()
    return out


def main(model_dir, rows_path, out_path, strategy, grad_accum, overrides="{}"):
    torch.set_num_threads(1)
    tcfg = OmegaConf.merge(OmegaConf.structured(TrainConfig),
                           {"strategy": strategy, "grad_accum": int(grad_accum), "lr": 1e-2, **json.loads(overrides)})
    dist_ = distributed.setup()
    model, _ = load(model_dir, "cpu", "float32")
    model = distributed.prepare(model, tcfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=tcfg.lr)
    metrics = optimise_step(model, optimizer, pd.read_pickle(rows_path), tcfg, dist_, torch.device("cpu"))
    grads = full_gradients(model)
    if dist_.main:
        torch.save({"loss": metrics["loss"], "grad_norm": metrics["grad_norm"], "grads": grads,
                    "world": dist_.world}, out_path)
    dist_.barrier()
    if dist_.active:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:])
