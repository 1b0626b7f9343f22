"""Training and inference throughput: the project's path against an fp32 eager reference,
its scaling with batch size and sequence length, and where a step's time goes."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from vit1d.audio.frontend import LogMel
from vit1d.bench.timing import interleaved_medians, step_breakdown, sync
from vit1d.models.device import (
    autocast,
    choose_fused_attention,
    choose_precision,
    cpu_bf16_speedup,
    hardware_summary,
    select_device,
)
from vit1d.models.model import ViT1D
from vit1d.pretrain.losses import NTXent

CLIP_SECONDS = 4.0


def training_step(
    model: ViT1D,
    device: torch.device,
    precision: str,
    fused: bool,
    pairs: int,
    compile_model: bool = False,
    compile_mode: str = "default",
    fused_adamw: bool = False,
) -> Callable[[], None]:
    """A closure running one full training step on a fixed random batch of ``2 * pairs``
    views: forward, NT-Xent, backward, AdamW (its per-tensor ``foreach`` kernels, or one fused
    kernel with ``fused_adamw``). ``compile_mode``: ``torch.compile``'s mode when compiling."""
    model = model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=fused_adamw or None)
    loss_fn = NTXent(0.1)

    def forward(x: torch.Tensor) -> torch.Tensor:
        return model.project(model(x, fused=fused).cls)

    fn = torch.compile(forward, mode=compile_mode) if compile_model else forward
    x = torch.randn(2 * pairs, model.max_frames, model.n_mels, device=device) * 20 - 40

    def step() -> None:
        with autocast(device, precision):
            z = fn(x)
        loss_fn(z[:pairs], z[pairs:]).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync(device)

    return step


def pure_bf16_training_step(model: ViT1D, pairs: int, fused: bool) -> Callable[[], None]:
    """A training step with bf16 weights and activations throughout and fp32 master copies
    that AdamW updates (the weights are cast once per step, after the update, instead of by
    autocast at every matmul of forward and backward). CPU only; the loss is taken in fp32."""
    model = model.train()
    masters = [p.detach().float().clone().requires_grad_(True) for p in model.parameters()]
    model = model.to(torch.bfloat16)
    params = list(model.parameters())
    opt = torch.optim.AdamW(masters, lr=1e-4)
    loss_fn = NTXent(0.1)
    x = (torch.randn(2 * pairs, model.max_frames, model.n_mels) * 20 - 40).to(torch.bfloat16)

    def step() -> None:
        z = model.project(model(x, fused=fused).cls).float()
        loss_fn(z[:pairs], z[pairs:]).backward()
        for m, p in zip(masters, params, strict=True):
            m.grad = p.grad.float()
            p.grad = None
        opt.step()
        opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            for m, p in zip(masters, params, strict=True):
                p.copy_(m)

    step.masters = masters  # type: ignore[attr-defined]  # for inspection by tests
    return step


def mlp_product_shapes(model: ViT1D, pairs: int) -> dict[str, tuple[int, int, int]]:
    """``(M, K, N)`` of the model's largest products in a step of ``pairs`` pairs: the MLP's
    ``(2 pairs (1 + frames), dim) x (dim, hidden)`` (``up``) and its transpose (``down``)."""
    rows = 2 * pairs * (1 + model.max_frames)
    hidden = int(model.dim * model.config["mlp_ratio"])
    return {"up": (rows, model.dim, hidden), "down": (rows, hidden, model.dim)}


def matmul_ceiling(
    model: ViT1D, pairs: int = 32, reps: int = 5, warmup: int = 2, square: int = 1024
) -> dict[str, Any]:
    """What the CPU's matrix units allow a training step in bf16 against fp32: GFLOP/s of
    the model's own largest products (the MLP's ``(2 pairs (1 + frames), dim) x (dim, 4 dim)``
    and its transpose), in fp32 and in bf16, timed in alternation. Their ratio bounds what any
    bf16 path can gain over fp32 where, as in this model, the products take most of a step's
    time (:func:`~vit1d.bench.timing.step_breakdown`); the training variants are reported
    against it.

    A ``square`` x ``square`` product, timed with them, runs both precisions near their peaks
    and so gives the units' own ratio: about 2 where bf16 runs on AVX512-BF16's dot products
    (two bf16 multiply-adds per fp32 lane against one fused multiply-add), far more with AMX
    tiles. The model's shapes can show a higher ratio only where fp32 runs them further below
    its peak than bf16 does.
    """
    shapes = mlp_product_shapes(model, pairs)
    sizes = {**shapes, "square": (square, square, square)}
    calls: dict[str, Callable[[], None]] = {}
    for dtype_name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        for name, (m, k, n) in sizes.items():
            a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
            calls[f"{dtype_name} {name}"] = lambda a=a, b=b: torch.mm(a, b)
    seconds = interleaved_medians(calls, reps, warmup)
    flops = {name: 2 * m * k * n for name, (m, k, n) in sizes.items()}

    def rates(names: tuple[str, ...]) -> dict[str, float]:
        return {
            prec: sum(flops[n] for n in names) / sum(seconds[f"{prec} {n}"] for n in names) / 1e9
            for prec in ("fp32", "bf16")
        }

    gflops, square_gflops = rates(tuple(shapes)), rates(("square",))
    return {
        "shapes": {k: list(v) for k, v in shapes.items()},
        "gflop_per_s": {k: round(v, 2) for k, v in gflops.items()},
        "bf16_to_fp32": round(gflops["bf16"] / gflops["fp32"], 3),
        "square": square,
        "square_gflop_per_s": {k: round(v, 2) for k, v in square_gflops.items()},
        "square_bf16_to_fp32": round(square_gflops["bf16"] / square_gflops["fp32"], 3),
    }


