"""The `pretrain` stage: the base model every other stage starts from.

With `model.path` set (a hub name or a local folder) the artifact only records that path, and
`pipeline.model.model_dir` hands it to `from_pretrained`. Otherwise (`model=tiny_prop`) it builds
the embedded model from scratch:

1. corpus: the train split's theorems plus the first `pretrain.extra_theorems` of
   `pretrain.extra_path` (shipped generator theorems, easier on average than the splits: see
   scripts/make_prop_splits.py), with every theorem of the eval split excluded up to renaming
   (`canonical_key`), each with
   `proofs_per_theorem` proofs drawn from the proof generator's style prior;
2. a byte-level BPE tokenizer trained on the corpus text;
3. a Llama trained from scratch on `prompt -> completion + EOS` (loss on the completion tokens, plus
   `prompt_loss_weight` × the loss on the statement's tokens),
   AdamW with linear warm-up and cosine decay, length-bucketed batches;
4. `model/` (save_pretrained of model and tokenizer) and `corpus_stats.json`.

Resumption: the corpus and the tokenizer are written to `art.work` before training, and a checkpoint
(model, optimiser, scheduler, RNG states, step) every `checkpoint_every` steps; the batch of step s
is a pure function of (seed, s), so a run killed at any point and restarted ends with the same
weights as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from pipeline.config import to_container
from pipeline.context import Context
from pipeline.data import load_theorems, resolve_path
from pipeline.faults import maybe_die
from pipeline.store import Artifact, read_parquet, write_json, write_parquet

VERSION = 2  # 2: one log-softmax for both losses (pretrain_loss): the same loss, other float rounding
EXTERNAL_VERSION = 1  # an external model's artifact only records its path (and a local folder's content)
ARCH_KEYS = ("vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads", "max_length")


def run(ctx: Context) -> Artifact:
    cfg = ctx.cfg
    if cfg.model.path:
        return _external(ctx)
    pcfg = {k: v for k, v in to_container(cfg.pretrain).items() if k != "num_threads"}
    key_cfg = {
        "model": {k: cfg.model[k] for k in ARCH_KEYS},
        "pretrain": pcfg,
        "dataset": {"train": _file_key(cfg.dataset.train_path), "eval": _file_key(cfg.dataset.eval_path),
                    "train_limit": cfg.dataset.train_limit, "prompt_template": cfg.dataset.prompt_template,
                    "proof_prefix": cfg.dataset.proof_prefix},
    }

    def make(art: Artifact) -> dict:
        return {"model_name": cfg.model.name, **Pretrainer(ctx, art).fit()}

    def detail(art: Artifact) -> str:
        meta = art.meta
        return f"{meta['steps']} steps, loss {meta['final_loss']:.3f}, {meta['seconds']:.0f}s"

    return ctx.build("pretrain", key_cfg, make, version=VERSION, detail=detail)


def _external(ctx: Context) -> Artifact:
    """A hub name or local folder: the artifact only records where the model is, once checked. A
    local folder's key holds its files' content hash, so a model replaced in place (a new shipped
    model, say) is a new key and nothing computed from the old one is reused."""
    target = check_model_path(ctx.cfg.model.path)
    key = {"external": target}
    if Path(target).is_dir():
        key["content"] = folder_hash(Path(target))

    def make(art: Artifact) -> dict:
        return {"external_path": target, "model_name": ctx.cfg.model.name}

    return ctx.build("pretrain", key, make, version=EXTERNAL_VERSION, detail=lambda art: f"external model {target}")


# Files of a model folder that say how it was made, not what it is: a new provenance note or
# training log must not invalidate everything computed from the model.
_NOT_THE_MODEL = (".md", ".csv", ".yaml", ".yml")


def folder_hash(folder: Path) -> str:
    """sha256 over the names and bytes of a model folder's files (its weights, config and tokenizer;
    a few MB for the embedded model), leaving out its documentation."""
    digest = hashlib.sha256()
    for file in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix not in _NOT_THE_MODEL):
        digest.update(str(file.relative_to(folder)).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def check_model_path(path: str) -> str:
    """The model folder (resolved) or hub name of `model.path`, after checking that a model is there:
    a local folder must hold a config.json; anything else is asked of the hub (or its local cache),
    so a typo fails here with what is missing instead of in a transformers traceback later.
    `pkg://PACKAGE/path` names a folder shipped inside an installed package (the embedded model)."""
    local = resolve_path(path) if path.startswith("pkg://") else Path(path).expanduser()
    if local.exists():
        if not (local / "config.json").exists():
            raise FileNotFoundError(f"model.path={path!r}: the folder {local.resolve()} holds no config.json "
                                    "(a model saved with save_pretrained is expected)")
        return str(local.resolve())
    if path.startswith(("/", "./", "../", "~", "pkg://")) or path.count("/") > 1:
        raise FileNotFoundError(f"model.path={path!r}: no such folder")
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(path)
    except Exception as e:  # noqa: BLE001 - any failure means the same thing to the user
        raise FileNotFoundError(
            f"model.path={path!r} is neither a local folder nor a hub model that could be reached "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). Set model.path to a folder "
            "holding a saved model, or to a hub name; without network, download it first "
            "(`huggingface-cli download NAME`) so it is in the local cache.") from None
    return path


def _file_key(path: str) -> str:
    """The dataset file's content hash, so a regenerated split is a new key."""
    file = resolve_path(path)
    return hashlib.sha256(file.read_bytes()).hexdigest()[:16] if file.exists() else f"missing:{path}"


