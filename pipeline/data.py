"""Theorem datasets: a table with one row per theorem (`id`, `statement`, optional extras).

Paths may be local files (jsonl or parquet) or `pkg://PACKAGE/relative/path` for files shipped
inside an installed package (the embedded benchmark lives in `pkg://lean_env/data/`).
A bad row is reported with its file and line, never silently dropped.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pandas as pd

REQUIRED = ("id", "statement")


class DatasetError(ValueError):
    pass


def resolve_path(path: str) -> Path:
    if path.startswith("pkg://"):
        package, _, rel = path[len("pkg://"):].partition("/")
        return Path(str(resources.files(package).joinpath(rel)))
    return Path(path).expanduser()


def load_theorems(path: str, limit: int = 0) -> pd.DataFrame:
    file = resolve_path(path)
    if not file.exists():
        raise DatasetError(f"dataset file not found: {file} (from {path!r}); real benchmarks are not shipped: "
                           f"download them as the dataset config's comment says (conf/dataset/*.yaml) and "
                           f"set dataset.train_path / dataset.eval_path to the local files")
    if file.suffix == ".parquet":
        df = pd.read_parquet(file)
        for col in REQUIRED:
            if col not in df.columns:
                raise DatasetError(f"{file}: missing column {col!r}")
    else:
        rows = []
        with file.open(encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DatasetError(f"{file}:{lineno}: not valid JSON ({e.msg})") from None
                missing = [c for c in REQUIRED if not isinstance(row.get(c), str)]
                if missing:
                    raise DatasetError(f"{file}:{lineno}: missing or non-string field(s) {missing}")
                rows.append(row)
        df = pd.DataFrame(rows)
    if df.empty:
        raise DatasetError(f"{file}: no theorems")
    dup = df["id"][df["id"].duplicated()]
    if len(dup):
        raise DatasetError(f"{file}: duplicate id(s) {list(dup[:5])}")
    if limit:
        df = df.iloc[:limit]
    return df.reset_index(drop=True)


def prompts(df: pd.DataFrame, template: str) -> list[str]:
    return [template.format(**row) for row in df.to_dict("records")]
