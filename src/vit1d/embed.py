"""Embedding extraction: run a frozen model once over audio and cache every layer.

:func:`embed` is the Python API and ``vit1d embed`` the command line. For each audio file it
stores, for every depth ``l = 0..L`` (0: the embeddings, then each block, as in
``ViT1D.forward(output_hidden_states=True)``):

* pooled vectors (global tasks): ``cls`` = the class token ``h_0``; ``seq`` = the mean of the
  sequence tokens over time ``(1/T) sum_t h_t``; ``avg`` = ``(cls + seq) / 2``, the average of
  the class token and the sequence summary (the mean over all ``1 + T`` tokens would weigh the
  class token ``1/(1 + T)`` and be indistinguishable from ``seq``);
* optionally the per-frame tokens ``h_1..h_T`` (local tasks), one per log-mel frame, frame
  ``t`` centred at ``t / 31.25`` s.

**Windows.** The model has positions for ``max_frames`` frames (126 = 4 s). A longer file's
log-mel (computed once for the whole file) is cut into windows of ``window_s`` seconds every
``hop_s`` seconds, the last window aligned to the end of the file. Pooled vectors are averaged
over windows; frame tokens are put back on the file's frame grid, each frame from the first
window that covers it (:func:`frame_spans`, the HEAR API's rule too), so frame ``t`` of the
result is frame ``t`` of the file. Shorter files are one window
of their own length (no padding).

**Baselines.** The same code extracts the random-init model (:func:`random_model`, seeded) and
the log-mel baseline (``ModelSpec(kind="logmel")``): per frame the 128 dB bands, pooled as the
concatenated mean and standard deviation over time (pooling ``meanstd``, one "layer" 0).

**Log-mel, once per file.** Every model reads the same log-mel input, so a file's log-mel is
computed once and kept in ``<cache>/mel-<frontend>/`` (:class:`MelStore`, float32, read back
exactly): the book's second to ninth models of a file (masked, reference, random inits,
snapshots, the log-mel baseline) skip decoding and the STFT.

**Cache.** ``<cache>/<key>/`` per model and extraction settings (``key`` hashes the weights,
the window, hop and precision). Each run writes shards: ``pooled.npy`` ``(L, P, N, D)`` and
``frames.npy`` ``(L, F, D)`` float16 (read back memory-mapped), and ``index.json`` naming each
file (path, size, modification time), its frame offset and its length. A shard appears
atomically (written under a temporary name, then renamed), so an interrupted run loses at
most the shard in progress; re-running computes only the files no shard holds.

Precision: ``auto`` chooses with :func:`vit1d.device.choose_precision` (bf16 only where the
hardware runs it natively and faster); the cache is float16 whatever the compute precision.
Used by :mod:`vit1d.probe` and the probing notebooks.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import shutil
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vit1d import atomic, faults
from vit1d.errors import UserError
from vit1d.frontend import FRAME_RATE, HOP_LENGTH, SAMPLE_RATE
from vit1d.provenance import weights_fingerprint

#: Poolings stored for a transformer, and for the log-mel baseline.
POOLINGS = ("cls", "seq", "avg")
LOGMEL_POOLINGS = ("meanstd",)
#: Bump when the cache layout or its maths change: old caches are then ignored.
CACHE_VERSION = 1
#: Version of the stored features: 2 = frame tokens from the first window covering each frame
#: (:func:`frame_spans`; version 1 averaged the frames that windows share)
FEATURES_VERSION = 2
FP16_MAX = 65504.0


# ----------------------------------------------------------------------------------------------
# What to extract
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSpec:
    """A feature source: ``checkpoint`` (a folder with model.safetensors + config.json),
    ``random`` (a ViT-1D of ``config`` initialised with ``seed``) or ``logmel``.

    ``label`` names it in results (default: ``contrastive``, ``random-init``, ``logmel``) and
    ``step`` is the training step of a checkpoint (0 for random init), when known.
    """

    kind: str
    path: str = ""
    seed: int = 0
    config: dict[str, Any] | None = None
    label: str = ""
    step: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("checkpoint", "random", "logmel"):
            raise UserError(f"unknown model kind {self.kind!r}: use checkpoint, random or logmel")
        if self.kind == "checkpoint" and not self.path:
            raise UserError("a checkpoint model needs a path (a folder with model.safetensors)")

    @property
    def name(self) -> str:
        """The ``model`` column of the results."""
        default = {"checkpoint": "contrastive", "random": "random-init", "logmel": "logmel"}
        return self.label or default[self.kind]

    @property
    def checkpoint_name(self) -> str:
        """The ``checkpoint`` column: the folder (relative to the working directory when
        below it), ``init-seed-N`` or ``-``."""
        if self.kind == "random":
            return f"init-seed-{self.seed}"
        if self.kind == "logmel":
            return "-"
        path = Path(self.path).resolve()
        try:
            return str(path.relative_to(Path.cwd()))
        except ValueError:
            return str(path)


def checkpoint_step(folder: str | Path) -> int | None:
    """Training step of a checkpoint folder: ``step`` in its config.json (snapshots), else
    ``steps`` in a ``run.json`` beside it (a finished run's final model)."""
    folder = Path(folder)
    try:
        cfg = json.loads((folder / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if isinstance(cfg.get("step"), int):
        return cfg["step"]
    try:
        return int(json.loads((folder / "run.json").read_text())["steps"])
    except (OSError, KeyError, ValueError, json.JSONDecodeError):
        return None


def random_model(config: dict[str, Any], seed: int) -> Any:
    """A :class:`vit1d.ViT1D` of ``config`` (projection head dropped) initialised from
    ``seed``, without touching the global random state."""
    import torch

    from vit1d.model import ViT1D

    cfg = {**config, "head": "none"}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ViT1D(**cfg)
    return model.eval()


def load_model(spec: ModelSpec) -> Any:
    """The ViT1D a spec describes (in eval mode, on the CPU), or None for ``logmel``."""
    from vit1d.checkpoint import load_pretrained, read_config

    if spec.kind == "checkpoint":
        return load_pretrained(spec.path, head=False)
    if spec.kind == "random":
        config = spec.config
        if config is None and spec.path:
            config = read_config(spec.path)["model"]
        if config is None:
            raise UserError("a random-init model needs a config (or a checkpoint to copy it from)")
        return random_model(config, spec.seed)
    return None


#: The model identity of the feature cache and its provenance (one for the whole library).
model_fingerprint = weights_fingerprint


# ----------------------------------------------------------------------------------------------
# Windows
# ----------------------------------------------------------------------------------------------


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
    the HEAR API (:mod:`vit1d.hear`) stitch a file the same way."""
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
    import torch

    cls = hidden[:, :, 0]
    seq = hidden[:, :, 1:].mean(dim=2)
    return torch.stack([cls, seq, 0.5 * (cls + seq)], dim=2)


# ----------------------------------------------------------------------------------------------
# The cache
# ----------------------------------------------------------------------------------------------


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
        import torch

        from vit1d.frontend import load_audio

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
            from vit1d.checkpoint import atomic_write_text

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


# ----------------------------------------------------------------------------------------------
# Extraction
# ----------------------------------------------------------------------------------------------


@dataclass
class ExtractSettings:
    """How features are computed (everything here enters the cache key)."""

    window_s: float = 4.0
    hop_s: float = 4.0
    precision: str = "fp32"
    # blocks run: None = all; n = layers 0..n only (a probe of shallow layers needs no more)
    depth: int | None = None

    def window_frames(self, max_frames: int) -> int:
        """Frames in a window: those of ``window_s`` seconds of audio (``1 + samples // hop``,
        126 for 4 s), at most the model's ``max_frames``."""
        from vit1d.frontend import n_frames

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


def _store_for(
    spec: ModelSpec, model: Any, settings: ExtractSettings, cache_dir: Path
) -> tuple[EmbeddingStore, dict[str, Any]]:
    from vit1d import __version__
    from vit1d.frontend import N_FFT, N_MELS

    frontend = {"sr": SAMPLE_RATE, "n_fft": N_FFT, "hop": HOP_LENGTH, "n_mels": N_MELS}
    if spec.kind == "logmel":
        ident = {"kind": "logmel", "frontend": frontend, "version": CACHE_VERSION}
        layers, poolings, dim = [0], list(LOGMEL_POOLINGS), 2 * N_MELS
        frame_dim = N_MELS
    else:
        window = settings.window_frames(model.max_frames)
        ident = {
            "kind": "vit1d",
            "weights": model_fingerprint(model),
            "window": window,
            "hop": settings.hop_frames(window),
            "precision": settings.precision,
            "frontend": frontend,
            "version": FEATURES_VERSION,
        }
        depth = model.depth if settings.depth is None else min(settings.depth, model.depth)
        if depth < model.depth:  # a store of the first layers only, apart from the full one
            ident["depth"] = depth
        layers, poolings, dim = list(range(depth + 1)), list(POOLINGS), model.dim
        frame_dim = model.dim
    key = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]
    meta = {
        **ident,
        "key": key,
        "layers": layers,
        "poolings": poolings,
        "dim": dim,
        "frame_dim": frame_dim,
        "model": asdict(spec),
        "model_config": getattr(model, "config", None),
        "vit1d_version": __version__,
    }
    return EmbeddingStore(Path(cache_dir) / key, meta), meta


def _chunks(
    paths: list[Path], frames: bool, max_files: int, max_seconds: float
) -> list[tuple[list[Path], float]]:
    """Group files into shards of at most ``max_files`` files and (with frame tokens)
    ``max_seconds`` of audio; each with its duration in seconds (from the file headers)."""
    import soundfile as sf

    out: list[tuple[list[Path], float]] = []
    chunk: list[Path] = []
    seconds = 0.0
    for p in paths:
        try:
            dur = sf.info(str(p)).duration
        except Exception:  # unreadable: load_audio raises the clear error later
            dur = 0.0
        if chunk and (len(chunk) >= max_files or (frames and seconds + dur > max_seconds)):
            out.append((chunk, seconds))
            chunk, seconds = [], 0.0
        chunk.append(p)
        seconds += dur
    if chunk:
        out.append((chunk, seconds))
    return out


def busy_cores(interval: float = 0.2) -> float | None:
    """Cores other work keeps busy now: the non-idle share of all CPU time over ``interval``
    seconds (``/proc/stat``) times the core count; None where ``/proc/stat`` is missing.

    A load average lags by minutes: right after a training run it still counts the finished
    run's threads, and during a one-thread extraction it counts that thread itself, so it
    cannot tell a busy machine from our own recent work."""

    def sample() -> tuple[int, int] | None:
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return idle, sum(fields)

    first = sample()
    if first is None:
        return None
    time.sleep(interval)
    second = sample()
    if second is None or second[1] <= first[1]:
        return None
    idle_share = (second[0] - first[0]) / (second[1] - first[1])
    return (1.0 - idle_share) * (os.cpu_count() or 1)


def inference_threads(requested: int | None = None) -> int:
    """Torch threads for extraction: ``requested`` when given (> 0); otherwise all cores,
    or 1 when other work keeps more than half the cores busy (:func:`busy_cores`; the
    1-minute load average where it cannot be read). On a shared 2-core machine, two threads
    that wait on each other at every operation run 3-4x slower than one (measured: ViT-Tiny
    bf16, 150x vs 400x real time); on an idle one two threads ran 1.3x faster than one
    (2-core AMD EPYC, bf16: about 350x against 270x real time)."""
    import torch

    cores = os.cpu_count() or 1
    if requested:
        return int(requested)
    busy = busy_cores()
    if busy is None:
        try:
            busy = os.getloadavg()[0]
        except OSError:  # not available on this platform
            busy = 0.0
    return 1 if busy > 0.5 * cores else max(1, min(cores, torch.get_num_threads()))


def _extract_logmel(mels: list[Any], frames: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Log-mel baseline: pooled ``(1, 1, N, 2 n_mels)`` mean and std over time; frames
    ``(1, F, n_mels)``."""
    pooled = np.stack([np.concatenate([m.mean(0), m.std(0)]) for m in mels])[None, None]
    frame_arr = np.concatenate(mels)[None] if frames else None
    return pooled.astype(np.float16), (
        frame_arr.astype(np.float16) if frame_arr is not None else None
    )


def hidden_states(model: Any, x: Any, depth: int | None = None) -> tuple[Any, ...]:
    """``model(x, output_hidden_states=True).hidden_states`` of layers ``0..depth`` only
    (all when ``None``): the same operations, with the blocks after ``depth`` not run."""
    if depth is None or depth >= model.depth:
        return model(x, output_hidden_states=True).hidden_states
    h = model.embed(x)
    out = [h]
    for block in model.blocks[:depth]:
        h, _ = block(h)
        out.append(h)
    return tuple(out)


def _extract_vit(
    model: Any,
    mels: list[Any],
    frames: bool,
    window: int,
    hop: int,
    batch_size: int,
    device: Any,
    precision: str,
    depth: int | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Run the model on every window of every file; pool per window, average over windows,
    stitch frame tokens (each frame from the first window covering it, :func:`frame_spans`).
    Returns float16 arrays ``(L, 3, N, D)`` and ``(L, F, D)``."""
    import torch

    from vit1d.device import autocast

    n_layers = (model.depth if depth is None else min(depth, model.depth)) + 1
    dim = model.dim
    lengths = [m.shape[0] for m in mels]
    pooled_sum = torch.zeros(n_layers, 3, len(mels), dim)
    n_windows = torch.zeros(len(mels))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(int)
    frame_out = torch.zeros(n_layers, int(offsets[-1]), dim) if frames else None
    by_length: dict[int, list[tuple[int, int, tuple[int, int]]]] = defaultdict(list)
    for i, n in enumerate(lengths):
        length, starts, spans = file_windows(n, window, hop)
        for s, span in zip(starts, spans, strict=True):
            by_length[length].append((i, s, span))
    for length, items in by_length.items():
        for b in range(0, len(items), batch_size):
            batch = items[b : b + batch_size]
            x = torch.stack([mels[i][s : s + length] for i, s, _ in batch]).to(device)
            with torch.inference_mode(), autocast(device, precision):
                hidden = hidden_states(model, x, depth)
            h = torch.stack(hidden).float().cpu()  # (L, B, 1 + T, D)
            pooled = pool_window(h)
            for j, (i, s, (a, b)) in enumerate(batch):
                pooled_sum[:, :, i] += pooled[:, j]
                n_windows[i] += 1
                if frames:
                    o = int(offsets[i])
                    frame_out[:, o + a : o + b] = h[:, j, 1 + a - s : 1 + b - s]
    pooled_mean = pooled_sum / n_windows.view(1, 1, -1, 1)
    out_frames = None
    if frames:
        out_frames = frame_out.clamp(-FP16_MAX, FP16_MAX).to(torch.float16).numpy()
    return pooled_mean.clamp(-FP16_MAX, FP16_MAX).to(torch.float16).numpy(), out_frames


def _compute(
    spec: ModelSpec,
    model: Any,
    todo: list[Path],
    store: EmbeddingStore,
    meta: dict[str, Any],
    frames: bool,
    batch_size: int,
    dev: Any,
    prec: str,
    progress: bool,
    shard_seconds: float,
    threads: int | None = None,
) -> list[int]:
    """Extract ``todo`` chunk by chunk, one shard per chunk (see :func:`embed`); returns the
    torch threads each chunk ran with. The count is chosen again for every chunk
    (:func:`inference_threads`): a moment of other work when an extraction starts must not
    hold it to one thread for all its minutes."""
    from tqdm.auto import tqdm

    from vit1d.device import torch_threads
    from vit1d.frontend import LogMel

    logmel = LogMel().to(dev)
    mels = MelStore(store.folder.parent, meta["frontend"])
    chunks = _chunks(todo, frames, max_files=512, max_seconds=shard_seconds)
    bar = tqdm(
        total=round(sum(sec for _, sec in chunks)),
        desc=f"embed {spec.name}",
        unit="s",
        disable=not progress,
        leave=False,
    )
    used = []
    for chunk, seconds in chunks:
        used.append(inference_threads(threads))
        with torch_threads(used[-1]):
            _compute_chunk(spec, model, chunk, store, meta, frames, batch_size, dev, prec, mels,
                           logmel)  # fmt: skip
        bar.update(round(seconds))
    bar.close()
    return used


def _compute_chunk(
    spec: ModelSpec,
    model: Any,
    chunk: list[Path],
    store: EmbeddingStore,
    meta: dict[str, Any],
    frames: bool,
    batch_size: int,
    dev: Any,
    prec: str,
    mel_store: MelStore,
    logmel: Any,
) -> None:
    """One shard of :func:`_compute`: the log-mels (from ``mel_store``), the features, the
    shard written with its timing."""
    import torch

    t0 = time.perf_counter()
    mels, records, offset = [], [], 0
    for p in chunk:
        mel, seconds = mel_store.get(p, logmel, dev)
        mels.append(mel if spec.kind != "logmel" else mel.numpy())
        n = int(mel.shape[0])
        records.append(
            {"key": file_key(p), "path": str(p), "offset": offset, "n_frames": n,
             "seconds": seconds}
        )  # fmt: skip
        offset += n
    t_mel = time.perf_counter() - t0
    if spec.kind == "logmel":
        pooled, frame_arr = _extract_logmel(mels, frames)
    else:
        window, hop = meta["window"], meta["hop"]
        pooled, frame_arr = _extract_vit(
            model, mels, frames, window, hop, batch_size, dev, prec, meta["layers"][-1]
        )
    wall = time.perf_counter() - t0
    audio_s = float(sum(r["seconds"] for r in records))
    timing = {
        "audio_seconds": audio_s,
        "wall_seconds": wall,
        "logmel_seconds": t_mel,
        "x_realtime": audio_s / max(wall, 1e-9),
        "threads": torch.get_num_threads(),
    }
    store.add_shard(records, pooled, frame_arr, timing)


def embed(
    spec: ModelSpec | str | Path,
    paths: Sequence[str | Path],
    cache_dir: str | Path | None = None,
    frames: bool = False,
    window_s: float = 4.0,
    hop_s: float = 4.0,
    batch_size: int = 32,
    device: str = "auto",
    precision: str = "auto",
    progress: bool = True,
    shard_seconds: float = 600.0,
    model: Any = None,
    threads: int | None = None,
    depth: int | None = None,
) -> Embeddings:
    """Features of ``paths`` from ``spec`` (a :class:`ModelSpec` or a checkpoint folder),
    computed once and cached under ``cache_dir`` (default :func:`default_cache_dir`).

    ``frames=True`` also stores per-frame tokens (local tasks). ``window_s``/``hop_s``: the
    windows longer files are cut into. ``precision``: auto | fp32 | bf16 | fp16. Files
    already in the cache are not recomputed. ``model`` may pass an already loaded model for
    ``spec``; ``threads``: torch threads while computing (default :func:`inference_threads`);
    ``depth``: layers ``0..depth`` only (the blocks after it are not run; all when None).
    Returns :class:`Embeddings` in the order of ``paths``.
    """
    import torch

    from vit1d.device import choose_precision, hardware_summary, select_device

    if not isinstance(spec, ModelSpec):
        spec = ModelSpec("checkpoint", str(spec))
    paths = [Path(p).resolve() for p in paths]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise UserError(
            f"{len(missing)} audio file(s) not found, e.g. {missing[0]}; fix the paths "
            "(manifest paths are relative to the manifest)"
        )
    dev = select_device(device)
    if model is None:
        model = load_model(spec)
    if spec.kind == "logmel":
        prec = "fp32"
    else:
        prec = choose_precision(dev, precision)
        model = model.to(dev).eval()
    settings = ExtractSettings(window_s=window_s, hop_s=hop_s, precision=prec, depth=depth)
    store, meta = _store_for(spec, model, settings, Path(cache_dir or default_cache_dir()))
    keys = [file_key(p) for p in paths]
    todo_keys = set(keys) - set(store.lookup(keys, frames))
    todo = [p for p, k in zip(paths, keys, strict=True) if k in todo_keys]
    todo = list(dict.fromkeys(todo))  # one computation per file even if listed twice
    used = [torch.get_num_threads()]
    if todo:
        used = _compute(spec, model, todo, store, meta, frames, batch_size, dev, prec, progress,
                        shard_seconds, threads)  # fmt: skip
    found = store.lookup(keys, frames)
    where = [found[k] for k in keys]
    n_frames = np.array(
        [store.shards[s].index["files"][row]["n_frames"] for s, row in where], dtype=int
    )
    timings = [sh.index.get("timing", {}) for sh in store.shards]
    audio_s = sum(t.get("audio_seconds", 0.0) for t in timings)
    wall_s = sum(t.get("wall_seconds", 0.0) for t in timings)
    provenance = {
        "model": meta["model"],
        "model_name": spec.name,
        "checkpoint": spec.checkpoint_name,
        "step": spec.step,
        "cache": str(store.folder),
        "cache_key": meta["key"],
        "weights_sha256": meta.get("weights"),
        "window_frames": meta.get("window"),
        "hop_frames": meta.get("hop"),
        "precision": prec,
        "hardware": hardware_summary(dev),
        "extraction_x_realtime": audio_s / wall_s if wall_s > 0 else None,
        "computed_files": len(todo),
        "threads": max(used),
    }
    return Embeddings(
        paths=paths,
        layers=list(meta["layers"]),
        poolings=list(meta["poolings"]),
        dim=int(meta["dim"]),
        frame_dim=int(meta["frame_dim"]),
        n_frames=n_frames,
        has_frames=frames,
        spec=spec,
        provenance=provenance,
        _store=store,
        _where=where,
    )


# ----------------------------------------------------------------------------------------------
# Benchmark: x real time and the bf16-vs-fp32 probe difference
# ----------------------------------------------------------------------------------------------


def time_extraction(
    spec: ModelSpec,
    paths: Sequence[Path],
    precision: str,
    batch_size: int = 32,
    device: str = "auto",
    frames: bool = False,
    model: Any = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Extract ``paths`` into a fresh temporary cache and report seconds of audio per second
    of wall time (decoding, log-mel, windows, model and cache writes; the model is loaded
    before the clock starts when given)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="vit1d-bench-") as tmp:
        t0 = time.perf_counter()
        emb = embed(
            spec,
            paths,
            cache_dir=tmp,
            frames=frames,
            batch_size=batch_size,
            device=device,
            precision=precision,
            progress=False,
            model=model,
            threads=threads,
        )
        wall = time.perf_counter() - t0
        audio = float(sum(n for n in emb.n_frames)) / FRAME_RATE
    return {
        "precision": emb.provenance["precision"],
        "threads": emb.provenance["threads"],
        "audio_seconds": round(audio, 2),
        "wall_seconds": round(wall, 3),
        "x_realtime": round(audio / wall, 1),
    }


def benchmark(
    checkpoint: str | Path,
    data: str | Path,
    tasks: Sequence[str] = ("key", "instrument"),
    seeds: Sequence[int] = (0, 1, 2),
    max_files: int = 200,
    device: str = "auto",
    out: str | Path | None = None,
    speed_task: str = "tagging",
    threads: int | None = None,
    config: Any = None,
) -> dict[str, Any]:
    """Extraction speed in fp32 and bf16 (x real time, on up to ``max_files`` files of
    ``speed_task``, else of the first task), then the same probes on both feature sets: the largest difference of a
    metric's seed mean between precisions, beside the seed-to-seed standard deviation (bf16
    "does not change results beyond noise" when the first is within the second)."""
    import tempfile

    import torch

    from vit1d.device import cpu_info, hardware_summary, select_device
    from vit1d.probe import ProbeConfig, load_task, probe_task

    data = Path(data)
    spec = ModelSpec("checkpoint", str(checkpoint))
    timed = speed_task if (data / speed_task / "manifest.csv").is_file() else tasks[0]
    first = load_task(data / timed / "manifest.csv", timed)
    files = list(dict.fromkeys(ex.audio for ex in first.examples))[:max_files]
    model = load_model(spec)
    dev = select_device(device)
    report: dict[str, Any] = {
        "hardware": hardware_summary(dev),
        "threads": torch.get_num_threads(),
        "files": len(files),
        "speed_task": timed,
        "speed": {},
        "probes": {},
    }
    if dev.type == "cpu":
        report["cpu_native_bf16"] = cpu_info().amx or cpu_info().avx512_bf16
    for precision in ("fp32", "bf16"):
        kw = {"device": device, "model": model, "threads": threads}
        time_extraction(spec, files[:4], precision, **kw)  # warm-up
        report["speed"][precision] = time_extraction(spec, files, precision, **kw)
    results: dict[str, dict[tuple, list[float]]] = {"fp32": {}, "bf16": {}}
    with tempfile.TemporaryDirectory(prefix="vit1d-bench-probe-") as tmp:
        for task_name in tasks:
            task = load_task(data / task_name / "manifest.csv", task_name)
            for precision in ("fp32", "bf16"):
                emb = embed(
                    spec,
                    [ex.audio for ex in task.examples],
                    cache_dir=tmp,
                    device=device,
                    precision=precision,
                    progress=False,
                    frames=task.spec.local,
                )
                out_rows = probe_task(task, [emb], seeds=seeds, config=config or ProbeConfig())
                for r in out_rows["rows"]:
                    key = (task_name, r["layer"], r["pooling"], r["metric"])
                    results[precision].setdefault(key, []).append(r["value"])
    diffs, stds = [], []
    for key, fp32 in results["fp32"].items():
        bf16 = results["bf16"].get(key)
        if not bf16:
            continue
        diff = abs(float(np.mean(bf16)) - float(np.mean(fp32)))
        std = float(np.std(fp32, ddof=1)) if len(fp32) > 1 else 0.0
        diffs.append(diff)
        stds.append(std)
        report["probes"]["|".join(map(str, key))] = {
            "fp32_mean": float(np.mean(fp32)),
            "bf16_mean": float(np.mean(bf16)),
            "abs_diff": diff,
            "seed_std_fp32": std,
        }
    if diffs:
        report["max_abs_diff"] = float(np.max(diffs))
        report["median_abs_diff"] = float(np.median(diffs))
        report["median_seed_std"] = float(np.median(stds))
        report["within_noise"] = bool(np.median(diffs) <= np.median(stds) + 1e-12)
    if out:
        from vit1d.checkpoint import atomic_write_text

        Path(out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(out), json.dumps(report, indent=2))
    return report


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


def add_model_args(p: argparse.ArgumentParser) -> None:
    """Options naming the feature source, shared by ``vit1d embed`` and ``vit1d probe``."""
    g = p.add_argument_group("extraction")
    g.add_argument("--cache", help="embedding cache folder (default: <data>/.vit1d_cache/embed)")
    g.add_argument(
        "--window-s",
        type=float,
        default=ExtractSettings.window_s,
        help="window length, s (default %(default)s)",
    )
    g.add_argument(
        "--hop-s",
        type=float,
        default=ExtractSettings.hop_s,
        help="hop between windows of long files, s (default %(default)s)",
    )
    g.add_argument("--batch-size", type=int, default=32, help="windows per forward pass")
    g.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    g.add_argument(
        "--precision",
        default="auto",
        help="auto (bf16 only where native and faster) | fp32 | bf16 | fp16",
    )
    g.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads for extraction (0 = all cores, or 1 when the machine is busy)",
    )
    g.add_argument("--no-progress", action="store_true", help="no progress bars")


def tasks_arg(value: str, root: Path) -> list[str]:
    """``all`` or a comma list -> task names whose manifest exists under ``root``."""
    from vit1d.probe import TASKS

    if value in ("", "all"):
        names = [t for t in TASKS if (root / t / "manifest.csv").is_file()]
        if not names:
            raise UserError(
                f"no task manifests under {root} (expected <root>/<task>/manifest.csv for "
                f"tasks {', '.join(TASKS)}); build a corpus with `vit1d corpus`"
            )
        return names
    names = [t.strip() for t in value.split(",") if t.strip()]
    for t in names:
        if t not in TASKS:
            raise UserError(f"unknown task {t!r}; tasks: {', '.join(TASKS)}")
        if not (root / t / "manifest.csv").is_file():
            raise UserError(f"no manifest for task {t!r}: {root / t / 'manifest.csv'} not found")
    return names


def register(subparsers: Any) -> None:
    """``vit1d embed``: extract and cache features of a corpus's task audio."""
    p = subparsers.add_parser(
        "embed",
        help="extract and cache every layer's features of a corpus (for probing)",
        description=(
            "Run a model once over the audio of a corpus's task manifests and cache, per file "
            "and depth, the pooled class/sequence/average vectors (and per-frame tokens for "
            "local tasks) as memory-mapped float16 arrays. Re-running reuses the cache. "
            "With --benchmark, measure extraction speed (x real time) in fp32 and bf16 and "
            "the difference bf16 makes to probe results."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--data", help="corpus root holding <task>/manifest.csv")
    where.add_argument(
        "--audio",
        metavar="FOLDER",
        help="instead of a corpus: embed every audio file under FOLDER in the HEAR convention "
        "(vit1d.hear) into --out (scene.npy, files.csv, files/<path>.npz); needs --checkpoint",
    )
    p.add_argument("--tasks", default="all", help="comma-separated tasks, or all")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="checkpoint folder (model.safetensors + config.json)")
    src.add_argument(
        "--random-init",
        type=int,
        metavar="SEED",
        help="a randomly initialised ViT-1D (architecture from --config)",
    )
    src.add_argument("--logmel", action="store_true", help="the log-mel baseline")
    p.add_argument(
        "--config",
        default="default",
        help="for --random-init: a checkpoint folder or training preset giving the architecture",
    )
    p.add_argument(
        "--frames",
        choices=("auto", "yes", "no"),
        default="auto",
        help="store per-frame tokens: auto = for local tasks (chords, beats, onsets)",
    )
    p.add_argument(
        "--benchmark",
        metavar="OUT_JSON",
        help="measure x real time (fp32 and bf16) and the bf16 probe difference; write JSON",
    )
    p.add_argument("--bench-files", type=int, default=200, help="files timed by --benchmark")
    p.add_argument(
        "--max-local-files",
        default="200,50,150",
        help="local tasks: at most TRAIN,VALID,TEST files, the same choice as `vit1d probe` "
        "(0 = all)",
    )
    g = p.add_argument_group("--audio FOLDER (HEAR-style embeddings of a folder)")
    g.add_argument("--out", help="output folder for --audio")
    g.add_argument(
        "--layer", type=int, help="depth to embed from (default: vit1d.hear.default_layer)"
    )
    g.add_argument("--pooling", default="avg", choices=POOLINGS, help="scene pooling")
    g.add_argument(
        "--timestamps", action="store_true", help="also store per-frame embeddings (32 ms)"
    )
    add_model_args(p)
    p.set_defaults(func=_cli)


def _cli_audio(args: argparse.Namespace) -> int:
    from vit1d import hear

    if not args.checkpoint:
        raise UserError("--audio needs --checkpoint (a folder written by `vit1d pretrain`)")
    if not args.out:
        raise UserError("--audio needs --out, the folder to write the embeddings to")
    model = hear.load_model(args.checkpoint, layer=args.layer, pooling=args.pooling)
    from vit1d.device import select_device

    model = model.to(select_device(args.device))
    report = hear.embed_folder(
        args.audio, args.out, model, timestamps=args.timestamps, progress=not args.no_progress
    )
    print(
        f"embedded {report['files']} files (layer {report['layer']}, {report['pooling']} "
        f"pooling, {report['scene_dim']} dims) into {args.out}; skipped {len(report['skipped'])}"
    )
    return 0


def architecture_config(value: str) -> dict[str, Any]:
    """The ViT1D arguments of a checkpoint folder or a training preset name/path."""
    path = Path(value)
    if (path / "config.json").is_file():
        from vit1d.checkpoint import read_config

        return dict(read_config(path)["model"])
    from vit1d.config import load_config

    return asdict(load_config(value).model)


def _cli(args: argparse.Namespace) -> int:
    from vit1d.probe import limit_files, load_task, parse_file_caps

    if args.audio:
        return _cli_audio(args)
    root = Path(args.data)
    if args.benchmark:
        if not args.checkpoint:
            raise UserError("--benchmark needs --checkpoint")
        tasks = [t for t in ("key", "instrument") if (root / t / "manifest.csv").is_file()]
        if args.tasks != "all":
            tasks = tasks_arg(args.tasks, root)
        report = benchmark(
            args.checkpoint,
            root,
            tasks=tasks or tasks_arg("all", root)[:1],
            max_files=args.bench_files,
            device=args.device,
            out=args.benchmark,
            threads=args.threads or None,
        )
        for prec, s in report["speed"].items():
            print(
                f"{prec}: {s['x_realtime']:.0f}x real time ({s['audio_seconds']:.0f} s of audio, "
                f"{s['threads']} thread(s))"
            )
        if "max_abs_diff" in report:
            print(
                f"bf16 - fp32 probe metric difference: median {report['median_abs_diff']:.4f}, "
                f"max {report['max_abs_diff']:.4f}; seed std (median) "
                f"{report['median_seed_std']:.4f}"
            )
        print(f"report: {args.benchmark}")
        return 0
    tasks = tasks_arg(args.tasks, root)
    if args.checkpoint:
        spec = ModelSpec("checkpoint", args.checkpoint, step=checkpoint_step(args.checkpoint))
    elif args.logmel:
        spec = ModelSpec("logmel")
    else:
        spec = ModelSpec(
            "random", seed=args.random_init, config=architecture_config(args.config), step=0
        )
    cache = Path(args.cache) if args.cache else root / ".vit1d_cache" / "embed"
    model = load_model(spec)
    for name in tasks:
        task = load_task(root / name / "manifest.csv", name)
        if task.spec.local:
            task = limit_files(task, parse_file_caps(args.max_local_files))
        frames = {"auto": task.spec.local, "yes": True, "no": False}[args.frames]
        t0 = time.perf_counter()
        emb = embed(
            spec,
            [ex.audio for ex in task.examples],
            cache_dir=cache,
            frames=frames,
            window_s=args.window_s,
            hop_s=args.hop_s,
            batch_size=args.batch_size,
            device=args.device,
            precision=args.precision,
            progress=not args.no_progress,
            model=model,
            threads=args.threads or None,
        )
        wall = time.perf_counter() - t0
        audio = float(emb.n_frames.sum()) / FRAME_RATE
        done = emb.provenance["computed_files"]
        speed = f", {audio / wall:.0f}x real time" if done else " (all cached)"
        print(
            f"{name}: {len(emb)} files, {audio / 60:.1f} min of audio, {done} computed in "
            f"{wall:.1f} s{speed}, {emb.provenance['precision']} -> {emb.provenance['cache']}"
        )
    return 0