def step_seed(seed: int, *parts: int) -> int:
    return int(np.random.SeedSequence([int(seed) % (2**32), *[int(p) for p in parts]]).generate_state(1)[0])


# ---------------------------------------------------------------- corpus


def build_corpus(cfg) -> tuple[pd.DataFrame, dict]:
    """Rows (theorem_id, source, statement, prompt, completion), one per proof, and statistics."""
    from lean_env import propgen

    pc, ds = cfg.pretrain, cfg.dataset
    started = time.time()
    evals = load_theorems(ds.eval_path)  # all of it: no eval theorem may leak, whatever eval_limit says
    eval_keys = {propgen.canonical_key(s) for s in evals["statement"]}
    train = load_theorems(ds.train_path, ds.train_limit)
    train_keys = [propgen.canonical_key(s) for s in train["statement"]]
    keep = [k not in eval_keys for k in train_keys]
    dropped_train = int(len(keep) - sum(keep))
    train = train[keep]
    rows = [{"id": r["id"], "statement": r["statement"], "source": "train"} for r in train.to_dict("records")]
    if pc.extra_theorems > 0:
        extra = load_theorems(pc.extra_path, int(pc.extra_theorems))
        if len(extra) < pc.extra_theorems:
            raise ValueError(f"pretrain.extra_theorems={pc.extra_theorems} but {pc.extra_path} holds {len(extra)} theorems")
        leaked = [i for i, st in zip(extra["id"], extra["statement"]) if propgen.canonical_key(st) in eval_keys]
        if leaked:
            raise ValueError(f"{pc.extra_path}: {len(leaked)} theorems are eval theorems up to renaming "
                             f"(first: {leaked[0]}); regenerate it with scripts/make_prop_splits.py")
        rows += [{"id": r["id"], "statement": r["statement"], "source": "extra"} for r in extra.to_dict("records")]
    theorem_seconds = time.time() - started
    rng = random.Random(step_seed(pc.seed, 2))
    prefix = ds.proof_prefix
    out = []
    no_proof = 0
    for r in rows:
        ps = propgen.sample_proofs(r["statement"], int(pc.proofs_per_theorem), rng,
                                      max_chars=pc.max_proof_chars or None)
        if not ps:
            no_proof += 1
        prompt = ds.prompt_template.format(statement=r["statement"])
        for p in ps:
            if not p.startswith(prefix):
                raise ValueError(f"corpus proof of {r['id']} does not start with {prefix!r}: {p[:40]!r}")
            out.append({"theorem_id": r["id"], "source": r["source"], "statement": r["statement"],
                        "prompt": prompt, "completion": p[len(prefix):]})
    corpus = pd.DataFrame(out)
    stats = {
        "theorems": len(rows), "train_theorems": int(len(train)), "extra_theorems": len(rows) - int(len(train)),
        "train_dropped_as_eval": dropped_train, "eval_theorems_excluded": len(eval_keys),
        "theorems_without_proof": no_proof, "examples": len(corpus),
        "distinct_examples": int(corpus[["prompt", "completion"]].drop_duplicates().shape[0]) if len(corpus) else 0,
        "mean_completion_chars": float(corpus["completion"].str.len().mean()) if len(corpus) else 0.0,
        "theorem_seconds": theorem_seconds, "corpus_seconds": time.time() - started,
    }
    return corpus, stats


