"""The allocator setting that keeps freed memory in the process (vit1d.core.memory): page
faults counted by the kernel (getrusage) while a step-like pattern of large buffers is
allocated, written and freed, with the C library's default and with the setting."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from vit1d.core import memory

# Allocates 24 buffers of about 8 MiB (as a step's saved activations), writes them and frees
# them all, five times, each round's buffers a little larger (as glibc's default threshold
# follows the largest block freed, a larger block is mapped afresh); reports the minor page
# faults of the last three rounds.
ROUNDS = """
import json, resource, sys
import torch
from vit1d.core.memory import keep_freed_memory, memory_setting
kept = keep_freed_memory() if sys.argv[1] == "keep" else False
faults = []
for r in range(5):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    bufs = [torch.ones((32 + r) * 64 * 1024) for _ in range(24)]
    del bufs
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"kept": kept, "setting": memory_setting(), "faults": faults[2:]}))
"""
PAGES_PER_ROUND = 24 * 32 * 64 * 1024 * 4 // 4096  # the smallest round

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting is glibc's")


def _rounds(mode: str, env: dict[str, str] | None = None) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", ROUNDS, mode],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **(env or {})},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@glibc
def test_kept_memory_is_reused_without_faults() -> None:
    default, kept = _rounds("default"), _rounds("keep")
    # the default maps every round's buffers afresh: each page faults in again
    assert not default["kept"] and default["setting"] == "C library default"
    assert min(default["faults"]) > PAGES_PER_ROUND * 9 // 10
    assert kept["kept"] and kept["setting"].startswith("freed memory kept")
    assert max(kept["faults"]) < PAGES_PER_ROUND // 10  # only the heap's growth


@glibc
def test_environment_turns_it_off() -> None:
    off = _rounds("keep", {memory.ENV: "0"})
    assert not off["kept"] and min(off["faults"]) > PAGES_PER_ROUND * 9 // 10


def test_select_device_keeps_memory_and_records_it() -> None:
    from vit1d.models.device import hardware_summary, select_device

    device = select_device("cpu")
    expected = memory.keep_freed_memory()
    assert hardware_summary(device)["memory"] == memory.memory_setting()
    assert memory.memory_setting().startswith("freed memory kept") == expected
