"""How a file is cut into the model's 4 s windows and how windows become vectors: one windowing
rule for the feature cache and the HEAR API (:meth:`ExtractSettings.windows`: windows every
``hop_s``, the last aligned to the end; each frame taken from the first window covering it,
:func:`frame_spans`), and the poolings of a window (``cls``, ``seq``, ``avg``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from vit1d.audio.frontend import (
    FRAME_RATE,
    SAMPLE_RATE,
    n_frames,
)
from vit1d.core.errors import UserError

FP16_MAX = 65504.0


#: Poolings stored for a transformer, and for the log-mel baseline.
POOLINGS = ("cls", "seq", "avg")


LOGMEL_POOLINGS = ("meanstd",)

#: Extraction defaults, read by every caller (the cache, the probe runner, the command line):
#: 4-s windows (the model's 126 frames) every 4 s, and windows per forward pass.
WINDOW_S = 4.0
HOP_S = 4.0
BATCH_SIZE = 32


def window_starts(n_frames: int, window: int, hop: int) -> list[int]:
    """Start frames of the windows covering ``n_frames`` frames: ``0, hop, 2 hop, ...`` while a
    window fits, then one aligned to the end; ``[0]`` when the file fits in one window."""
    if window < 1 or hop < 1:
        raise UserError(f"window ({window}) and hop ({hop}) must be at least one frame")
    if n_frames <= window:
        return [0]
    starts = list(range(0, n_frames - window + 1, hop))
    if starts[-1] + window < n_frames:
        starts.append(n_frames - window)
    return starts


def frame_spans(starts: Sequence[int], window: int) -> list[tuple[int, int]]:
    """The frames ``[a, b)`` each window supplies to a file's frame tokens: every frame comes
    from the first window that covers it, so a window that overlaps earlier ones (the
    end-aligned last window, or all of them when the hop is shorter than the window) supplies
    only the frames after them. No frame is averaged over windows, and the feature cache and
    the HEAR API (:mod:`vit1d.features.hear`) stitch a file the same way."""
    spans, covered = [], 0
    for s in starts:
        spans.append((max(s, covered), s + window))
        covered = max(covered, s + window)
    return spans


def file_windows(n: int, window: int, hop: int) -> tuple[int, list[int], list[tuple[int, int]]]:
    """A file of ``n`` frames cut into windows: their length (``n`` for a short file), start
    frames (:func:`window_starts`) and the frames each supplies (:func:`frame_spans`)."""
    length = min(window, n)
    starts = window_starts(n, window, hop)
    return length, starts, frame_spans(starts, length)


def pool_window(hidden: Any) -> Any:
    """``(L, B, 1 + T, D)`` hidden states -> ``(L, B, 3, D)``: cls, seq mean, (cls + seq) / 2."""
    cls = hidden[:, :, 0]
    seq = hidden[:, :, 1:].mean(dim=2)
    return torch.stack([cls, seq, 0.5 * (cls + seq)], dim=2)


@dataclass
class ExtractSettings:
    """How features are computed (everything here enters the cache key)."""

    window_s: float = WINDOW_S
    hop_s: float = HOP_S
    precision: str = "fp32"
    # blocks run: None = all; n = layers 0..n only (a probe of shallow layers needs no more)
    depth: int | None = None

    def window_frames(self, max_frames: int) -> int:
        """Frames in a window: those of ``window_s`` seconds of audio (``1 + samples // hop``,
        126 for 4 s), at most the model's ``max_frames``."""

        return max(1, min(n_frames(int(round(self.window_s * SAMPLE_RATE))), max_frames))

    def hop_frames(self, window: int) -> int:
        """Frames between window starts (``hop_s * 31.25``), at most ``window`` (no gaps)."""
        return max(1, min(int(round(self.hop_s * FRAME_RATE)), window))

    def windows(self, n: int, max_frames: int) -> tuple[int, list[int], list[tuple[int, int]]]:
        """How a file of ``n`` frames is cut: the window length (``n`` for a short file),
        the windows' start frames (:func:`window_starts`) and the frames each supplies
        (:func:`frame_spans`). The feature cache and the HEAR API both cut files this way."""
        window = self.window_frames(max_frames)
        return file_windows(n, window, self.hop_frames(window))