# ---------------------------------------------------------------- batches


class Batches:
    """Length-bucketed batches: each epoch is a seeded shuffle, cut into pools of 64 batches, each pool
    sorted by length and cut into batches, and the batches shuffled. `batch(step)` depends only on
    (seed, step)."""

    def __init__(self, lengths: np.ndarray, batch_size: int, seed: int):
        self.lengths, self.batch_size, self.seed = lengths, batch_size, seed
        self.per_epoch = max(1, len(lengths) // batch_size)
        self._epoch, self._order = None, None

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        rng = np.random.default_rng(step_seed(self.seed, 3, epoch))
        perm = rng.permutation(len(self.lengths))[: self.per_epoch * self.batch_size]
        pool = self.batch_size * 64
        batches = []
        for start in range(0, len(perm), pool):
            chunk = perm[start:start + pool]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            batches += [chunk[i:i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        order = rng.permutation(len(batches))
        return [batches[i] for i in order]

    def batch(self, step: int) -> np.ndarray:
        epoch, index = divmod(step, self.per_epoch)
        if self._epoch != epoch:
            self._epoch, self._order = epoch, self.epoch_batches(epoch)
        return self._order[index]


def collate(prompt_ids: list, completion_ids: list, rows: np.ndarray, pad_id: int):
    """Right-padded input ids, attention mask, labels (-100 outside the completion) and prompt labels
    (-100 outside the prompt after its first token)."""
    seqs = [prompt_ids[i] + completion_ids[i] for i in rows]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    prompt_labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for j, (i, s) in enumerate(zip(rows, seqs)):
        ids[j, :len(s)] = torch.as_tensor(s)
        mask[j, :len(s)] = 1
        p = len(prompt_ids[i])
        labels[j, p:len(s)] = torch.as_tensor(completion_ids[i])
        prompt_labels[j, 1:p] = torch.as_tensor(prompt_ids[i][1:])
    return ids, mask, labels, prompt_labels


def pretrain_loss(model, ids, mask, labels, prompt_labels, prompt_loss_weight: float, counts=None):
    """(completion loss, objective, completion tokens) of one batch: the mean next-token loss on the
    completion tokens, plus `prompt_loss_weight` × the mean loss on the prompt's tokens.

    One log-softmax over every position serves both losses, and the targets are shifted instead of
    the logits (a slice of the logits would be copied, and so would its gradient). `counts`
    (completion tokens, prompt tokens) to divide the summed losses by: the whole batch's, when
    this batch is one process's share of it (data-parallel pretraining); default: this batch's."""
    logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
    logp = torch.log_softmax(logits.float().view(-1, logits.shape[-1]), -1)
    end = torch.full((len(ids), 1), -100, dtype=labels.dtype, device=labels.device)

    def mean_nll(target, count):  # position j predicts token j + 1
        target = torch.cat([target[:, 1:], end], 1).view(-1)
        own = int((target != -100).sum())
        count = own if count is None else count
        return torch.nn.functional.nll_loss(logp, target, ignore_index=-100, reduction="sum") / max(1, count), own

    n_completion, n_prompt = counts if counts is not None else (None, None)
    loss, n_tok = mean_nll(labels, n_completion)
    objective = loss
    if prompt_loss_weight > 0:
        objective = loss + prompt_loss_weight * mean_nll(prompt_labels, n_prompt)[0]
    return loss, objective, n_tok


def lr_factor(step: int, warmup: int, total: int, floor: float = 0.1) -> float:
    if step < warmup:
        return (step + 1) / max(1, warmup)
    progress = (step - warmup) / max(1, total - warmup)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


# ---------------------------------------------------------------- training


def training_data(cfg, tokenizer, corpus: pd.DataFrame):
    """(prompt ids, completion ids, lengths, rows of `corpus` used): the examples that fit
    model.max_length, encoded."""
    from pipeline.model import encode_completions, encode_prompts

    prompt_ids = encode_prompts(tokenizer, list(corpus["prompt"]))
    completion_ids = encode_completions(tokenizer, list(corpus["completion"]))
    lengths = np.array([len(p) + len(c) for p, c in zip(prompt_ids, completion_ids)])
    idx = np.nonzero(lengths <= cfg.model.max_length)[0]
    return [prompt_ids[i] for i in idx], [completion_ids[i] for i in idx], lengths[idx], idx


def build_training(cfg, tokenizer, total: int, device="cpu"):
    """A fresh model on `device` (seeded and initialised on the CPU: the same weights on every
    process and device), its AdamW and its lr schedule."""
    from pipeline.model import new_model

    pc = cfg.pretrain
    torch.manual_seed(step_seed(pc.seed, 4))
    model = new_model(cfg.model, tokenizer).to(device)
    model.train()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": pc.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=pc.lr, betas=(0.9, 0.95), eps=1e-8)
    warmup = min(int(pc.warmup_steps), max(1, total // 10))  # a short run still reaches the peak lr
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, warmup, total))
    return model, optimizer, scheduler


def train_step(model, optimizer, scheduler, rows, prompt_ids, completion_ids, pad: int, prompt_loss_weight: float,
               rank: int = 0, world: int = 1):
    """One optimiser step on the batch `rows`; with `world` > 1 processes, this one computes the
    gradient of its share rows[rank::world] (normalised by the whole batch's token counts) and the
    shares are summed (all-reduce) before every process takes the same step.
    Returns (completion loss of the whole batch, gradient norm)."""
    counts = (sum(len(completion_ids[i]) for i in rows), sum(len(prompt_ids[i]) - 1 for i in rows))
    mine = rows[rank::world]
    device = next(model.parameters()).device
    ids, mask, labels, prompt_labels = (t.to(device) for t in collate(prompt_ids, completion_ids, mine, pad))
    loss, objective, _ = pretrain_loss(model, ids, mask, labels, prompt_labels, prompt_loss_weight, counts)
    optimizer.zero_grad(set_to_none=True)
    objective.backward()
    loss = loss.detach()
    if world > 1:
        params = [p for p in model.parameters() if p.requires_grad]
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params]
                         + [loss.reshape(1)])
        torch.distributed.all_reduce(flat)
        at = 0
        for p in params:
            p.grad = flat[at:at + p.numel()].view_as(p).clone()
            at += p.numel()
        loss = flat[-1]
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    scheduler.step()
    return float(loss), float(grad_norm)


def _helper(rank: int, world: int, init_file: str, work: str, cfg_container: dict, threads: int) -> None:
    """A data-parallel pretraining process (ranks 1..world-1; rank 0 is the stage's own process):
    the same data, model and schedule as rank 0, its share of every batch, no logging or files."""
    from omegaconf import OmegaConf
    from transformers import AutoTokenizer

    torch.set_num_threads(threads)
    cfg = OmegaConf.create(cfg_container)
    _init_group(init_file, rank, world)
    try:
        work_dir = Path(work)
        tokenizer = AutoTokenizer.from_pretrained(str(work_dir / "tokenizer"))
        prompt_ids, completion_ids, lengths, _ = training_data(cfg, tokenizer, read_parquet(work_dir / "corpus.parquet"))
        total = int(cfg.pretrain.steps)
        model, optimizer, scheduler = build_training(cfg, tokenizer, total)
        step = _load_checkpoint(work_dir / "checkpoint.pt", model, optimizer, scheduler)
        batches = Batches(lengths, int(cfg.pretrain.batch_size), step_seed(cfg.pretrain.seed, 5))
        while step < total:
            train_step(model, optimizer, scheduler, batches.batch(step), prompt_ids, completion_ids,
                       tokenizer.pad_token_id, float(cfg.pretrain.prompt_loss_weight), rank, world)
            step += 1
        # the last all-reduce may still be reading from rank 0: leave only when every rank is done
        torch.distributed.barrier()
    finally:
        torch.distributed.destroy_process_group()


def _init_group(init_file: str, rank: int, world: int) -> None:
    import datetime

    # a lost peer ends the wait within minutes instead of gloo's default half hour
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world,
                                         timeout=datetime.timedelta(minutes=5))


