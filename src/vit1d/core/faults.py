"""Named points where a fault test stops a process, so that its SIGKILL lands where it means to.

The fault tests kill ``vit1d pretrain``, ``vit1d probe`` and ``vit1d corpus`` in the middle
of their work, then check that running the same command again ends where an uninterrupted
run ends. Watching the output folder for progress and killing when it shows is a race: the
watcher can notice the point late (the run is past it, or done) or the run can get there in
an unexpected state. Instead the library calls :func:`reached` at a few named points, and a
test that sets the environment variable::

    VIT1D_FAULT_POINT=<name>@<n>=<marker path>

makes the process that reaches point ``name`` for the ``n``-th time (``@<n>`` may be left
out: the first time) write the marker file and wait there, for at most :data:`WAIT_S`
seconds, then raise. The test waits for the marker and kills the process while it stands
exactly at that point. Without the variable (every real run) a point only reads the
environment.

Points:

* ``checkpoint``: pretraining, after a checkpoint and the ``latest`` pointer to it are on
  disk (:func:`vit1d.pretrain.train.pretrain`);
* ``shard``: feature extraction, after one more cache shard is complete (:mod:`vit1d.features.embed`);
* ``render``: corpus build, after one more render job is done, in the process that ran it
  (:func:`vit1d.corpus.build.build_corpus`): each render worker counts its own, so with
  ``w`` workers between ``n`` and ``w * n`` renders are on disk when the first one stops.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

from vit1d.core import atomic

ENV = "VIT1D_FAULT_POINT"
#: How long a process waits at its fault point to be killed before it gives up and raises.
WAIT_S = 300.0

_seen: Counter[str] = Counter()


def _parse(spec: str) -> tuple[str, int, Path]:
    point, sep, marker = spec.partition("=")
    name, _, count = point.partition("@")
    if not sep or not name or not marker or (count and not count.isdigit()):
        raise ValueError(f"{ENV} must look like <name>@<n>=<marker path>, got {spec!r}")
    return name.strip(), int(count or 1), Path(marker)


def reached(name: str) -> None:
    """Mark that this process reached the fault point ``name`` (see the module docstring)."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    wanted, count, marker = _parse(spec)
    if name != wanted:
        return
    _seen[name] += 1
    if _seen[name] != count:
        return
    # the test sees the whole marker or none
    atomic.write_text(marker, f"{name}@{count} pid {os.getpid()}\n", fsync=False)
    time.sleep(WAIT_S)
    raise RuntimeError(f"fault point {name}@{count}: not killed within {WAIT_S:.0f} s")
