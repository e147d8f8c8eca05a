"""Hydra callbacks: shared work before a multirun's jobs, the sweep report after them.

`PrepareShared` (on_multirun_start) builds what every job of a sweep needs and no job owns — the
base model (`pretrain`), the base model's samples and verdicts on the train split, the base
evaluation — in the launching process with all its CPU threads, before the launcher starts the jobs.
Without it the first job would build them with the few threads a parallel job gets while the others
wait on the store's locks. The jobs then find them in the store ("reused"). It turns itself off when
the launcher submits to Slurm (`hydra/launcher=submitit_slurm`): a login node must not compute, so
the jobs build the shared artifacts themselves, the first under the store's lock while the others
wait for it (to spend no GPU time waiting, build them first as one job: see the README). Force it
either way with `hydra.callbacks.prepare_shared.enabled=true|false`.

`SweepReport` (on_multirun_end) writes the sweep report. Both are registered in an experiment
config (`# @package _global_`):

    hydra:
      callbacks:
        sweep_report:
          _target_: pipeline.callbacks.SweepReport

Hydra skips `on_multirun_end` when any job raised (its sweeper re-raises the first failure after
all jobs have run), which is exactly when a report over the finished jobs is most wanted; so the
callback also registers an exit hook at the start of the multirun that, if the normal end never
came, runs `python -m pipeline.reporting` in a fresh process. Either way a failing report is
printed clearly and never changes what the jobs left behind or the exit status of the multirun.
"""

from __future__ import annotations

import atexit
import copy
import os
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict


class PrepareShared(Callback):
    def __init__(self, enabled: bool | str = "auto", stages: list | None = None, threads: int = 1,
                 workers: int = 0):
        self.enabled = enabled
        # torch threads per process for the shared stages (0 = every core). One: on the tiny model a
        # second intra-op thread gains little on free cores and costs several-fold on busy ones
        # (docs/results.md, "Throughput"); the cores are used by processes instead:
        self.threads = threads
        # sampler.workers for the shared stages' sampling (train-split samples, base evaluation):
        # processes drawing shards at once, 0 = one per core
        self.workers = workers
        self.stages = list(stages) if stages is not None else ["pretrain", "verify", "evaluate_base"]

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.should_run(config):
            return
        from pipeline.context import build_context, run_stages
        from pipeline.stages import STAGES

        unknown = [s for s in self.stages if s not in STAGES]
        if unknown:
            raise ValueError(f"PrepareShared: unknown stage(s) {unknown}; known: {list(STAGES)}")
        cfg = copy.deepcopy(config)
        with open_dict(cfg):
            del cfg["hydra"]
        cfg.threads = self.threads
        cfg.sampler.workers = int(self.workers) or (os.cpu_count() or 1)
        run_dir = Path(str(config.hydra.sweep.dir)).resolve() / SHARED_DIR
        print(f"\n[sweep] building what every job shares ({', '.join(self.stages)}) in {run_dir}", file=sys.stderr, flush=True)
        ctx = build_context(cfg, run_dir, job_type="shared")
        try:
            run_stages(ctx, self.stages)
        finally:
            ctx.log.finish()

    def should_run(self, config: DictConfig) -> bool:
        if self.enabled == "auto":
            target = str(OmegaConf.select(config, "hydra.launcher._target_", default="") or "")
            if "SlurmLauncher" in target:
                print("[sweep] Slurm launcher: the jobs build the shared stages themselves (prepare_shared off)",
                      file=sys.stderr, flush=True)
                return False
            return True
        return bool(self.enabled)


SHARED_DIR = "shared"  # under the sweep folder: the PrepareShared run's config and metrics


class SweepReport(Callback):
    def __init__(self, wandb_mode: str | None = None, project: str | None = None, group: str | None = None):
        # None: follow the run's own logger config (`logger.backend/mode/project/group`)
        self.wandb_mode = wandb_mode
        self.project = project
        self.group = group
        self._pending: dict | None = None  # what to report, kept from the start of the multirun

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._pending = report_arguments(config, self.wandb_mode, self.project, self.group)
        atexit.register(self._report_at_exit)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        arguments = report_arguments(config, self.wandb_mode, self.project, self.group)
        self._pending = None
        run_report_guarded(**arguments)

    def _report_at_exit(self) -> None:
        if self._pending is None:
            return  # on_multirun_end ran
        arguments, self._pending = self._pending, None
        print(f"\nsweep report: the multirun ended early (a job failed?); reporting the finished jobs in "
              f"{arguments['sweep_dir']}", file=sys.stderr, flush=True)
        # In a fresh interpreter: at exit, W&B's own exit hook has already closed its service and
        # its media folder in this one.
        command = [sys.executable, "-m", "pipeline.reporting", str(arguments["sweep_dir"]),
                   "--project", arguments["project"]]
        command += ["--wandb-mode", arguments["wandb_mode"]] if arguments["wandb_mode"] else []
        command += ["--group", arguments["group"]] if arguments["group"] else []
        if subprocess.run(command, check=False).returncode != 0:
            print(f"sweep report FAILED (see above); the jobs' results are untouched in {arguments['sweep_dir']}; "
                  f"rerun it alone with: python -m pipeline.reporting {arguments['sweep_dir']}",
                  file=sys.stderr, flush=True)


def report_arguments(config: DictConfig, wandb_mode: str | None, project: str | None, group: str | None) -> dict:
    """Sweep folder and W&B settings: the callback's own arguments first, then the logger config."""
    backend = OmegaConf.select(config, "logger.backend", default="wandb")
    mode = wandb_mode or ("disabled" if backend == "none" else OmegaConf.select(config, "logger.mode", default=None))
    return {
        "sweep_dir": Path(str(config.hydra.sweep.dir)).resolve(),
        "wandb_mode": mode or None,  # "" in the config means: follow WANDB_MODE, else offline
        "project": project or OmegaConf.select(config, "logger.project", default=None) or "dmvr",
        "group": group or OmegaConf.select(config, "logger.group", default=None)
        or OmegaConf.select(config, "experiment", default=None) or None,
    }


def run_report_guarded(sweep_dir: Path, **kwargs: Any) -> dict | None:
    """Run the sweep report; on any failure print why and how to rerun it, and return None."""
    from pipeline.reporting.sweep import report_sweep

    try:
        return report_sweep(sweep_dir, **kwargs)
    except Exception:  # the report must never mask the jobs' own results
        print("\n" + "=" * 78 + "\nsweep report FAILED (the jobs' results are untouched in "
              f"{sweep_dir}):\n{traceback.format_exc()}"
              f"rerun it alone with: python -m pipeline.reporting {sweep_dir}\n" + "=" * 78,
              file=sys.stderr, flush=True)
        return None