def training_variants(
    pairs: int = 32,
    steps: int = 5,
    warmup: int = 2,
    compile_model: bool = True,
    model_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Training views/s on the CPU of each way to run a step, as ratios to the fp32 eager
    reference timed in alternation with them: fp32 with fused attention, autocast bf16 with
    explicit attention (the run-time default on CPUs with native bf16), the same compiled by
    inductor, and pure bf16 with fp32 master weights (:func:`pure_bf16_training_step`);
    :func:`matmul_ceiling`, the bf16/fp32 ratio of the CPU's products at the model's shapes;
    and :func:`~vit1d.bench.timing.step_breakdown` of the reference and the autocast step."""
    device = torch.device("cpu")

    def fresh() -> ViT1D:
        torch.manual_seed(0)
        return ViT1D(**(model_kwargs or {}))

    steps_by_name: dict[str, Callable[[], None]] = {
        "fp32 eager": training_step(fresh(), device, "fp32", False, pairs),
        "fp32 fused attention": training_step(fresh(), device, "fp32", True, pairs),
        "autocast bf16": training_step(fresh(), device, "bf16", False, pairs),
        "pure bf16, fp32 masters": pure_bf16_training_step(fresh(), pairs, False),
    }
    notes = []
    if compile_model:
        try:
            compiled = training_step(fresh(), device, "bf16", False, pairs, compile_model=True)
            compiled()  # compiles here: a failure is reported, not raised
            steps_by_name["autocast bf16, compiled"] = compiled
        except Exception as exc:  # inductor needs a C++ compiler; report and go on
            notes.append(f"compile failed: {type(exc).__name__}: {str(exc)[:200]}")
    seconds = interleaved_medians(steps_by_name, steps, warmup)
    views = {k: 2 * pairs / v for k, v in seconds.items()}
    ref = views["fp32 eager"]
    ceiling = matmul_ceiling(fresh(), pairs, max(steps, 3), warmup)
    breakdown = {
        name: step_breakdown(steps_by_name[name], device, calls=2, wall=seconds[name])
        for name in ("fp32 eager", "autocast bf16", "autocast bf16, compiled")
        if name in steps_by_name
    }
    products_ms = breakdown["autocast bf16"]["categories"].get("matrix products", {}).get("ms")
    return {
        "pairs": pairs,
        "views_per_s": {k: round(v, 2) for k, v in views.items()},
        "ratio_to_fp32_eager": {k: round(v / ref, 3) for k, v in views.items()},
        # the matrix units' own bf16/fp32 ratio at the model's shapes, measured in this run
        "matmul_ceiling": ceiling,
        # where the reference's and the bf16 step's time goes, and the ratio a bf16 step would
        # reach if everything but its matrix products took no time
        "breakdown": breakdown,
        "products_bound": round(seconds["fp32 eager"] * 1000 / products_ms, 3)
        if products_ms
        else None,
        "hardware": hardware_summary(device),
        "notes": notes,
    }


def inference_step(
    model: ViT1D,
    device: torch.device,
    precision: str,
    fused: bool,
    clips: int,
) -> Callable[[], None]:
    """A closure embedding ``clips`` random 4 s waveforms: LogMel, then all tokens."""
    model = model.to(device).eval()
    logmel = LogMel().to(device)
    samples = int(CLIP_SECONDS * 16000) - 1  # 1 + 63999 // 512 = 125 frames fits 126
    wave = torch.randn(clips, samples, device=device) * 0.1

    def step() -> None:
        with torch.inference_mode():
            mel = logmel(wave)
            with autocast(device, precision):
                model(mel, fused=fused)
        sync(device)

    return step


def run(
    out: Path,
    pairs: int = 32,
    steps: int = 5,
    warmup: int = 2,
    clips: int = 64,
    reps: int = 5,
    compile_model: bool = False,
    device_name: str = "auto",
    model_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Measure both paths, write ``out/bench.json`` and return its content."""
    device = select_device(device_name)
    precision = choose_precision(device, "auto")
    fused = choose_fused_attention(device, precision)
    kwargs = model_kwargs or {}

    def fresh() -> ViT1D:
        torch.manual_seed(0)
        return ViT1D(**kwargs)

    train = interleaved_medians(
        {
            "reference": training_step(fresh(), device, "fp32", False, pairs),
            "project": training_step(fresh(), device, precision, fused, pairs, compile_model),
        },
        steps,
        warmup,
    )
    infer = interleaved_medians(
        {
            "reference": inference_step(fresh(), device, "fp32", False, clips),
            "project": inference_step(fresh(), device, precision, fused, clips),
        },
        reps,
        1,
    )
    views = {k: 2 * pairs / v for k, v in train.items()}
    realtime = {k: clips * CLIP_SECONDS / v for k, v in infer.items()}
    hw = hardware_summary(device)
    result = {
        "hardware": hw,
        "native_bf16": bool(hw["cpu"]["amx"] or hw["cpu"]["avx512_bf16"])
        if device.type == "cpu"
        else device.type == "cuda",
        "cpu_bf16_block_speedup": round(cpu_bf16_speedup(), 3) if device.type == "cpu" else None,
        "project_path": {
            "precision": precision,
            "attention": "fused" if fused else "explicit",
            "compile": compile_model,
        },
        "reference_path": {"precision": "fp32", "attention": "explicit", "compile": False},
        "model": fresh().config,
        "pairs_per_step": pairs,
        "timed_steps": steps,
        "train_views_per_s": {k: round(v, 2) for k, v in views.items()},
        "train_speedup": round(views["project"] / views["reference"], 3),
        "inference_x_realtime": {k: round(v, 1) for k, v in realtime.items()},
        "inference_speedup": round(realtime["project"] / realtime["reference"], 3),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(result, indent=2))
    return result


def saved_activation_bytes(
    model: ViT1D, x: torch.Tensor, device: torch.device, precision: str, fused: bool
) -> int:
    """Bytes of the tensors a training forward pass saves for its backward pass (activation
    memory; parameters excluded), counted once per storage through autograd's pack hook."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: set[int] = set()
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params and ptr not in seen:
            seen.add(ptr)
            total += t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        with autocast(device, precision):
            z = model.project(model(x, fused=fused).cls)
    del z
    return total


def scaling(
    device: torch.device,
    precision: str,
    fused: bool,
    pairs: list[int],
    frames: list[int],
    base_pairs: int,
    steps: int = 3,
    warmup: int = 1,
    model_kwargs: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Training views/s and activation memory of the project's path, first against the batch
    (``pairs`` at the model's 126 frames), then against the sequence length (``frames`` at
    ``base_pairs`` pairs). A point on both axes (``base_pairs`` at 126 frames) is measured
    once and reported on each."""
    kwargs = model_kwargs or {}
    points = [("batch", p, None) for p in pairs] + [("frames", base_pairs, f) for f in frames]
    measured: dict[tuple[int, int], dict[str, Any]] = {}
    rows = []
    for axis, p, f in points:
        torch.manual_seed(0)
        model = ViT1D(**kwargs, **({"max_frames": f} if f else {})).to(device)
        if (p, model.max_frames) not in measured:
            measured[(p, model.max_frames)] = _scaling_point(
                model, device, precision, fused, p, steps, warmup
            )
        rows.append({"axis": axis, **measured[(p, model.max_frames)]})
    return rows


def _scaling_point(
    model: ViT1D,
    device: torch.device,
    precision: str,
    fused: bool,
    pairs: int,
    steps: int,
    warmup: int,
) -> dict[str, Any]:
    """One point of :func:`scaling`: views/s and activation MiB (and peak GPU MiB on CUDA)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    step = training_step(model, device, precision, fused, pairs)
    seconds = interleaved_medians({"step": step}, steps, warmup)["step"]
    x = torch.randn(2 * pairs, model.max_frames, model.n_mels, device=device) * 20 - 40
    row = {
        "pairs": pairs,
        "frames": model.max_frames,
        "views_per_s": round(2 * pairs / seconds, 2),
        "activation_mib": round(
            saved_activation_bytes(model, x, device, precision, fused) / 2**20, 1
        ),
    }
    if device.type == "cuda":
        row["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return row
