"""Fault injection for the resumption tests: `DMVR_FAULT=stage:counter=N` makes the process SIGKILL
itself when `stage` reaches `counter` N (e.g. `sample:shard=1` after shard 1 is written,
`train:step=3` after the third optimiser step). A self-inflicted SIGKILL is the same event as one
from outside (no handlers, no cleanup), but it lands at a known point, so the test is deterministic.
Unset in normal runs, where `maybe_die` costs one dict lookup.
"""

from __future__ import annotations

import os
import signal


def maybe_die(stage: str, counter: str, value: int) -> None:
    spec = os.environ.get("DMVR_FAULT")
    if spec and spec == f"{stage}:{counter}={value}":
        os.kill(os.getpid(), signal.SIGKILL)
