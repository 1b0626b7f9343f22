"""Extraction threads: all cores unless other work keeps more than half of them busy, judged
from the CPU time spent now (``/proc/stat``), not from a load average that still counts the
training run that just finished."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from vit1d.features import embed


def test_busy_cores_sees_a_spinning_process() -> None:
    if not os.path.exists("/proc/stat"):
        pytest.skip("no /proc/stat on this platform")
    idle = embed.busy_cores(0.3)
    assert idle is not None and 0.0 <= idle <= (os.cpu_count() or 1)
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        busy = embed.busy_cores(0.5)
    finally:
        spin.kill()
        spin.wait()
    assert busy is not None and busy >= 0.6  # one core spinning, whatever else runs


def test_threads_follow_the_cores_in_use(monkeypatch) -> None:
    cores = os.cpu_count() or 1
    all_threads = max(1, min(cores, torch.get_num_threads()))
    monkeypatch.setattr(embed.os, "getloadavg", lambda: (float(cores), 0.0, 0.0))
    monkeypatch.setattr(embed, "busy_cores", lambda: 0.1)  # a stale load average is ignored
    assert embed.inference_threads() == all_threads
    monkeypatch.setattr(embed, "busy_cores", lambda: 0.6 * cores)
    assert embed.inference_threads() == 1
    assert embed.inference_threads(3) == 3  # asked for: given
    monkeypatch.setattr(embed, "busy_cores", lambda: None)  # no /proc/stat: the load average
    assert embed.inference_threads() == 1
    monkeypatch.setattr(embed.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert embed.inference_threads() == all_threads


def test_each_shard_chooses_its_threads_again(monkeypatch, tmp_path, audio_dir) -> None:
    """Other work at the start of an extraction holds only the first shard to one thread:
    the count is judged again before every shard, and each shard records its own."""
    from vit1d.features.sources import ModelSpec

    cores = os.cpu_count() or 1
    if cores < 2:
        pytest.skip("one core: one thread either way")
    busy = iter([0.9 * cores] + [0.0] * 10)
    monkeypatch.setattr(embed, "busy_cores", lambda: next(busy))
    spec = ModelSpec("random", config={"dim": 16, "depth": 1, "heads": 2, "head": "none"}, seed=0)
    files = sorted(audio_dir.glob("*.wav"))[:4]
    out = embed.embed(spec, files, cache_dir=tmp_path, precision="fp32", progress=False,
                      shard_seconds=15.0, frames=True)  # fmt: skip
    threads = [sh.index["timing"]["threads"] for sh in out._store.shards]
    assert (
        len(threads) >= 2
        and threads[0] == 1
        and set(threads[1:]) == {min(cores, torch.get_num_threads())}
    )
    assert out.provenance["threads"] == max(threads)
