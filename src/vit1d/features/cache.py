"""The feature cache: log-mel spectrograms kept once for every model (:class:`MelStore`), each
model's per-layer features in shards keyed by the model, the extraction settings and the
file (:class:`EmbeddingStore`), read back as :class:`Embeddings`. ``FEATURES_VERSION`` is in
every key, so a change of what is stored invalidates the old entries."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vit1d.audio.frontend import (
    FRAME_RATE,
    SAMPLE_RATE,
    load_audio,
)
from vit1d.core import atomic, faults
from vit1d.core.errors import UserError
from vit1d.features.sources import ModelSpec
from vit1d.models.checkpoint import atomic_write_text

FP16_MAX = 65504.0


#: Bump when the cache layout or its maths change: old caches are then ignored.
CACHE_VERSION = 1


#: Version of the stored features: 2 = frame tokens from the first window covering each frame
#: (:func:`frame_spans`; version 1 averaged the frames that windows share)
FEATURES_VERSION = 2


def default_cache_dir() -> Path:
    """``$VIT1D_CACHE/embed``, else ``$XDG_CACHE_HOME/vit1d/embed``, else ``~/.cache/...``."""
    if os.environ.get("VIT1D_CACHE"):
        return Path(os.environ["VIT1D_CACHE"]).expanduser() / "embed"
    base = Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser()
    return base / "vit1d" / "embed"


def file_key(path: Path) -> str:
    """What identifies an audio file's content for the cache: path, size, mtime."""
    st = path.stat()
    return f"{path}|{st.st_size}|{st.st_mtime_ns}"


class MelStore:
    """Log-mel spectrograms of audio files, one ``.npz`` per file (the log-mel and the audio's
    duration) under ``<cache>/mel-<frontend hash>/``, named by a hash of :func:`file_key`
    (path, size, modification time), so an edited file is computed again. Written atomically
    (temporary name, then rename): two processes computing one file write the same array."""

    def __init__(self, cache_dir: Path, frontend: dict[str, Any]) -> None:
        ident = json.dumps({**frontend, "version": CACHE_VERSION}, sort_keys=True)
        self.folder = Path(cache_dir) / f"mel-{hashlib.sha256(ident.encode()).hexdigest()[:12]}"
        self.computed = 0  # files this store computed rather than read back

    def path(self, audio: Path) -> Path:
        return self.folder / f"{hashlib.sha256(file_key(audio).encode()).hexdigest()[:24]}.npz"

    def get(self, audio: Path, logmel: Any, device: Any) -> tuple[Any, float]:
        """``(log-mel (T, n_mels) float32 tensor on the CPU, seconds of audio)`` of ``audio``:
        read back, or computed with ``logmel`` (:class:`vit1d.LogMel`) and stored."""
        path = self.path(audio)
        try:
            with np.load(path) as z:
                return torch.from_numpy(z["mel"]), float(z["seconds"])
        except (OSError, ValueError, KeyError):
            pass  # not stored yet, or damaged: compute it
        wave = load_audio(audio)
        with torch.inference_mode():
            mel = logmel(torch.from_numpy(wave).to(device)[None])[0].float().cpu()
        seconds = len(wave) / SAMPLE_RATE
        # no fsync: a cache entry lost to a power cut is computed again
        with atomic.replacing(path, fsync=False) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, mel=mel.numpy(), seconds=np.float64(seconds))
        self.computed += 1
        return mel, seconds


@dataclass
class _Shard:
    folder: Path
    index: dict[str, Any]
    _pooled: np.ndarray | None = None
    _frames: np.ndarray | None = None

    @property
    def pooled(self) -> np.ndarray:
        if self._pooled is None:
            self._pooled = np.load(self.folder / "pooled.npy", mmap_mode="r")
        return self._pooled

    @property
    def frames(self) -> np.ndarray:
        if self._frames is None:
            self._frames = np.load(self.folder / "frames.npy", mmap_mode="r")
        return self._frames


