"""Throughput benchmark: the project's training path against an fp32 eager reference.

``python -m vit1d.bench`` (or ``make bench``) measures, in one run on one machine:

* **training** views/s (forward + NT-Xent + backward + AdamW on the paper's ViT-1D) of
  - the *reference*: fp32, explicit attention, eager, no autocast;
  - the *project's default path*: the precision and attention path :mod:`vit1d.device`
    chooses at run time (bf16 with explicit attention on CPUs with native bf16, fp32 with
    fused attention elsewhere; ``torch.compile`` with ``--compile``);
* **inference** x real time: waveform -> :class:`vit1d.LogMel` -> ViT-1D, 4 s clips, with the
  same two settings.

It writes ``bench.json`` (figures, ratios, CPU model and its AVX2 / AVX-512 / AMX flags,
threads, torch version) and prints a short table. Ratios, never absolute timings, are what
targets are checked against, since the reference runs in the same process on the same CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from vit1d.device import (
    autocast,
    choose_fused_attention,
    choose_precision,
    cpu_bf16_speedup,
    hardware_summary,
    select_device,
)
from vit1d.frontend import LogMel
from vit1d.losses import NTXent
from vit1d.model import ViT1D

CLIP_SECONDS = 4.0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def training_step(
    model: ViT1D,
    device: torch.device,
    precision: str,
    fused: bool,
    pairs: int,
    compile_model: bool = False,
) -> Callable[[], None]:
    """A closure running one full training step on a fixed random batch of ``2 * pairs``
    views: forward, NT-Xent, backward, AdamW."""
    model = model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_fn = NTXent(0.1)

    def forward(x: torch.Tensor) -> torch.Tensor:
        return model.project(model(x, fused=fused).cls)

    fn = torch.compile(forward) if compile_model else forward
    x = torch.randn(2 * pairs, model.max_frames, model.n_mels, device=device) * 20 - 40

    def step() -> None:
        with autocast(device, precision):
            z = fn(x)
        loss_fn(z[:pairs], z[pairs:]).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        _sync(device)

    return step


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
        _sync(device)

    return step


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


def table(result: dict[str, Any]) -> str:
    cpu = result["hardware"]["cpu"]
    flags = ", ".join(k for k in ("avx2", "avx512", "avx512_bf16", "amx") if cpu[k]) or "none"
    t, i = result["train_views_per_s"], result["inference_x_realtime"]
    p = result["project_path"]
    load = f" | load average {result['load_average'][0]:.1f}" if result["load_average"] else ""
    lines = [
        f"device {result['hardware']['device']} | CPU {cpu['model']} ({flags}) | "
        f"{result['hardware']['threads']} threads | torch {result['hardware']['torch']}{load}",
        f"project path: {p['precision']}, {p['attention']} attention, compile={p['compile']}",
        "",
        "| measure | fp32 eager reference | project path | ratio |",
        "|---|---|---|---|",
        f"| training views/s | {t['reference']:.1f} | {t['project']:.1f} | "
        f"{result['train_speedup']:.2f}x |",
        f"| inference x real time | {i['reference']:.0f} | {i['project']:.0f} | "
        f"{result['inference_speedup']:.2f}x |",
    ]
    return "\n".join(lines)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "bench",
        help="throughput benchmark (training and inference)",
        description=__doc__.split("\n\n")[0],
    )
    _add_args(p)
    p.set_defaults(func=_cli)


def _add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="bench", help="folder for bench.json (default: bench/)")
    p.add_argument("--pairs", type=int, default=32, help="positive pairs per training step")
    p.add_argument("--steps", type=int, default=5, help="timed training steps per setting")
    p.add_argument("--compile", action="store_true", help="torch.compile the project path")
    p.add_argument("--device", default="auto")


def _cli(args: argparse.Namespace) -> int:
    result = run(
        Path(args.out),
        pairs=args.pairs,
        steps=args.steps,
        compile_model=args.compile,
        device_name=args.device,
    )
    print(table(result))
    print(f"\nwritten: {Path(args.out) / 'bench.json'}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m vit1d.bench", description=__doc__)
    _add_args(parser)
    raise SystemExit(_cli(parser.parse_args()))
