"""The pipeline's stages: each is a function `run(ctx) -> Artifact` in a module of this package.

`STAGES` is the one list of them, in the order `python -m pipeline` runs them by default; the
Makefile's targets, config validation and the sweep's shared-stage callback all read it.
A stage asks for its inputs by calling upstream stages through `ctx.stage(name)`, so
`stages=[evaluate]` alone builds (or reuses) everything evaluate needs.
"""

from __future__ import annotations

import importlib
from typing import Callable

# name -> (module in this package, function). `evaluate_base` is the base model's evaluation alone
# (`evaluate` evaluates the trained policy and, through it, the base model too).
STAGES: dict[str, tuple[str, str]] = {
    "pretrain": ("pretrain", "run"),
    "sample": ("sample", "run"),
    "verify": ("verify", "run"),
    "train": ("train", "run"),
    "evaluate_base": ("evaluate", "run_base"),
    "evaluate": ("evaluate", "run"),
    "bucket": ("bucket", "run"),
    "report": ("report", "run"),
}


def resolve(name: str) -> Callable:
    """The `run` function of stage `name` (its module imported on first use)."""
    if name not in STAGES:
        raise ValueError(f"unknown stage {name!r}; known: {list(STAGES)}")
    module, function = STAGES[name]
    return getattr(importlib.import_module(f"{__name__}.{module}"), function)
