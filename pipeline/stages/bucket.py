"""The `bucket` stage: base difficulty buckets, the base → trained transition matrix, lost and gained theorems."""

from __future__ import annotations

from dataclasses import asdict

import pandas as pd
from omegaconf import OmegaConf

from pipeline.context import Context
from pipeline.reporting.metrics import BUCKETS, DEFAULT_RULE, BucketRule, bucket, transition_matrix
from pipeline.store import Artifact, read_parquet, write_json, write_parquet

VERSION = 1


def bucket_runs(ctx: Context, base_eval: Artifact, trained_eval: Artifact) -> Artifact:
    rule = BucketRule.of(OmegaConf.select(ctx.cfg, "eval.buckets"))  # None (no eval section): the default

    def make(art: Artifact) -> dict:
        table = compare(read_parquet(base_eval.file("per_theorem.parquet")),
                        read_parquet(trained_eval.file("per_theorem.parquet")), rule)
        matrix = transition_matrix(table["base_bucket"].tolist(), table["bucket"].tolist())
        result = {
            "buckets": list(BUCKETS),
            "rule": asdict(rule),
            "transitions": matrix.tolist(),
            "base_counts": {b: int((table.base_bucket == b).sum()) for b in BUCKETS},
            "trained_counts": {b: int((table.bucket == b).sum()) for b in BUCKETS},
            "lost": table.loc[(table.base_c > 0) & (table.c == 0), "theorem_id"].tolist(),
            "gained": table.loc[(table.base_c == 0) & (table.c > 0), "theorem_id"].tolist(),
        }
        art.work.mkdir(parents=True, exist_ok=True)
        write_parquet(art.work / "buckets.parquet", table)
        write_json(art.work / "transitions.json", result)
        ctx.log.log({"lost": len(result["lost"]), "gained": len(result["gained"]),
                     "hard_to_unsolvable": int(matrix[2, 3])}, stage="bucket")
        return {"lost": len(result["lost"]), "gained": len(result["gained"])}

    # the default rule keeps the key the stage always had
    key = {} if rule == DEFAULT_RULE else {"rule": asdict(rule)}
    return ctx.build("bucket", key, make, inputs={"base": base_eval, "trained": trained_eval}, version=VERSION)


def compare(base: pd.DataFrame, trained: pd.DataFrame, rule: BucketRule = DEFAULT_RULE) -> pd.DataFrame:
    """One row per theorem with base and trained counts and buckets; theorems must match."""
    b = base[["theorem_id", "n", "c"]].rename(columns={"n": "base_n", "c": "base_c"})
    t = trained[["theorem_id", "n", "c"]]
    if set(b.theorem_id) != set(t.theorem_id):
        raise ValueError("bucket: base and trained evaluations cover different theorems")
    table = b.merge(t, on="theorem_id", validate="one_to_one")
    table["base_bucket"] = [bucket(int(n), int(c), rule) for n, c in zip(table.base_n, table.base_c)]
    table["bucket"] = [bucket(int(n), int(c), rule) for n, c in zip(table.n, table.c)]
    return table


def run(ctx: Context) -> Artifact:
    trained = ctx.stage("evaluate")
    base = ctx.stage("evaluate_base")
    return bucket_runs(ctx, base, trained)
