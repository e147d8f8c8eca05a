"""pipeline.context: the allocator setting every pipeline process gets."""

import os
import subprocess
import sys

import pytest

from pipeline.context import MALLOC_TUNABLES

CHILD = """
import os, subprocess, sys
from pipeline.context import keep_freed_memory
print(keep_freed_memory())
print(os.environ.get("GLIBC_TUNABLES", "-"))
# a process this one starts inherits the setting
print(subprocess.run([sys.executable, "-c", "import os; print(os.environ.get('GLIBC_TUNABLES', '-'))"],
                     capture_output=True, text=True, check=True).stdout.strip())
"""


def run_child(**env):
    clean = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "DMVR_KEEP_FREED_MEMORY")}
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True,
                         env={**clean, **env}).stdout.split("\n")
    return out[0], out[1], out[2]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_keep_freed_memory_sets_this_process_and_its_children():
    done, here, child = run_child()
    assert (done, here, child) == ("True", MALLOC_TUNABLES, MALLOC_TUNABLES)


def test_keep_freed_memory_leaves_a_users_setting_alone_and_can_be_turned_off():
    assert run_child(GLIBC_TUNABLES="glibc.malloc.arena_max=2") == (
        "False", "glibc.malloc.arena_max=2", "glibc.malloc.arena_max=2")
    assert run_child(DMVR_KEEP_FREED_MEMORY="0") == ("False", "-", "-")
