"""Training objectives: α-DPG (DMVR) and the baselines beside it, as pure functions of tensors.

Every module of this package registers its objectives where it defines them (`base.register_objective`),
each with its own options dataclass, which becomes the config section `train.<name>`. This package
imports every module in it, so adding an objective is one new module here (and one conf/train/*.yaml);
nothing else names it. The rest of the pipeline asks the registry (`get_objective(name)`) what it needs
to know: the sweep axis and label, whether it needs base-model samples, offline or online, one
step per rollout batch, the temperature its log-probs are read at. The mathematics is in
docs/objectives.md; pipeline/objectives/README.md lists the objectives and their options.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import fields, is_dataclass

from torch import Tensor

from pipeline.objectives.base import (AGG_MODES, REGISTRY, Aggregation, Objective, ObjectiveBatch, get_objective,
                                      register_objective)

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in ("base", "common"):
        importlib.import_module(f"{__name__}.{_module.name}")


def compute_loss(name: str, batch: ObjectiveBatch, options=None, agg: Aggregation | None = None
                 ) -> tuple[Tensor, dict[str, float]]:
    """The registered objective `name` on `batch`: (scalar loss to minimise, float diagnostics).
    `options`: its options (dataclass or config node; default: the dataclass defaults); `agg`: the
    loss scale (default: `Aggregation()`, token sum / 1024)."""
    spec = get_objective(name)
    return spec.loss(batch, spec.options() if options is None else options, agg or Aggregation())


def options_of(train_cfg, name: str | None = None):
    """The options of objective `name` (default: `train_cfg.objective`) from the train config, as its
    dataclass (an OmegaConf node is converted, so the loss reads plain attributes)."""
    name = name or train_cfg.objective
    spec = get_objective(name)
    section = getattr(train_cfg, name)
    if is_dataclass(section):
        return section
    from omegaconf import OmegaConf

    values = OmegaConf.to_container(section, resolve=True)
    return spec.options(**values)


def aggregation_of(train_cfg) -> Aggregation:
    return Aggregation(str(train_cfg.loss_agg), int(train_cfg.loss_norm_tokens))


def check(train_cfg) -> None:
    """The chosen objective's options and mode; raises ValueError naming the key (`train.<name>.<field>`)."""
    spec = get_objective(train_cfg.objective)
    if train_cfg.mode not in spec.modes:
        raise ValueError(f"train.mode={train_cfg.mode!r}: objective {spec.name} trains {' or '.join(spec.modes)} only")
    options = options_of(train_cfg)
    if hasattr(options, "check"):
        try:
            options.check()
        except ValueError as e:
            raise ValueError(f"train.{spec.name}.{e}") from None


def sections() -> dict[str, type]:
    """{objective name: its options dataclass}, the sections of the train config."""
    return {name: spec.options for name, spec in sorted(REGISTRY.items())}


def option_names(name: str) -> list[str]:
    return [f.name for f in fields(get_objective(name).options)]


__all__ = ["AGG_MODES", "Aggregation", "Objective", "ObjectiveBatch", "REGISTRY", "aggregation_of", "check",
           "compute_loss", "get_objective", "option_names", "options_of", "register_objective", "sections"]
