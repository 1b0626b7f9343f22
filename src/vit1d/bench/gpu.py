"""What bounds a training step on a GPU: launches, kernels or data.

A step is **launch-bound** when the GPU waits between kernels for the CPU to issue them: the
kernels' busy time is well below the step's wall time
(:func:`vit1d.bench.timing.step_breakdown`). It is **data-bound** when the real loop
(``vit1d pretrain``) is slower than the same step on a fixed batch. Otherwise it is
**kernel-bound**, and the kernel categories say where: matrix products, attention, the
element-wise and normalisation kernels, the optimizer.

:func:`matrix_rates` says how fast the model's own products can go. A product of an
``(M, K)`` by a ``(K, N)`` matrix in bf16 does ``2 M K N`` FLOP on about ``2 (M K + K N + M N)``
bytes; for ``M`` large its arithmetic intensity is ``K N / (K + N)`` FLOP per byte, 154 for
the MLP of a 192-wide model (``K = 192, N = 768``), below the ~200 at which an H200 stops
being bound by its memory. So the ViT-1D's products run far from the chip's peak whatever
the launch pattern, and the whole step is bound by memory traffic once launches are hidden.

:func:`step_variants` times the project's step eager and compiled (``torch.compile``, and its
``reduce-overhead`` mode, which replays CUDA graphs), with the optimizer's per-tensor kernels
(``foreach``) or one fused kernel, against the fp32 eager reference, in alternation.
Used by ``scripts/gpu_check.py`` (README "On a GPU: the authors' scale"); every function also
runs on a CPU (with operators in place of kernels) so that the tests can check it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from vit1d.bench.timing import interleaved_medians, mean_seconds, step_breakdown
from vit1d.bench.training import mlp_product_shapes, training_step
from vit1d.models.model import ViT1D


def matrix_rates(
    model: ViT1D, pairs: int, device: torch.device, square: int = 8192, copy_mib: int = 1024
) -> dict[str, Any]:
    """bf16 TFLOP/s of the model's MLP products at a step's rows (``2 pairs (1 + frames)``),
    of one large square product (the chip's practical peak), and the copy bandwidth (GB/s,
    read + write) of ``copy_mib`` MiB: the ceilings a step's kernels are measured against."""
    dtype = torch.bfloat16
    shapes = mlp_product_shapes(model, pairs)
    rows, dim, hidden = shapes["up"]
    reps = 20 if device.type == "cuda" else 2
    out: dict[str, Any] = {"rows": rows, "dim": dim, "hidden": hidden}
    for name, (m, k, n) in {
        "mlp_up": shapes["up"],
        "mlp_down": shapes["down"],
        "square": (square, square, square),
    }.items():
        a = torch.randn(m, k, device=device, dtype=dtype)
        b = torch.randn(k, n, device=device, dtype=dtype)
        seconds = mean_seconds(lambda a=a, b=b: torch.mm(a, b), device, reps)
        out[f"{name}_tflops"] = round(2 * m * k * n / seconds / 1e12, 3)
        out[f"{name}_flop_per_byte"] = round(m * k * n / (m * k + k * n + m * n), 1)
    src = torch.empty(copy_mib * 2**20, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    seconds = mean_seconds(lambda: dst.copy_(src), device, reps)
    out["copy_gb_per_s"] = round(2 * src.numel() / seconds / 1e9, 1)
    return out


def step_variants(
    device: torch.device,
    pairs: int,
    steps: int = 20,
    warmup: int = 3,
    compile_modes: tuple[str, ...] = ("default", "reduce-overhead"),
    model_kwargs: dict[str, Any] | None = None,
    breakdown_of: tuple[str, ...] = ("bf16 eager", "bf16 compiled, fused AdamW"),
) -> dict[str, Any]:
    """Training views/s of each way to run the project's step (bf16 autocast, fused
    attention), as ratios to the fp32 eager reference timed in alternation, and
    :func:`step_breakdown` of those named in ``breakdown_of``. A compile mode that fails is
    reported and left out."""

    def fresh() -> ViT1D:
        torch.manual_seed(0)
        return ViT1D(**(model_kwargs or {}))

    precision = "bf16"
    steps_by_name: dict[str, Callable[[], None]] = {
        "fp32 eager (reference)": training_step(fresh(), device, "fp32", False, pairs),
        "bf16 eager": training_step(fresh(), device, precision, True, pairs),
        "bf16 eager, fused AdamW": training_step(
            fresh(), device, precision, True, pairs, fused_adamw=True
        ),
    }
    notes: list[str] = []
    for mode in compile_modes:
        for fused_adamw in (False, True):
            name = f"bf16 compiled{'' if mode == 'default' else f' ({mode})'}" + (
                ", fused AdamW" if fused_adamw else ""
            )
            try:
                fn = training_step(
                    fresh(), device, precision, True, pairs, True, compile_mode=mode,
                    fused_adamw=fused_adamw,
                )  # fmt: skip
                fn()  # compiles here, so that a failure is reported rather than raised
                steps_by_name[name] = fn
            except Exception as exc:  # inductor may lack a compiler; report and go on
                notes.append(f"{name} failed: {type(exc).__name__}: {str(exc)[:200]}")
    seconds = interleaved_medians(steps_by_name, steps, warmup)
    views = {k: 2 * pairs / v for k, v in seconds.items()}
    ref = views["fp32 eager (reference)"]
    return {
        "pairs": pairs,
        "views_per_s": {k: round(v, 1) for k, v in views.items()},
        "ratio_to_fp32_eager": {k: round(v / ref, 3) for k, v in views.items()},
        "breakdown": {
            name: step_breakdown(steps_by_name[name], device)
            for name in breakdown_of
            if name in steps_by_name
        },
        "notes": notes,
    }


def record_row(record: dict[str, Any], paper_steps: int) -> dict[str, Any] | None:
    """One row of the reproducibility appendix's table of GPU records (``gpu_check.json``):
    the real loop's speed and memory, the hours the paper's ``paper_steps`` would take, the
    fastest compiled step against the fp32 eager reference, and the GPU's busy fraction in
    it. Reads both layouts (the first record's ``bench_compile``; ``variants`` since)."""
    run = record.get("paper")
    if not run:
        return None
    variants = record.get("variants")
    busy = float("nan")
    if variants:
        compiled = {k: v for k, v in variants["ratio_to_fp32_eager"].items() if "compiled" in k}
        best = max(compiled, key=compiled.get) if compiled else None
        speedup = compiled[best] if best else float("nan")
        if best in variants.get("breakdown", {}):
            busy = variants["breakdown"][best]["busy_fraction"]
    else:
        speedup = record.get("bench_compile", {}).get("train_speedup", float("nan"))
    eager = record.get("paper_eager") or {}
    return {
        "GPU": run["hardware"].get("gpu", run["hardware"]["device"]),
        "torch": run["hardware"]["torch"],
        "precision": run["precision"],
        "views/s (median)": round(run["views_per_s_median"]),
        "views/s eager": round(eager["views_per_s_median"]) if eager else float("nan"),
        "peak GPU memory (GiB)": run.get("gpu_peak_memory_gib") or float("nan"),
        "steps run": run["steps"],
        "hours for the paper's steps": round(
            paper_steps * run["views_per_step"] / run["views_per_s_median"] / 3600, 1
        ),
        "compiled vs fp32 eager": speedup,
        "GPU busy (compiled step)": busy,
    }


def breakdown_table(record: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Milliseconds of kernel time per step by category (rows) for each variant profiled in
    a ``gpu_check.json`` (columns), with the step's wall time and the kernels it launches as
    the last rows: where the time goes, and how much of the step the GPU waits."""
    table: dict[str, dict[str, float]] = {}
    for variant, b in (record.get("variants") or {}).get("breakdown", {}).items():
        column = {cat: c["ms"] for cat, c in b["categories"].items()}
        column["kernels' busy time"] = b["busy_ms"]
        column["wall time of the step"] = b["wall_ms"]
        column["kernels launched"] = b["kernels_per_step"]
        table[variant] = column
    return table
