"""Finding what a `lean_repl` worker runs, or saying exactly what is missing.

By default a worker is `lake env <repl binary>` run inside a Lean project (a folder with a
`lakefile.lean`/`lakefile.toml` and a `lean-toolchain`, whose dependencies, e.g. Mathlib, are
built), as `scripts/setup_lean_repl.sh` lays it out:

    <lean dir>/project   the Lean project (Mathlib as a dependency)
    <lean dir>/repl      leanprover-community/repl, built: <lean dir>/repl/.lake/build/bin/repl

The project comes from the `project` option (config key `verifier.lean_repl.project`, CLI
`--lean-project`), else `$DMVR_LEAN_PROJECT`, else `~/.cache/dmvr/lean/project` if it exists. The
REPL binary comes from `repl` (`verifier.lean_repl.repl`, `--lean-repl`), else the layout above.

`command` replaces all of this with any command that speaks the REPL protocol (tests use a fake
REPL written in Python). Every failure raises `LeanSetupError` with what is missing and how to
fix it; the CLI prints it and exits with status 2, never a verdict.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

from lean_env.verifier import BackendUnavailableError

DEFAULT_LEAN_DIR = Path.home() / ".cache" / "dmvr" / "lean"
SETUP_HINT = ("Set it up with `make lean-setup` (needs internet and elan, see README \"Real Lean\"), "
              "or point the backend at an existing one")


class LeanSetupError(BackendUnavailableError):
    """Lean, lake, the project or the REPL binary is missing or unusable."""


@dataclass(frozen=True)
class WorkerCommand:
    argv: list[str]
    cwd: str | None
    description: str  # what the version string says about the set-up (toolchain, Mathlib rev)


def resolve(project: str | None = None, repl: str | None = None,
            command: str | list[str] | None = None) -> WorkerCommand:
    """The command a worker runs, after checking that everything it needs exists."""
    if command:
        argv = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
        if not argv:
            raise LeanSetupError("the lean_repl `command` option is empty")
        if shutil.which(argv[0]) is None and not Path(argv[0]).is_file():
            raise LeanSetupError(f"lean_repl command {argv[0]!r} (option `command`, config key "
                                 f"verifier.lean_repl.command) is not an executable or a file")
        cwd = str(Path(project).expanduser()) if project else None
        return WorkerCommand(argv, cwd, "command=" + shlex.join(argv))

    project_dir = _find_project(project)
    lake = find_lake()
    if lake is None:
        raise LeanSetupError(
            "lean_repl needs `lake` (the Lean build tool, installed with elan), and there is none on "
            "PATH or in $ELAN_HOME/bin or ~/.elan/bin. Install elan "
            "(https://github.com/leanprover/elan), then run `make lean-setup` (see README \"Real Lean\").")
    repl_bin = Path(repl).expanduser() if repl else project_dir.parent / "repl" / ".lake" / "build" / "bin" / "repl"
    if not repl_bin.is_file():
        raise LeanSetupError(
            f"the Lean REPL binary {repl_bin} does not exist. Build leanprover-community/repl with "
            f"`lake build` at the project's Lean version and set its path with --lean-repl or "
            f"verifier.lean_repl.repl. {SETUP_HINT}.")
    return WorkerCommand([lake, "env", str(repl_bin.resolve())], str(project_dir), describe_project(project_dir))


def _find_project(project: str | None) -> Path:
    candidates = [(project, "the `project` option (--lean-project, verifier.lean_repl.project)"),
                  (os.environ.get("DMVR_LEAN_PROJECT"), "$DMVR_LEAN_PROJECT")]
    for value, where in candidates:
        if value:
            path = Path(value).expanduser()
            _check_project(path, where)
            return path.resolve()
    default = DEFAULT_LEAN_DIR / "project"
    if default.is_dir():
        _check_project(default, "the default location")
        return default.resolve()
    raise LeanSetupError(
        "lean_repl needs a Lean project (with Mathlib, or core Lean only) and none is configured: "
        "pass --lean-project DIR, set verifier.lean_repl.project=DIR (Hydra) or $DMVR_LEAN_PROJECT. "
        f"{SETUP_HINT}; `make lean-setup` puts one in {default}.")


def _check_project(path: Path, where: str) -> None:
    if not path.is_dir():
        raise LeanSetupError(f"Lean project {path} (from {where}) does not exist. {SETUP_HINT}.")
    if not any((path / f).is_file() for f in ("lakefile.lean", "lakefile.toml")):
        raise LeanSetupError(f"{path} (from {where}) is not a Lean project: it has no lakefile.lean "
                             f"or lakefile.toml. {SETUP_HINT}.")
    if not (path / "lean-toolchain").is_file():
        raise LeanSetupError(f"Lean project {path} has no lean-toolchain file, so its Lean version is "
                             f"unknown. {SETUP_HINT}.")


def find_lake() -> str | None:
    found = shutil.which("lake")
    if found:
        return found
    for home in (os.environ.get("ELAN_HOME"), str(Path.home() / ".elan")):
        if home and (Path(home) / "bin" / "lake").is_file():
            return str(Path(home) / "bin" / "lake")
    return None


def describe_project(project_dir: Path) -> str:
    """`toolchain=… mathlib=…`: what in the project changes verdicts (part of the cache key)."""
    toolchain = (project_dir / "lean-toolchain").read_text().strip()
    revs = []
    manifest = project_dir / "lake-manifest.json"
    if manifest.is_file():
        try:
            packages = json.loads(manifest.read_text()).get("packages", [])
            revs = [f"{p.get('name')}@{str(p.get('rev', ''))[:12]}" for p in packages if isinstance(p, dict)]
        except (ValueError, AttributeError):
            revs = ["unreadable-manifest"]
    return f"toolchain={toolchain} packages={','.join(sorted(revs)) or 'none'}"
