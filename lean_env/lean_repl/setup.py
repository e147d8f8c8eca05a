"""Finding what a `lean_repl` worker runs, or saying exactly what is missing.

By default a worker is the REPL binary run inside a Lean project (a folder with a
`lakefile.lean`/`lakefile.toml` and a `lean-toolchain`, whose dependencies, e.g. Mathlib, are
built), in the environment `lake env` gives (LEAN_PATH, LEAN_SRC_PATH, PATH, ...), as
`scripts/setup_lean_repl.sh` lays it out:

    <lean dir>/project   the Lean project (Mathlib as a dependency)
    <lean dir>/repl      leanprover-community/repl, built: <lean dir>/repl/.lake/build/bin/repl

The project comes from the `project` option (config key `verifier.lean_repl.project`, CLI
`--lean-project`), else `$DMVR_LEAN_PROJECT`, else `~/.cache/dmvr/lean/project` if it exists. The
REPL binary comes from `repl` (`verifier.lean_repl.repl`, `--lean-repl`), else the layout above.

Why not simply run `lake env <repl>` as the worker: `lake` starts the REPL as its *child* and
waits. The pool kills a worker's whole process group, so a timeout or `close()` takes both down,
but when our process is killed outright (SIGKILL, the OOM killer) only the direct child gets the
kernel's parent-death signal: `lake` dies, and the REPL, orphaned, runs on (with its gigabytes of
Mathlib) until it next reads its input. So `lake env` is asked once, at start-up, for the
environment it would set (`lake env env -0`, run with the workers' stripped environment, so
nothing secret comes back), and every worker execs the REPL binary itself in that environment:
the worker process *is* the REPL, and the parent-death signal reaches it. `lake_env_wrapper=True`
brings back `lake env <repl>` per worker (for a lake whose `env` does more than set variables).

`command` replaces all of this with any command that speaks the REPL protocol (tests use a fake
REPL written in Python). Every failure raises `LeanSetupError` with what is missing and how to
fix it; the CLI prints it and exits with status 2, never a verdict.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from collections.abc import Mapping
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
    env: dict[str, str] | None = None  # the workers' whole environment; None: the caller's default


def resolve(project: str | None = None, repl: str | None = None,
            command: str | list[str] | None = None, *, lake_env_wrapper: bool = False,
            env: Mapping[str, str] | None = None, lake_timeout: float = 600.0) -> WorkerCommand:
    """The command a worker runs, after checking that everything it needs exists.

    `env` is the (stripped) environment workers would get; for the default REPL set-up the result
    carries it as `lake env` extends it (see the module docstring), else the result's env is None.
    `lake_timeout` bounds that one `lake env` call (elan may first install the project's toolchain).
    """
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
    repl_path = str(repl_bin.resolve())
    if lake_env_wrapper:
        return WorkerCommand([lake, "env", repl_path], str(project_dir), describe_project(project_dir))
    base = dict(os.environ if env is None else env)
    return WorkerCommand([repl_path], str(project_dir), describe_project(project_dir),
                         env=lake_environment(lake, project_dir, base, timeout=lake_timeout))


def lake_environment(lake: str, project_dir: Path, env: Mapping[str, str], timeout: float = 600.0) -> dict[str, str]:
    """The environment `lake env` sets up in `project_dir`, starting from `env`.

    `env -0` (NUL-separated, so values with newlines survive) rather than parsing lake's own
    output format, which is not a stable interface. Only what `env` holds plus what lake adds comes
    back: our own environment (tokens, keys) is not passed to lake.
    """
    argv = [lake, "env", "env", "-0"]
    hint = ("check that the project is set up (`lake build` in it), or set lean_repl.lake_env_wrapper=true "
            "to start every worker as `lake env <repl>`")
    try:
        proc = subprocess.run(argv, cwd=project_dir, env=dict(env), stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise LeanSetupError(f"`{shlex.join(argv)}` in {project_dir} did not finish within {timeout:g} s; "
                             f"{hint}") from None
    except OSError as e:
        raise LeanSetupError(f"cannot run `{shlex.join(argv)}` in {project_dir}: {e}; {hint}") from None
    stderr = " | ".join(line for line in proc.stderr.decode("utf-8", "replace").strip().splitlines()[-10:]
                        if line.strip())
    if proc.returncode != 0:
        raise LeanSetupError(f"`{shlex.join(argv)}` in {project_dir} failed with exit status {proc.returncode}"
                             f"{': ' + stderr[-1000:] if stderr else ''}; {hint}")
    result: dict[str, str] = {}
    for entry in proc.stdout.split(b"\0"):
        if not entry:
            continue
        key, sep, value = entry.partition(b"=")
        if not sep or not key or any(c in key for c in b" \t\n"):
            excerpt = proc.stdout[:200].decode("utf-8", "replace")
            raise LeanSetupError(f"`{shlex.join(argv)}` in {project_dir} did not print an environment "
                                 f"(NUL-separated NAME=VALUE), but {excerpt!r}; {hint}")
        result[os.fsdecode(key)] = os.fsdecode(value)  # fsdecode: odd bytes go back out unchanged
    if not result:
        raise LeanSetupError(f"`{shlex.join(argv)}` in {project_dir} printed no environment"
                             f"{' (stderr: ' + stderr[-1000:] + ')' if stderr else ''}; {hint}")
    if "LEAN_PATH" not in result:
        # Real `lake env` always sets it; without it the REPL cannot even find `Init`.
        raise LeanSetupError(f"`{shlex.join(argv)}` in {project_dir} printed no LEAN_PATH, so it is not the "
                             f"environment of a Lean project; {hint}")
    return result


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
