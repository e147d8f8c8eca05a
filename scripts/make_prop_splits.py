"""Write the shipped propositional splits: lean_env/data/prop_{train,eval,pretrain,valid}.jsonl.

Deterministic: fixed seeds, no dependence on the Python hash seed.  The eval split is generated
after the train split with the train split's canonical keys excluded, so no eval theorem is a train
theorem up to renaming of variables (level mix `EVAL_LEVELS`).  The pretrain theorems (the extra
theorems of the `pretrain` stage's corpus, beyond the train split) exclude both, with the easier mix
`PRETRAIN_LEVELS`; shipping them saves the `pretrain` stage minutes of generation (easy theorems are
few up to renaming, so the generator needs many candidates to find them). The validation split (the
theorems each training round's policy is evaluated on, for the trajectories of the sweep report) is
generated last and excludes all three, so adding it changed none of them.
Every reference proof is run through the checker before anything is written.

    python scripts/make_prop_splits.py [--out-dir lean_env/data] [--train N] [--eval N] [--pretrain N] [--valid N]
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lean_env.prop.checker import check  # noqa: E402
from lean_env.propgen import EVAL_LEVELS, PRETRAIN_LEVELS, TRAIN_LEVELS, canonical_key, generate  # noqa: E402

TRAIN_SEED = 20_241_101
EVAL_SEED = 20_241_102
PRETRAIN_SEED = 20_241_103
VALID_SEED = 20_241_104
N_TRAIN = 2000
N_EVAL = 250
N_PRETRAIN = 6000
N_VALID = 100


def make(n_train: int = N_TRAIN, n_eval: int = N_EVAL, n_pretrain: int = N_PRETRAIN,
         n_valid: int = N_VALID) -> dict[str, list[dict]]:
    train = generate(TRAIN_SEED, n_train, split="train", id_width=5, level_weights=TRAIN_LEVELS)
    train_keys = {canonical_key(r["statement"]) for r in train}
    evals = generate(EVAL_SEED, n_eval, exclude_keys=train_keys, split="eval", id_width=4,
                     level_weights=EVAL_LEVELS)
    eval_keys = {canonical_key(r["statement"]) for r in evals}
    pretrain = generate(PRETRAIN_SEED, n_pretrain, exclude_keys=train_keys | eval_keys, split="pre",
                        id_width=5, level_weights=PRETRAIN_LEVELS)
    pretrain_keys = {canonical_key(r["statement"]) for r in pretrain}
    valid = generate(VALID_SEED, n_valid, exclude_keys=train_keys | eval_keys | pretrain_keys, split="valid",
                     id_width=4, level_weights=EVAL_LEVELS)
    return {"prop_train": train, "prop_eval": evals, "prop_pretrain": pretrain, "prop_valid": valid}


def verify(rows: list[dict]) -> None:
    bad = []
    for r in rows:
        res = check(r["statement"], r["proof"])
        if not res.ok:
            bad.append((r["id"], res.message))
    if bad:
        raise SystemExit(f"{len(bad)} reference proofs fail the checker, first: {bad[:3]}")


def summary(name: str, rows: list[dict]) -> str:
    levels = collections.Counter(r["level"] for r in rows)
    logics = collections.Counter(r["logic"] for r in rows)
    both = collections.Counter((r["level"], r["logic"]) for r in rows)
    lines = [f"{name}: {len(rows)} theorems"]
    lines.append("  per level: " + ", ".join(f"L{k}={levels[k]}" for k in sorted(levels)))
    lines.append("  per logic: " + ", ".join(f"{k}={v}" for k, v in sorted(logics.items())))
    lines.append("  level x logic: " + ", ".join(f"L{k[0]}/{k[1][:5]}={v}" for k, v in sorted(both.items())))
    return "\n".join(lines)


def write(path: Path, rows: list[dict]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    path.write_text(text, encoding="utf-8")
    return len(text.encode("utf-8"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", type=Path, default=ROOT / "lean_env" / "data")
    ap.add_argument("--train", type=int, default=N_TRAIN)
    ap.add_argument("--eval", type=int, default=N_EVAL)
    ap.add_argument("--pretrain", type=int, default=N_PRETRAIN)
    ap.add_argument("--valid", type=int, default=N_VALID)
    args = ap.parse_args(argv)
    splits = make(args.train, args.eval, args.pretrain, args.valid)
    keys = {name: {canonical_key(r["statement"]) for r in rows} for name, rows in splits.items()}
    assert not keys["prop_train"] & keys["prop_eval"]
    assert not (keys["prop_train"] | keys["prop_eval"]) & keys["prop_pretrain"]
    assert not (keys["prop_train"] | keys["prop_eval"] | keys["prop_pretrain"]) & keys["prop_valid"]
    for rows in splits.values():
        verify(rows)
    for name, rows in splits.items():
        size = write(args.out_dir / f"{name}.jsonl", rows)
        print(summary(name, rows))
        print(f"  wrote {args.out_dir / (name + '.jsonl')} ({size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
