"""Freed memory kept in the process, so that a training step does not pay the kernel for it.

Left to itself, glibc's ``malloc`` gives the top of its heap back to the kernel whenever more
than a threshold of it is free. A training step frees hundreds of MiB of saved activations in
its backward pass and asks for them again in the next forward pass, so every step takes those
pages back from the kernel one at a time, each zeroed on its first write (about 90,000 page
faults a step for the default model on a CPU). Setting glibc's two thresholds keeps that
memory in the process for reuse; the process then holds its peak heap until it exits. The
README's "Precision and hardware" section gives the measured gain.
"""

from __future__ import annotations

import ctypes
import os
import platform

#: ``mallopt`` parameters (glibc's ``malloc.h``)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: glibc's largest mmap threshold on 64-bit: blocks above it are still mapped and unmapped
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024
#: never give the heap's top back (``mallopt`` takes a C int)
TRIM_NEVER = 2**31 - 1
#: set to 0 to leave the C library's allocator as it is
ENV = "VIT1D_KEEP_MEMORY"

#: the outcome, decided once per process (``mallopt`` acts on the whole process)
_state: dict[str, bool | None] = {"kept": None}


def keep_freed_memory() -> bool:
    """Ask glibc's ``malloc`` to keep freed memory: blocks up to ``MMAP_THRESHOLD_MAX`` come
    from the heap rather than fresh mappings, and the heap's top is never trimmed.

    Both thresholds are set together: setting either one turns off glibc's dynamic threshold,
    and the trim threshold alone would send every block over 128 KiB to ``mmap``. Returns
    whether the setting holds: False off glibc (macOS, Windows, musl) or with
    ``VIT1D_KEEP_MEMORY=0``. Called by :func:`vit1d.models.device.select_device`, so every
    training, extraction and analysis run has it; the first call decides, later ones return
    its outcome.
    """
    if _state["kept"] is None:
        _state["kept"] = _set_thresholds()
    return bool(_state["kept"])


def _set_thresholds() -> bool:
    if os.environ.get(ENV, "1").strip() == "0" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX) == 1
    return ok and mallopt(M_TRIM_THRESHOLD, TRIM_NEVER) == 1


def memory_setting() -> str:
    """How this process's allocator treats freed memory, for the hardware record of a run."""
    return "freed memory kept (glibc mallopt)" if _state["kept"] else "C library default"