def _load_checkpoint(path: Path, model, optimizer, scheduler) -> int:
    if not path.exists():
        return 0
    state = torch.load(path, weights_only=False, map_location="cpu")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return int(state["step"])


class Pretrainer:
    def __init__(self, ctx: Context, art: Artifact):
        self.ctx, self.cfg, self.pc, self.art = ctx, ctx.cfg, ctx.cfg.pretrain, art
        self.work = art.work
        self.work.mkdir(parents=True, exist_ok=True)
        if self.pc.num_threads:
            torch.set_num_threads(int(self.pc.num_threads))

    def fit(self) -> dict:
        from transformers import AutoTokenizer

        from pipeline.model import resolve_device, set_progress, train_tokenizer

        cfg, pc = self.cfg, self.pc
        set_progress(bool(cfg.progress))
        started = time.time()
        corpus_file, stats_file, tok_dir = self.work / "corpus.parquet", self.work / "corpus_stats.json", self.work / "tokenizer"
        if corpus_file.exists() and stats_file.exists():
            corpus, stats = read_parquet(corpus_file), json.loads(stats_file.read_text())
        else:
            corpus, stats = build_corpus(cfg)
            write_parquet(corpus_file, corpus)
            write_json(stats_file, stats)
        if len(corpus) == 0:
            raise RuntimeError("pretrain: the corpus is empty")
        if (tok_dir / "tokenizer.json").exists():
            tokenizer = AutoTokenizer.from_pretrained(str(tok_dir))
        else:
            texts = list(pd.unique(corpus["prompt"])) + list(corpus["completion"])
            tokenizer = train_tokenizer(texts, cfg.model.vocab_size)
            tokenizer.save_pretrained(str(tok_dir))
        prompt_ids, completion_ids, lengths, idx = training_data(cfg, tokenizer, corpus)
        comp_lens = np.array([len(c) for c in completion_ids])
        stats.update({
            "vocab_size": len(tokenizer), "examples_too_long": int(len(corpus) - len(idx)), "examples_used": int(len(idx)),
            "mean_prompt_tokens": float(np.mean([len(p) for p in prompt_ids])),
            "mean_completion_tokens": float(comp_lens.mean()),
            "completion_tokens_p50_p90_p99_max": [int(np.percentile(comp_lens, q)) for q in (50, 90, 99, 100)],
            "chars_per_token": float(corpus["completion"].str.len().to_numpy()[idx].sum() / max(1, (comp_lens - 1).sum())),
        })
        self.ctx.log.log({k: v for k, v in stats.items() if isinstance(v, (int, float))}, stage="pretrain")

        total = int(pc.steps)
        device = resolve_device(cfg.model.device)  # model.device: auto takes the GPU when there is one
        model, optimizer, scheduler = build_training(cfg, tokenizer, total, device)
        step = self._resume(model, optimizer, scheduler)
        batches = Batches(lengths, int(pc.batch_size), step_seed(pc.seed, 5))
        pad = tokenizer.pad_token_id
        world = int(pc.get("processes", 1))
        threads_before = torch.get_num_threads()
        helpers = self._start_helpers(world, device)
        window_loss, window_tokens, window_all, window_t = 0.0, 0, 0, time.time()
        train_started, trained_tokens = time.time(), 0
        loss_value = float("nan")
        log_every = max(1, min(50, total // 20 or 1))
        try:
            while step < total:
                rows = batches.batch(step)
                loss_value, grad_norm = train_step(model, optimizer, scheduler, rows, prompt_ids, completion_ids, pad,
                                                   pc.prompt_loss_weight, 0, world)
                step += 1
                n_tok = int(sum(len(completion_ids[i]) for i in rows))
                n_all = int(lengths[rows].sum())
                window_loss += loss_value * n_tok
                window_tokens += n_tok
                window_all += n_all
                trained_tokens += n_all
                if step % log_every == 0 or step == total:
                    dt = max(time.time() - window_t, 1e-9)
                    self.ctx.log.log({"loss": window_loss / max(1, window_tokens), "lr": scheduler.get_last_lr()[0],
                                      "grad_norm": grad_norm, "tokens_per_s": window_all / dt,
                                      "completion_tokens_per_s": window_tokens / dt}, step=step, stage="pretrain")
                    print(f"[pretrain] step {step}/{total} loss {window_loss / max(1, window_tokens):.4f} "
                          f"lr {scheduler.get_last_lr()[0]:.2e} {window_all / dt:.0f} tok/s", flush=True)
                    window_loss, window_tokens, window_all, window_t = 0.0, 0, 0, time.time()
                if step % int(pc.checkpoint_every) == 0 and step < total:
                    self._checkpoint(model, optimizer, scheduler, step)
                maybe_die("pretrain", "step", step)
        except BaseException:
            self._stop_helpers(helpers, threads_before, check=False)
            raise
        self._stop_helpers(helpers, threads_before)
        seconds_train = time.time() - train_started
        out_dir = self.work / "model"
        model.eval()
        model.save_pretrained(str(out_dir))
        tokenizer.save_pretrained(str(out_dir))
        stats.update({"steps": total, "final_loss": loss_value, "train_seconds": seconds_train,
                      "tokens_per_s": trained_tokens / max(seconds_train, 1e-9),
                      "parameters": int(sum(p.numel() for p in model.parameters())),
                      "epochs": total / batches.per_epoch, "processes": world})
        write_json(self.work / "corpus_stats.json", stats)
        for leftover in ("checkpoint.pt", "corpus.parquet"):
            (self.work / leftover).unlink(missing_ok=True)
        shutil.rmtree(tok_dir, ignore_errors=True)
        seconds = time.time() - started
        return {"steps": total, "final_loss": loss_value, "seconds": seconds, "train_seconds": seconds_train,
                "tokens_per_s": stats["tokens_per_s"], "parameters": stats["parameters"],
                "examples": stats["examples_used"], "theorems": stats["theorems"]}

    def _start_helpers(self, world: int, device) -> list:
        """Processes 1..world-1 of data-parallel pretraining (pretrain.processes), each with
        pretrain.num_threads torch threads (1 when unset), and this one's process group."""
        if world <= 1:
            return []
        import multiprocessing

        if torch.distributed.is_initialized():
            raise RuntimeError("pretrain.processes > 1 starts its own process group; this process already has one "
                               "(run the pretrain stage on its own, without torchrun)")
        if torch.device(device).type != "cpu":
            raise ValueError(f"pretrain.processes={world} is data-parallel over CPU processes (gloo); the model is "
                             f"on {device}: use pretrain.processes=1 there")
        if int(self.pc.batch_size) < world:
            raise ValueError(f"pretrain.batch_size={self.pc.batch_size} < pretrain.processes={world}")
        threads = int(self.pc.num_threads) or 1
        init_file = self.work / "process-group"
        init_file.unlink(missing_ok=True)
        spawn = multiprocessing.get_context("spawn")
        helpers = [spawn.Process(target=_helper, daemon=True,
                                 args=(rank, world, str(init_file), str(self.work),
                                       {"model": to_container(self.cfg.model), "pretrain": to_container(self.pc)},
                                       threads))
                   for rank in range(1, world)]
        for h in helpers:
            h.start()
        torch.set_num_threads(threads)
        _init_group(str(init_file), 0, world)
        return helpers

    def _stop_helpers(self, helpers: list, threads: int, check: bool = True) -> None:
        """Wait for the helpers (after the last step) or end them (`check=False`: this process failed)."""
        if not helpers:
            return
        if check:  # a normal end: wait until every rank has finished its last exchange
            torch.distributed.barrier()
        torch.distributed.destroy_process_group()
        torch.set_num_threads(threads)
        for h in helpers:
            h.join(timeout=60)
            if h.is_alive():
                h.terminate()
        (self.work / "process-group").unlink(missing_ok=True)
        failed = [h.exitcode for h in helpers if h.exitcode not in (0, None, -15)]
        if failed and check:
            raise RuntimeError(f"pretrain: a data-parallel helper process failed (exit codes {failed})")

    def _checkpoint(self, model, optimizer, scheduler, step: int) -> None:
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                 "step": step, "torch_rng": torch.get_rng_state(), "numpy_rng": np.random.get_state(),
                 "python_rng": random.getstate()}
        tmp = self.work / "checkpoint.pt.tmp"
        torch.save(state, tmp)
        os.replace(tmp, self.work / "checkpoint.pt")

    def _resume(self, model, optimizer, scheduler) -> int:
        path = self.work / "checkpoint.pt"
        if not path.exists():
            return 0
        state = torch.load(path, weights_only=False, map_location="cpu")  # resumable on another device
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        np.random.set_state(state["numpy_rng"])
        random.setstate(state["python_rng"])
        print(f"[pretrain] resuming at step {state['step']}", flush=True)
        return int(state["step"])
