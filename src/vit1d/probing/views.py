"""The feature views a task's probes read, and their matrices and targets.

A :class:`View` is one feature matrix: which embeddings (init), layer and pooling (``frame``
for local tasks). :func:`task_views` lists a task's views, :func:`probe_groups` the
``(view, seed)`` pairs fitted on them, :func:`local_chunks` the views trained together within
the memory budget; :func:`global_matrix`, :func:`frame_matrix`, :func:`concat_frame_targets`
and :func:`subsample_rows` load what one stack of probes trains on. Used by
:mod:`vit1d.probing.probe`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from vit1d.core.errors import UserError
from vit1d.probing.linear import ProbeConfig
from vit1d.probing.tasks import Task, frame_targets


@dataclass
class View:
    """A feature matrix the probes read: which embeddings (init), layer and pooling."""

    source: int
    layer: int
    pooling: str


def task_views(
    embeddings: Sequence[Any],
    local: bool,
    layers: Sequence[int] | None,
    poolings: Sequence[str] | None,
) -> list[View]:
    """Every view of ``embeddings`` among ``layers`` and ``poolings`` (``None``: all; the last
    layer, or every pooling, when none is left); local tasks read the frames (``frame``)."""
    views = []
    for e_i, emb in enumerate(embeddings):
        use_layers = [la for la in emb.layers if layers is None or la in layers] or emb.layers[-1:]
        if local:
            views += [View(e_i, la, "frame") for la in use_layers]
            continue
        pools = [p for p in emb.poolings if poolings is None or p in poolings] or emb.poolings
        views += [View(e_i, la, p) for la in use_layers for p in pools]
    return views


def probe_groups(views: list[View], n_sources: int, seeds: Sequence[int]) -> list[tuple[int, int]]:
    """``(view, seed)`` pairs: every seed on every view, or, with one source per seed (random
    init), seed ``k`` on the views of source ``k``."""
    if n_sources == 1:
        return [(v, s) for v in range(len(views)) for s in seeds]
    if n_sources != len(seeds):
        raise UserError(
            f"{n_sources} feature sources but {len(seeds)} seeds: give one init seed per probe seed"
        )
    return [(v, seeds[views[v].source]) for v in range(len(views))]


def local_chunks(
    embeddings: Sequence[Any], views: list[View], tr: np.ndarray, cfg: ProbeConfig
) -> list[list[int]]:
    """Views per training stack so that the training frames fit ``memory_mb``."""
    frames = min(cfg.max_train_frames, int(embeddings[0].n_frames[tr].sum()))
    per_view = max(1, frames * embeddings[0].frame_dim * 4)
    size = max(1, int(cfg.memory_mb * 2**20 // per_view))
    return [list(range(i, min(i + size, len(views)))) for i in range(0, len(views), size)]


def global_matrix(emb: Any, view: View, indices: np.ndarray) -> Any:
    """Pooled vectors ``(N, D)`` of ``view`` for files ``indices``, as a torch tensor."""
    return torch.from_numpy(emb.pooled(view.layer, view.pooling, indices))


def frame_matrix(emb: Any, layer: int, indices: np.ndarray, picks: np.ndarray | None) -> Any:
    """Concatenated frame tokens ``(F, D)`` float32 of files ``indices`` (rows ``picks``)."""
    frames = np.concatenate(emb.frames(layer, indices)).astype(np.float32)
    if picks is not None:
        frames = frames[picks]
    return torch.from_numpy(frames)


def concat_frame_targets(
    task: Task, emb: Any, indices: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated frame targets and per-file offsets."""
    ys = [frame_targets(task, task.examples[i], int(emb.n_frames[i])) for i in indices]
    offsets = np.concatenate([[0], np.cumsum([len(y) for y in ys])]).astype(int)
    return np.concatenate(ys) if ys else np.zeros(0), offsets


def subsample_rows(y: np.ndarray, limit: int, seed: int, ignore_negative: bool) -> np.ndarray:
    """Sorted row numbers: at most ``limit`` rows (seeded), skipping ignored targets."""
    rows = np.flatnonzero(y >= 0) if ignore_negative else np.arange(len(y))
    if len(rows) > limit:
        rows = np.sort(np.random.default_rng(seed).choice(rows, size=limit, replace=False))
    return rows
