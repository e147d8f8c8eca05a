"""One prepared check of the GPU paths, for a node with torch (CUDA) and transformers but no package index.

    python scripts/gpu_check.py [--wheels DIR] [--out DIR]        # on the GPU node, from the checkout
    python scripts/gpu_check.py --dry-run                          # tiny sizes on the CPU (CI runs this)

What it runs, each through the pipeline's own stages (in this process, one artifact store):
1. pretrain the embedded base model (tiny_prop) on the device: seconds per 1,000 steps;
2. the `hf` sampler on the device: base samples of the train split, tokens/s;
3. one offline α-DPG and one GRPO training round in bf16 on the device: seconds per optimiser step;
4. one FSDP training round under torchrun when the machine has more than one GPU (else it says so);
then prints one summary table. A failing check is reported in the table and the others still run;
the exit status is 1 when any check failed.

Without a package index the project's pure-Python needs (hydra-core, omegaconf, antlr4, pandas,
pyarrow and their small dependencies; about 56 MB) travel as wheels: make the folder on a machine
that has the index with `scripts/gpu_wheels.sh DIR [PYTHON_VERSION]`, copy it with the checkout,
and pass `--wheels DIR`: whatever of them is missing is installed with
`pip install --no-index --find-links DIR ...` before anything else is imported.
The full check takes a few minutes on one H100 (the budget is 8); `--pretrain-steps` and
`--train-theorems` scale it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# import name -> what to install: the project's needs beyond torch and transformers
NEEDS = {"hydra": "hydra-core", "omegaconf": "omegaconf", "pandas": "pandas", "pyarrow": "pyarrow"}


def ensure_packages(wheels: str | None) -> None:
    missing = [pkg for mod, pkg in NEEDS.items() if importlib.util.find_spec(mod) is None]
    if not missing:
        return
    if not wheels:
        sys.exit(f"gpu_check: missing {', '.join(missing)}; make a wheel folder with scripts/gpu_wheels.sh DIR "
                 f"where a package index is reachable and pass --wheels DIR")
    cmd = [sys.executable, "-m", "pip", "install", "--no-index", "--find-links", wheels, *missing]
    print("gpu_check: installing from", wheels, ":", " ".join(missing), flush=True)
    if subprocess.run(cmd).returncode != 0:
        sys.exit(f"gpu_check: `{' '.join(cmd)}` failed (see pip's message above): is {wheels} the folder "
                 f"scripts/gpu_wheels.sh made for this Python ({sys.version_info.major}.{sys.version_info.minor})?")


def sizes(dry_run: bool, args) -> dict:
    """Hydra overrides for each part; the dry run shrinks everything to seconds on a CPU."""
    if dry_run:
        model = ["model=tiny_prop_scratch", "model.hidden_size=32", "model.intermediate_size=64", "model.num_layers=1", "model.num_heads=1",
                 "model.vocab_size=384"]
        return {"model": model,
                "pretrain": ["pretrain.steps=20", "pretrain.extra_theorems=100", "pretrain.proofs_per_theorem=4",
                             "pretrain.batch_size=16", "pretrain.checkpoint_every=10"],
                "data": ["dataset.train_limit=8", "sampler.samples_per_prompt=4", "sampler.max_new_tokens=24",
                         "sampler.prompts_per_shard=8"],
                "train": ["train.batch_size=16", "train.checkpoint_every_steps=100"]}
    return {"model": ["model=tiny_prop_scratch"],  # pretrained here, in the shipped model's shape
            "pretrain": [f"pretrain.steps={args.pretrain_steps}", "pretrain.checkpoint_every=100000"],
            "data": [f"dataset.train_limit={args.train_theorems}", "sampler.samples_per_prompt=16",
                     "sampler.batch_size=512", "sampler.prompts_per_shard=256"],
            "train": ["train.batch_size=64", "train.checkpoint_every_steps=100000"]}


class Check:
    """Runs the parts, each timed and fenced, and collects one table row per part."""

    def __init__(self, out: Path, device: str, dtype: str, size: dict):
        self.out, self.device, self.dtype, self.size = out, device, dtype, size
        self.rows: list[tuple[str, str, str, str]] = []

    def overrides(self, *extra: str) -> list[str]:
        return [f"output_dir={self.out}", "progress=false", "logger.backend=none", f"model.device={self.device}",
                f"model.dtype={self.dtype}", *self.size["model"], *self.size["pretrain"], *self.size["data"],
                *self.size["train"], *extra]

    def pipeline(self, *extra: str):
        """Run `stages` in this process; returns {stage: artifact}."""
        from hydra import compose, initialize_config_dir

        from pipeline.__main__ import build_context, run_stages

        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            cfg = compose("config", overrides=self.overrides(*extra))
        run_dir = self.out / "runs" / f"{len(self.rows):02d}"
        return run_stages(build_context(cfg, run_dir))

    def part(self, name: str, fn) -> None:
        started = time.time()
        try:
            figure, detail = fn()
            status = "ok"
        except SkipPart as e:
            status, figure, detail = "skipped", "-", str(e)
        except Exception as e:  # noqa: BLE001 - one failing part must not cost the others
            traceback.print_exc()
            status, figure, detail = "FAILED", "-", f"{type(e).__name__}: {e}"[:160]
        self.rows.append((name, status, figure, f"{detail} [{time.time() - started:.0f}s]"))
        print(f"[gpu_check] {name}: {status} {figure} {detail}", flush=True)

    def table(self) -> str:
        head = ("check", "status", "figure", "detail")
        widths = [max(len(r[i]) for r in [head, *self.rows]) for i in range(3)]
        lines = [" | ".join(h.ljust(w) for h, w in zip(head[:3], widths)) + " | " + head[3]]
        lines.append("-+-".join("-" * w for w in widths) + "-+-" + "-" * 6)
        lines += [" | ".join(c.ljust(w) for c, w in zip(r[:3], widths)) + " | " + r[3] for r in self.rows]
        return "\n".join(lines)


class SkipPart(Exception):
    pass


def meta(art) -> dict:
    return json.loads((Path(art.path) / "meta.json").read_text())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU: checks the script itself")
    ap.add_argument("--device", default=None, help="cuda (default) or cpu")
    ap.add_argument("--dtype", default="bfloat16", help="model.dtype of the training checks")
    ap.add_argument("--wheels", default=None, help="folder of wheels for what the node lacks (scripts/gpu_wheels.sh)")
    ap.add_argument("--out", default=None, help="artifact store and runs (default: a fresh folder under outputs/)")
    ap.add_argument("--pretrain-steps", type=int, default=1000)
    ap.add_argument("--train-theorems", type=int, default=256, help="train theorems sampled (16 samples each)")
    ap.add_argument("--fsdp-procs", type=int, default=0,
                    help="processes for the FSDP check (0: every GPU when there are 2 or more, else skipped)")
    args = ap.parse_args(argv)
    ensure_packages(args.wheels)
    sys.path.insert(0, str(ROOT))  # the checkout, installed or not
    import torch

    device = args.device or ("cpu" if args.dry_run else "cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check: CUDA is not available here (use --dry-run or --device cpu to check the script on a CPU)",
              file=sys.stderr)
        return 2
    out = Path(args.out or ROOT / "outputs" / f"gpu_check-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    check = Check(out, device, args.dtype, sizes(args.dry_run, args))
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    name = torch.cuda.get_device_name(0) if gpus else "CPU"
    print(f"[gpu_check] torch {torch.__version__}, {gpus} GPU(s): {name}; store {out}", flush=True)

    def pretrain():
        art = check.pipeline("stages=[pretrain]")["pretrain"]
        m = meta(art)
        per_1000 = m["train_seconds"] / m["steps"] * 1000
        return f"{per_1000:.1f} s/1000 steps", (f"{m['steps']} steps, loss {m['final_loss']:.3f}, "
                                               f"{m['tokens_per_s']:.0f} tok/s, {m['parameters']:,} params")

    def sample():
        art = check.pipeline("stages=[sample]")["sample"]
        m = meta(art)
        return f"{m['tokens_per_s']:.0f} tok/s", f"{m['samples']} samples, {m['samples_per_s']:.0f} samples/s"

    def train(objective):
        def run():
            art = check.pipeline("stages=[train]", f"train={objective}")["train"]
            m = meta(art)
            if not m["steps"]:
                raise RuntimeError("no optimiser step was taken")
            return f"{m['seconds'] / m['steps']:.3f} s/step", f"{m['steps']} steps ({args.dtype}, {device})"
        return run

    def fsdp():
        procs = args.fsdp_procs or (gpus if gpus >= 2 else 0)
        if procs < 2:
            raise SkipPart(f"{gpus} GPU on this machine: FSDP needs 2 or more processes (--fsdp-procs N)")
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(procs),
               # offline: online FSDP samples with vLLM (rank 0 alone), which is not what this checks
               "-m", "pipeline", "stages=[train]", "train=alpha_dpg", *check.overrides(), "train.mode=offline",
               "train.rounds=1", "train.strategy=fsdp",
               f"train.precision={'bf16' if args.dtype == 'bfloat16' else 'fp32'}", "train.batch_size=128"]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               "OMP_NUM_THREADS": "1"}
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            errors = [ln for ln in done.stderr.splitlines() if re.match(r"\w+(Error|Exception): ", ln)]
            raise RuntimeError(f"torchrun exited {done.returncode}: {errors[0] if errors else done.stderr[-300:]}")
        work = next(line.split()[-1] for line in done.stderr.splitlines()[::-1] if line.split()[:1] == ["train"])
        m = json.loads((Path(work) / "meta.json").read_text())
        return f"{m['seconds'] / max(1, m['steps']):.3f} s/step", f"{m['steps']} steps on {m['world_size']} ranks"

    check.part("pretrain (embedded base model)", pretrain)
    check.part("hf sampler", sample)
    check.part("train step: alpha-DPG", train("alpha_dpg"))
    check.part("train step: GRPO", train("grpo"))
    check.part("FSDP train step", fsdp)
    print(f"\n== gpu_check: torch {torch.__version__} on {name} ({device}, {gpus} GPU)\n{check.table()}", flush=True)
    return 1 if any(r[1] == "FAILED" for r in check.rows) else 0


if __name__ == "__main__":
    sys.exit(main())
