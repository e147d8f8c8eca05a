"""Multi-process training with PyTorch FSDP, for the train stage only.

Launch: `torchrun --nproc-per-node N -m pipeline stages=[train] train.strategy=fsdp ...`. torchrun
sets RANK / WORLD_SIZE / LOCAL_RANK; without them (a plain `python -m pipeline`) everything here is a
no-op and training is the single-process loop.

- `setup()` joins the process group (NCCL on GPUs, gloo on CPUs) and pins each rank to its GPU.
- `prepare(model, tcfg, frozen=...)` applies FSDP2 (`torch.distributed.fsdp.fully_shard`): every
  decoder layer is its own shard unit, then the root. bf16 precision keeps fp32 master weights and
  optimiser state, computes in bf16 and reduces gradients in fp32. `cpu_offload` keeps the sharded
  parameters, gradients and optimiser state on the CPU. The frozen reference model is sharded the
  same way: 1/N of its weights per rank, no gradients and no optimiser state at all.
- `rank_share(groups, ...)` splits one optimiser step's prompts over ranks and micro-batches
  (gradient accumulation); the train stage evaluates the whole batch's loss on each piece with the
  piece's rows live (pipeline/stages/train.py, `optimise_step`), so the summed, rank-averaged
  gradient is the single-process gradient of the whole batch for every objective.
- `full_state_dict` / `load_full_state_dict` go through `torch.distributed.checkpoint.state_dict`,
  so checkpoints and the saved model are ordinary full (unsharded) state dicts written by rank 0.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist

STRATEGIES = ("none", "fsdp")
PRECISIONS = ("fp32", "bf16")


@dataclass
class Dist:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def mean(self, value: float) -> float:
        """The mean of a float over ranks (the value itself in one process)."""
        if not self.active:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=_collective_device())
        dist.all_reduce(t)
        return float(t.item()) / self.world


def setup() -> Dist:
    """Join torchrun's process group if launched by torchrun (else a one-process Dist)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        # Rank 0 alone samples and verifies a round while the others wait at a barrier: allow hours,
        # not the default minutes, before a wait counts as a hang.
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo",
                                timeout=timedelta(hours=3))
    return Dist(rank=dist.get_rank(), world=dist.get_world_size())


def _collective_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def prepare(model: torch.nn.Module, tcfg, *, frozen: bool = False) -> torch.nn.Module:
    """The model as `tcfg.strategy` wants it: itself (`none`) or sharded with FSDP2 (`fsdp`)."""
    if tcfg.gradient_checkpointing and not frozen:
        # recompute each layer's activations in backward: memory per layer instead of per token
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if frozen:
        model.requires_grad_(False)
    if tcfg.strategy == "none":
        return model
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard

    kwargs = {}
    if tcfg.precision == "bf16":
        kwargs["mp_policy"] = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    if tcfg.cpu_offload:
        kwargs["offload_policy"] = CPUOffloadPolicy()
    for layer in _decoder_layers(model):
        fully_shard(layer, **kwargs)
    fully_shard(model, **kwargs)
    return model


def _decoder_layers(model) -> list[torch.nn.Module]:
    # transformers causal LMs keep their blocks in `model.model.layers` (Llama, Qwen, DeepSeek, Mistral)
    layers = getattr(getattr(model, "model", None), "layers", None)
    if layers is None:
        raise ValueError(f"FSDP: cannot find the decoder layers of {type(model).__name__} (expected model.model.layers)")
    return list(layers)


def rank_share(groups: list[np.ndarray], rank: int, world: int, micro_batches: int) -> list[tuple[np.ndarray, bool]]:
    """This rank's micro-batches of one optimiser step, as (row indices, live).

    `groups` are the step's prompts (each an array of row indices). Prompts are dealt to ranks
    round-robin, then each rank's prompts to `micro_batches` micro-batches; a prompt is never split.
    Every rank runs the same number of micro-batches (FSDP runs collectives in each forward and
    backward): an empty one reuses the first prompt and is not live (it contributes no gradient).
    """
    mine = groups[rank::world]
    pieces = [mine[i::micro_batches] for i in range(micro_batches)]
    return [(np.concatenate(piece), True) if piece else (groups[0], False) for piece in pieces]


def full_state_dict(model, optimizer=None):
    """(model, optimiser) full state dicts on CPU: gathered from every rank under FSDP (a collective:
    every rank calls it), the plain state dicts otherwise."""
    if not _is_sharded(model):
        return model.state_dict(), (optimizer.state_dict() if optimizer is not None else None)
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    if optimizer is None:
        from torch.distributed.checkpoint.state_dict import get_model_state_dict
        return get_model_state_dict(model, options=options), None
    return get_state_dict(model, optimizer, options=options)


def load_full_state_dict(model, optimizer, model_state, optimizer_state) -> None:
    """Inverse of `full_state_dict`: every rank passes the same full state dicts."""
    if not _is_sharded(model):
        model.load_state_dict(model_state)
        optimizer.load_state_dict(optimizer_state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

    set_state_dict(model, optimizer, model_state_dict=model_state, optim_state_dict=optimizer_state,
                   options=StateDictOptions(full_state_dict=True))


def _is_sharded(model) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def grad_norm_value(norm) -> float:
    # under FSDP2 clip_grad_norm_ returns a DTensor: its full value is the global norm
    return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