class EmbeddingStore:
    """The cache folder of one model and extraction settings (see the module docstring)."""

    def __init__(self, folder: Path, meta: dict[str, Any]) -> None:
        self.folder = Path(folder)
        self.meta = meta
        self.folder.mkdir(parents=True, exist_ok=True)
        meta_path = self.folder / "store.json"
        if not meta_path.is_file():
            atomic_write_text(meta_path, json.dumps(meta, indent=2, sort_keys=True, default=str))
        self.shards: list[_Shard] = []
        self.reload()

    def reload(self) -> None:
        """Read the index of every complete shard."""
        self.shards = []
        for folder in sorted(self.folder.glob("shard-*")):
            try:
                index = json.loads((folder / "index.json").read_text())
            except (OSError, json.JSONDecodeError):
                continue  # not a complete shard
            self.shards.append(_Shard(folder, index))

    def lookup(self, keys: Sequence[str], frames: bool) -> dict[str, tuple[int, int]]:
        """``key -> (shard number, row)`` for the files a shard holds (with frame tokens when
        ``frames``); the newest shard wins."""
        wanted, found = set(keys), {}
        for s, shard in enumerate(self.shards):
            if frames and not shard.index["has_frames"]:
                continue
            for row, rec in enumerate(shard.index["files"]):
                if rec["key"] in wanted:
                    found[rec["key"]] = (s, row)
        return found

    def add_shard(
        self,
        records: list[dict[str, Any]],
        pooled: np.ndarray,
        frames: np.ndarray | None,
        timing: dict[str, float],
    ) -> None:
        """Write one shard atomically: arrays and index in a temporary folder, then rename."""
        name = f"shard-{_dt.datetime.now().strftime('%Y%m%d%H%M%S%f')}-{uuid.uuid4().hex[:6]}"
        tmp = self.folder / f".tmp-{name}"
        tmp.mkdir(parents=True)
        try:
            np.save(tmp / "pooled.npy", pooled)
            if frames is not None:
                np.save(tmp / "frames.npy", frames)
            index = {"files": records, "has_frames": frames is not None, "timing": timing}
            (tmp / "index.json").write_text(json.dumps(index))
            for f in tmp.iterdir():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
            os.replace(tmp, self.folder / name)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        self.reload()
        faults.reached("shard")


@dataclass
class Embeddings:
    """Cached features of a list of audio files, in that order (what :func:`embed` returns).

    ``layers`` are the stored depths (0 = embeddings), ``poolings`` the pooled kinds;
    ``n_frames[i]`` the number of frame tokens of file ``i`` (frame ``t`` at ``t / 31.25`` s).
    """

    paths: list[Path]
    layers: list[int]
    poolings: list[str]
    dim: int
    frame_dim: int
    n_frames: np.ndarray
    has_frames: bool
    spec: ModelSpec
    provenance: dict[str, Any]
    _store: EmbeddingStore = field(repr=False)
    _where: list[tuple[int, int]] = field(repr=False)

    def __len__(self) -> int:
        return len(self.paths)

    def _by_shard(self, indices: Sequence[int] | None) -> dict[int, tuple[list[int], list[int]]]:
        idx = range(len(self.paths)) if indices is None else indices
        groups: dict[int, tuple[list[int], list[int]]] = defaultdict(lambda: ([], []))
        for pos, i in enumerate(idx):
            s, row = self._where[i]
            groups[s][0].append(pos)
            groups[s][1].append(row)
        return groups

    def pooled(self, layer: int, pooling: str, indices: Sequence[int] | None = None) -> np.ndarray:
        """``(N, D)`` float32 pooled vectors of one depth, for all files or ``indices``."""
        if pooling not in self.poolings:
            raise UserError(f"pooling {pooling!r} not stored here; stored: {self.poolings}")
        layer_i, pool_i = self.layers.index(layer), self.poolings.index(pooling)
        n = len(self.paths) if indices is None else len(indices)
        out = np.empty((n, self.dim), dtype=np.float32)
        for s, (positions, rows) in self._by_shard(indices).items():
            arr = self._store.shards[s].pooled
            order = np.argsort(rows)
            rows_sorted = np.asarray(rows)[order]
            out[np.asarray(positions)[order]] = arr[layer_i, pool_i, rows_sorted]
        return out

    def frames(self, layer: int, indices: Sequence[int] | None = None) -> list[np.ndarray]:
        """Per-file ``(T_i, D)`` float16 frame tokens of one depth (views of the memmap)."""
        if not self.has_frames:
            raise UserError("these embeddings were extracted without frame tokens (frames=True)")
        layer_i = self.layers.index(layer)
        idx = list(range(len(self.paths))) if indices is None else list(indices)
        out = []
        for i in idx:
            s, row = self._where[i]
            shard = self._store.shards[s]
            rec = shard.index["files"][row]
            off, n = rec["offset"], rec["n_frames"]
            out.append(shard.frames[layer_i, off : off + n])
        return out

    def frame_times(self, i: int) -> np.ndarray:
        """Centre times (s) of file ``i``'s frame tokens."""
        return np.arange(int(self.n_frames[i])) / FRAME_RATE
