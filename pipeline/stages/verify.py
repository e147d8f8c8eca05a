"""The `verify` stage: every sample of a samples artifact gets a verdict from the configured backend.

Verdicts are cached by (backend, version, statement, proof) under `<output_dir>/cache/`, so a
repeated proof costs nothing and a verify stage killed midway redoes only what was not cached.
`error` (the verifier itself failed) is kept as its own verdict: it is never counted as a pass.
A sample whose completion held no extractable proof (empty `proof`, pipeline/prompts.py) gets the
verdict `invalid` here, with a message saying so, without reaching the backend.
"""

from __future__ import annotations

import time

import pandas as pd

from lean_env.cache import VerdictCache
from lean_env.verifier import Item, Result, get_backend, verify_items
from pipeline.config import backend_options
from pipeline.context import Context
from pipeline.prompts import NO_PROOF, NO_PROOF_MESSAGE
from pipeline.store import Artifact, read_parquet, write_parquet

VERSION = 1


def verify_samples(ctx: Context, samples: Artifact, label: str = "verify") -> Artifact:
    vcfg = ctx.cfg.verifier
    backend = get_backend(vcfg.backend, **backend_options(vcfg))
    key_cfg = {"backend": backend.name, "backend_version": backend.version, "timeout": vcfg.timeout}

    def make(art: Artifact) -> dict:
        df = read_parquet(samples.file("samples.parquet"))
        items = [Item(id=f"{r.theorem_id}#{r.sample_idx}", statement=r.statement, proof=r.proof)
                 for r in df.itertuples(index=False)]
        cache = open_cache(ctx)
        started = time.time()
        with backend:
            results = verify_proofs(items, backend, cache=cache, timeout=vcfg.timeout, workers=vcfg.workers,
                                    progress=ctx.cfg.progress, prompt_style=ctx.cfg.model.prompt_style)
        seconds = time.time() - started
        out = df.assign(verdict=[r.verdict for r in results], message=[r.message for r in results],
                        seconds=[r.seconds for r in results])
        art.work.mkdir(parents=True, exist_ok=True)
        write_parquet(art.work / "verdicts.parquet", out)
        write_parquet(art.work / "per_theorem.parquet", per_theorem(out))
        ctx.log.log({"proofs": len(out), "pass_rate": float((out.verdict == "pass").mean()),
                     "proofs_per_s": len(out) / max(seconds, 1e-9)}, stage=label)
        return {"verdicts": out["verdict"].value_counts().to_dict(), "seconds": seconds, **key_cfg}

    return ctx.build("verify", key_cfg, make, inputs={"samples": samples}, version=VERSION, label=label,
                     detail=_detail)


def _detail(art: Artifact) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(art.meta.get("verdicts", {}).items()))


def verify_proofs(items: list[Item], backend, *, prompt_style: str, **options) -> list[Result]:
    """verify_items, except that items without a proof (NO_PROOF: nothing could be extracted from the
    completion) are `invalid` with a message naming why; they count as decided failures."""
    missing = [i for i, item in enumerate(items) if item.proof == NO_PROOF]
    results: list[Result | None] = [None] * len(items)
    for i in missing:
        results[i] = Result(items[i].id, "invalid", NO_PROOF_MESSAGE.format(style=prompt_style), 0.0)
    todo = [i for i in range(len(items)) if results[i] is None]
    for i, r in zip(todo, verify_items([items[i] for i in todo], backend, **options)):
        results[i] = r
    return results


def open_cache(ctx: Context) -> VerdictCache | None:
    """The verdict cache every stage of this output folder shares (None when `verifier.cache` is off)."""
    return VerdictCache(ctx.output_dir / "cache" / "verdicts.sqlite") if ctx.cfg.verifier.cache else None


def per_theorem(verdicts: pd.DataFrame) -> pd.DataFrame:
    """Per theorem, in first-appearance order: n decided samples, c passes, and the verifier errors.

    An `error` verdict says nothing about the proof, so it is neither a pass nor a fail: it is left
    out of n (pass@k is computed on the decided samples) and counted on its own.
    """
    v = verdicts.assign(passed=verdicts["verdict"].eq("pass"), error=verdicts["verdict"].eq("error"))
    g = v.groupby("theorem_id", sort=False)
    errors = g["error"].sum().astype(int)
    return pd.DataFrame({"n": g.size() - errors, "c": g["passed"].sum().astype(int), "errors": errors}).reset_index()


def run(ctx: Context) -> Artifact:
    return verify_samples(ctx, ctx.stage("sample"))
