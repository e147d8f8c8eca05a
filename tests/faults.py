"""Killing a stage in-process at a chosen point, for the resume tests: the stage module's
`maybe_die` (pipeline/faults.py, which SIGKILLs under DMVR_FAULT) raises `Killed` there instead."""


class Killed(Exception):
    """Stands for the process being killed at the chosen point."""


def kill_at(monkeypatch, module, stage: str, counter: str, value: int) -> None:
    """Make `module.maybe_die` raise Killed when it is called with (stage, counter, value)."""

    def die(*point):
        if point == (stage, counter, value):
            raise Killed

    monkeypatch.setattr(module, "maybe_die", die)
