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

Precision: ``auto`` chooses with :func:`vit1d.models.device.choose_precision` (bf16 only where the
hardware runs it natively and faster); the cache is float16 whatever the compute precision.
Used by :mod:`vit1d.probing.probe` and the probing notebooks.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from tqdm.auto import tqdm

from vit1d import __version__
from vit1d.audio.frontend import (
    HOP_LENGTH,
    N_FFT,
    N_MELS,
    SAMPLE_RATE,
    LogMel,
)
from vit1d.core.errors import UserError
from vit1d.core.provenance import weights_fingerprint
from vit1d.features.cache import (
    CACHE_VERSION,
    FEATURES_VERSION,
    Embeddings,
    EmbeddingStore,
    MelStore,
    default_cache_dir,
    file_key,
)
from vit1d.features.sources import ModelSpec, load_model
from vit1d.features.windows import (
    BATCH_SIZE,
    HOP_S,
    LOGMEL_POOLINGS,
    POOLINGS,
    WINDOW_S,
    ExtractSettings,
    file_windows,
    pool_window,
)
from vit1d.models.device import (
    autocast,
    choose_precision,
    hardware_summary,
    select_device,
    torch_threads,
)

FP16_MAX = 65504.0


#: The model identity of the feature cache and its provenance (one for the whole library).
model_fingerprint = weights_fingerprint


# ----------------------------------------------------------------------------------------------
# The cache
# ----------------------------------------------------------------------------------------------


def _store_for(
    spec: ModelSpec, model: Any, settings: ExtractSettings, cache_dir: Path
) -> tuple[EmbeddingStore, dict[str, Any]]:
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


def _provenance(
    spec: ModelSpec, store: EmbeddingStore, meta: dict, precision: str, device: Any,
    computed: int, threads: int,
) -> dict[str, Any]:  # fmt: skip
    """What :attr:`Embeddings.provenance` records: the model and its fingerprint, the cache,
    the windowing, precision, hardware, extraction speed over the cache's shards, and how many
    files this call computed with how many threads."""
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
        "precision": precision,
        "hardware": hardware_summary(device),
        "extraction_x_realtime": audio_s / wall_s if wall_s > 0 else None,
        "computed_files": computed,
        "threads": threads,
    }
    return provenance


def embed(
    spec: ModelSpec | str | Path,
    paths: Sequence[str | Path],
    cache_dir: str | Path | None = None,
    frames: bool = False,
    window_s: float = WINDOW_S,
    hop_s: float = HOP_S,
    batch_size: int = BATCH_SIZE,
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
    provenance = _provenance(spec, store, meta, prec, dev, computed=len(todo), threads=max(used))
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
