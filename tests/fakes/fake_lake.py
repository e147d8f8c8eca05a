#!/usr/bin/env python3
"""A stand-in for `lake env`, the one part of lake the lean_repl backend uses.

    python tests/fakes/fake_lake.py env [CMD ARGS...]

As real lake: run in a project folder, `env` adds the project's variables to the environment
(LEAN_PATH, LEAN_SRC_PATH, a toolchain folder in front of PATH, LAKE, plus FAKE_LAKE=1 so tests
can tell), then runs CMD as a *child* and waits for it (which is why a REPL under `lake env`
outlives a `lake` killed by the parent-death signal), or prints the environment without CMD.

A file `fake-lake-mode` in the project folder makes `env` misbehave: `fail` (a lake error on
stderr, exit status 1), `garbage` (text that is not an environment), `empty` (no output),
`no-lean-path` (an environment without LEAN_PATH). Every call appends its arguments to
`fake-lake.log` there, so tests can count them.
"""

import os
import subprocess
import sys


def main():
    args = sys.argv[1:]
    if not args or args[0] != "env":
        print(f"fake lake: unsupported command {args!r}", file=sys.stderr)
        return 2
    with open("fake-lake.log", "a") as log:
        log.write(" ".join(args) + "\n")
    mode = open("fake-lake-mode").read().strip() if os.path.exists("fake-lake-mode") else ""
    if mode == "fail":
        print("error: lakefile.toml: unknown package 'mathlib'", file=sys.stderr)
        return 1
    if mode == "garbage":
        sys.stdout.write("info: downloading toolchain\nthis is not an environment\n")
        return 0
    if mode == "empty":
        return 0
    project = os.getcwd()
    env = dict(os.environ)
    if mode != "no-lean-path":
        env["LEAN_PATH"] = f"{project}/.lake/packages/mathlib/.lake/build/lib:{project}/.lake/build/lib"
    env["LEAN_SRC_PATH"] = f"{project}/.lake/packages/mathlib:{project}"
    env["PATH"] = f"{project}/fake-toolchain/bin:{env.get('PATH', '')}"
    env["LAKE"] = os.path.abspath(sys.argv[0])
    env["FAKE_LAKE"] = "1"
    command = args[1:] or ["env"]
    return subprocess.run(command, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
