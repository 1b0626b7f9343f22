"""Timing and profiling of a closure (a training step): medians in alternation, and where
its time goes by kernel category and kernel (:func:`step_breakdown`: on a GPU its kernels,
and their busy time against the step's wall time; on a CPU its operators' self times). Used
by :mod:`vit1d.bench.training` and :mod:`vit1d.bench.suite` (``make bench``) and
:mod:`vit1d.bench.gpu` (``scripts/gpu_check.py``)."""

from __future__ import annotations

import contextlib
import os
import re
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_medians(
    steps: dict[str, Callable[[], None]], reps: int, warmup: int
) -> dict[str, float]:
    """Median seconds per call of each closure, timed in alternation (A, B, A, B, ...), so
    that a background load or frequency change slows every setting alike and their ratio
    stays fair."""
    for fn in steps.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(reps):
        for name, fn in steps.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(v) for name, v in times.items()}


def mean_seconds(fn: Callable[[], Any], device: torch.device, reps: int) -> float:
    """Mean seconds per call of ``fn`` over ``reps`` calls after one warm-up, synchronising
    the device once before and once after (for kernels too short to time one by one)."""
    fn()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    sync(device)
    return (time.perf_counter() - t0) / reps


@contextlib.contextmanager
def c_stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null for a while: the profiler's C++ side prints
    start/stop lines there that no Python setting turns off (they would land in the book)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


# First match wins: the inductor's generated kernels are named triton_<kind>_fused_<ops>.
CATEGORIES: list[tuple[str, re.Pattern[str]]] = [
    ("attention", re.compile(r"flash|fmha|attention|sdpa", re.I)),
    (
        "matrix products",
        re.compile(r"gemm|nvjet|cutlass|xmma|cublas|wgmma|^aten::(mm|addmm|bmm)$", re.I),
    ),
    ("optimizer", re.compile(r"multi_tensor|adam|foreach", re.I)),
    ("norm and reductions", re.compile(r"norm|reduc|red_fused|per_fused|softmax|sum|mean", re.I)),
    ("copies and casts", re.compile(r"copy|memcpy|memset|cast|fill|^aten::to$|_to_copy", re.I)),
    (
        "element-wise",
        re.compile(
            r"elementwise|vectorized|unrolled|pointwise|poi_fused|triton|gelu|add|mul", re.I
        ),
    ),
]


def kernel_category(name: str) -> str:
    """The category of a kernel (or, on a CPU, an operator) from its name; ``other`` if none."""
    for category, pattern in CATEGORIES:
        if pattern.search(name):
            return category
    return "other"


def step_breakdown(
    step: Callable[[], None],
    device: torch.device,
    calls: int = 5,
    top: int = 8,
    wall: float | None = None,
) -> dict[str, Any]:
    """Wall time of ``step`` against the time its kernels keep the GPU busy, per call.

    The wall time is measured without the profiler (its own overhead would slow the CPU's
    launches); the kernels' durations come from one profiled run of ``calls`` calls. On one
    stream, busy/wall is the fraction of the step the GPU computes; the rest it waits for
    launches (or for the host). On a CPU the "kernels" are the operators, by self time."""
    if wall is None:  # seconds per call, when not timed already
        wall = interleaved_medians({"step": step}, reps=max(calls, 3), warmup=2)["step"]
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with c_stderr_silenced(), profile(activities=activities) as prof:
        for _ in range(calls):
            step()
        sync(device)
    if device.type == "cuda":
        kernels = [e for e in prof.events() if e.device_type != torch.autograd.DeviceType.CPU]
        durations = [e.time_range.elapsed_us() for e in kernels]
    else:  # operators' self times partition the CPU's time without counting any twice
        kernels = [e for e in prof.events() if e.self_cpu_time_total > 0]
        durations = [e.self_cpu_time_total for e in kernels]
    busy_us = sum(durations) / calls
    by_cat: dict[str, list[float]] = {}
    by_name: dict[str, float] = {}
    for e, duration in zip(kernels, durations, strict=True):
        us = duration / calls
        by_cat.setdefault(kernel_category(e.name), []).append(us)
        by_name[e.name] = by_name.get(e.name, 0.0) + us
    total = busy_us or 1.0
    return {
        "wall_ms": round(wall * 1000, 3),
        "busy_ms": round(busy_us / 1000, 3),
        "busy_fraction": round(busy_us / 1e6 / wall, 3),
        "kernels_per_step": round(len(kernels) / calls, 1),
        "mean_kernel_us": round(busy_us / max(len(kernels) / calls, 1), 2),
        "categories": {
            cat: {
                "ms": round(sum(v) / 1000, 3),
                "share": round(sum(v) / total, 4),
                "kernels": round(len(v) / calls, 1),
            }
            for cat, v in sorted(by_cat.items(), key=lambda kv: -sum(kv[1]))
        },
        "top": [
            {"kernel": name[:120], "ms": round(us / 1000, 3), "share": round(us / total, 4)}
            for name, us in sorted(by_name.items(), key=lambda kv: -kv[1])[:top]
        ],
    }
