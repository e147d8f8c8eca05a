"""The matmul roofline of a model on this machine: what its own matrix shapes run at, measured here.

Throughput figures are ratios to this roofline, measured in the same process as the run they judge
(scripts/bench_sampler.py, scripts/bench_train.py), because absolute speed drifts on a shared CPU.

- Work: a generated or scored token costs 2 FLOPs per weight of every matrix it is multiplied by
  (attention projections, MLP, the output head; the embedding lookup is not a matmul), a trained
  token 6 (forward, and the two backward products: input gradient and weight gradient). Attention
  scores, norms and sampling are not counted: they are the overhead the ratio exposes.
- Rate: those matrices multiplied by a [rows, in] activation (rows = the batch's tokens per step), each
  timed alone in a tight loop, best of a few repeats; the rate is total FLOPs over total time.
- Roofline tokens/s = rate / FLOPs per token; a run's ratio = its tokens/s over that.

Clock: CPU time of this process (`time.process_time`), for the roofline and for the runs judged
against it. On a shared machine wall time counts the moments other processes hold the core; CPU
time counts only the moments this one ran, so the ratio stays put while the machine's load moves
(cache contention from neighbours still shows). Wall-clock rates are reported beside it.
"""

from __future__ import annotations

import time

import torch


def weight_shapes(model) -> list[tuple[int, int]]:
    """(out, in) of every matrix a token goes through, the output head included, the embedding not."""
    emb = model.get_input_embeddings().weight
    head = model.get_output_embeddings()
    shapes = []
    for name, p in model.named_parameters():
        if p.ndim != 2 or p is emb or (head is not None and p is head.weight):
            continue
        shapes.append(tuple(p.shape))
    if head is not None:  # tied or not, the head is a matmul every token pays for
        shapes.append(tuple(head.weight.shape))
    return shapes


def flops_per_token(model, training: bool = False) -> int:
    return (6 if training else 2) * sum(o * i for o, i in weight_shapes(model))


def _best_seconds(fn, repeats: int, inner: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        for _ in range(inner):
            fn()
        best = min(best, (time.process_time() - started) / inner)
    return best


@torch.inference_mode()
def matmul_rate(shapes, rows: int, *, training: bool = False, repeats: int = 5, min_seconds: float = 0.02,
                dtype=torch.float32) -> float:
    """FLOP/s of `rows` × each (out, in) matrix (and, with `training`, the two backward products),
    measured now in this process with its current thread setting."""
    cases = []
    for out, inp in sorted(set(shapes)):
        x = torch.randn(rows, inp, dtype=dtype)
        w = torch.randn(out, inp, dtype=dtype)
        dy = torch.randn(rows, out, dtype=dtype)
        count = shapes.count((out, inp))
        cases.append((lambda x=x, w=w: x @ w.T, 2 * rows * inp * out, count))
        if training:
            cases.append((lambda dy=dy, w=w: dy @ w, 2 * rows * inp * out, count))     # input gradient
            cases.append((lambda dy=dy, x=x: dy.T @ x, 2 * rows * inp * out, count))   # weight gradient
    flops = seconds = 0.0
    for fn, f, count in cases:
        started = time.perf_counter()
        fn()
        inner = max(1, int(min_seconds / max(time.perf_counter() - started, 1e-7)))
        flops += f * count
        seconds += _best_seconds(fn, repeats, inner) * count
    return flops / seconds


def roofline_tokens_per_s(model, rows: int, *, training: bool = False, **kw) -> tuple[float, float]:
    """(roofline tokens/s, matmul FLOP/s) for `model` at `rows` tokens per step, measured now."""
    rate = matmul_rate(weight_shapes(model), rows, training=training, **kw)
    return rate / flops_per_token(model, training), rate
