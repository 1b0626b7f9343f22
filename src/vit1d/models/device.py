"""Device and precision choice, and the hardware facts every timing is reported with.

Precision is decided at run time, never hard-coded: on CUDA bf16 where supported (else fp16
with gradient scaling); on a CPU, bf16 autocast only where the CPU advertises native bf16
(AMX or AVX512-BF16) **and** a short matmul probe confirms it is faster than fp32. On Intel
CPUs with AMX it roughly doubles training speed; on AVX2-only CPUs a bf16 matmul is about
100x slower than fp32, so there we stay in fp32.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch

from vit1d.core.errors import UserError
from vit1d.core.memory import keep_freed_memory, memory_setting
from vit1d.models.model import Block

BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def select_device(preference: str = "auto") -> torch.device:
    """``auto``: CUDA, then MPS, then CPU. Otherwise the named device, checked to exist.

    Every run that computes (training, extraction, analyses, the benchmark) comes through
    here, so this is also where the process is told to keep freed memory
    (:func:`~vit1d.core.memory.keep_freed_memory`)."""
    keep_freed_memory()
    if preference == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(preference)
    except RuntimeError:
        raise UserError(
            f"unknown device {preference!r}; use auto, cpu, cuda, cuda:N or mps"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(
            f"device {preference!r} asked for, but CUDA is not available; use auto or cpu"
        )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(
            f"device {preference!r} asked for, but MPS is not available; use auto or cpu"
        )
    return device


@dataclass
class CPUInfo:
    model: str
    cores: int
    torch_capability: str
    avx2: bool
    avx512: bool
    avx512_bf16: bool
    amx: bool

    def to_dict(self) -> dict:
        return asdict(self)


@functools.lru_cache(maxsize=1)
def cpu_info() -> CPUInfo:
    """CPU model and the instruction sets that matter for precision choice."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name") and ":" in line:
                    model = line.split(":", 1)[1].strip()
                elif line.startswith(("flags", "Features")) and ":" in line:
                    flags = set(line.split(":", 1)[1].split())
                if flags and model:
                    break
    except OSError:  # not Linux: no flags; the matmul probe still decides
        pass
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except AttributeError:  # older torch
        capability = "unknown"
    return CPUInfo(
        model=model,
        cores=os.cpu_count() or 1,
        torch_capability=capability,
        avx2="avx2" in flags,
        avx512="avx512f" in flags,
        avx512_bf16="avx512_bf16" in flags,
        amx="amx_bf16" in flags,
    )


@functools.lru_cache(maxsize=1)
def cpu_bf16_speedup() -> float:
    """Measured speed of bf16 autocast relative to fp32 on this CPU (under a second).

    The probe is what training does: forward and backward of one transformer block of the
    paper's width on 8 views of 127 tokens. A bare matmul is not enough: on some CPUs with
    AVX512-BF16 the matmul is twice as fast in bf16 while a whole block is slower.
    """

    torch.manual_seed(0)
    block = Block(192, 3, 4.0)
    x = torch.randn(8, 127, 192)

    def seconds(precision: str) -> float:
        start = time.perf_counter()
        with autocast(torch.device("cpu"), precision):
            # each precision on the attention path it would use (choose_fused_attention)
            out, _ = block(x, fused=precision == "fp32")
        out.float().square().mean().backward()
        return time.perf_counter() - start

    # alternate the two and take the median of the pairs' ratios, so that other processes
    # on a busy machine slow both sides of each pair alike; the first pair warms up
    ratios = [seconds("fp32") / seconds("bf16") for _ in range(8)][1:]
    block.zero_grad(set_to_none=True)
    return float(sorted(ratios)[len(ratios) // 2])


#: Environment variable that fixes what ``auto`` means on the CPU (``fp32`` or ``bf16``). The
#: book's pipeline measures once and sets it for every chapter, so that a chapter run while
#: the machine is busy cannot measure differently, miss the feature cache and compute the
#: same model's features again in another precision.
PRECISION_ENV = "VIT1D_PRECISION"


def choose_precision(device: torch.device, preference: str = "auto") -> str:
    """``fp32``, ``bf16`` or ``fp16`` for training/inference on ``device``.

    ``auto`` on a CPU: bf16 where the CPU has native bf16 and a transformer block measured
    runs more than 1.3x faster in it (:func:`cpu_bf16_speedup`), unless
    :data:`PRECISION_ENV` says which."""
    if preference not in ("auto", "fp32", "bf16", "fp16"):
        raise UserError(f"unknown precision {preference!r}; use auto, fp32, bf16 or fp16")
    if preference == "fp16" and device.type != "cuda":
        raise UserError("precision fp16 (with gradient scaling) is a CUDA option; use auto or bf16")
    if preference != "auto":
        return preference
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu":
        fixed = os.environ.get(PRECISION_ENV, "")
        if fixed:
            if fixed not in ("fp32", "bf16"):
                raise UserError(
                    f"{PRECISION_ENV}={fixed!r}: use fp32 or bf16 (or unset it to measure)"
                )
            return fixed
        info = cpu_info()
        native = info.amx or info.avx512_bf16
        return "bf16" if native and cpu_bf16_speedup() > 1.3 else "fp32"
    return "fp32"


def choose_fused_attention(device: torch.device, precision: str) -> bool:
    """Whether the fused ``scaled_dot_product_attention`` kernel is the faster path.

    It is, except on a CPU under bf16 autocast: there PyTorch's CPU flash-attention kernel
    (forward and especially backward) is slower than the explicit path's bf16 matmuls with
    an fp32 softmax. Measured on a 2-core AMD EPYC with AVX512-BF16 (torch 2.13): a training
    step of the paper's model ran about 1.5-3x faster with explicit attention in bf16, while in
    fp32 the two paths were within noise of each other. Both paths give the same outputs.
    """
    return not (device.type == "cpu" and precision == "bf16")


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """The autocast context for a precision (disabled for fp32)."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads, then restore the count it had;
    ``n`` = 0 leaves it as it is."""
    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def hardware_summary(device: torch.device) -> dict:
    """What to record beside every timing: device, CPU model and capabilities, threads."""
    summary = {
        "device": str(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": cpu_info().to_dict(),
        "memory": memory_setting(),
    }
    if device.type == "cuda":
        summary["gpu"] = torch.cuda.get_device_name(device)
    return summary
