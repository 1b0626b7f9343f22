"""Pretraining data: manifests, a log-mel cache, and positive-pair sampling.

Every audio file is decoded once and its log-mel spectrogram (:class:`vit1d.LogMel`) stored
in one memory-mapped float16 array, so the training loop slices views out of it at the cost
of a memory copy: it is bound by the model, not by decoding. A view is ``max_frames``
consecutive frames (126 frames = 4 s); because the front end's dB floor is absolute, a crop
of a track's spectrogram equals the spectrogram of the audio crop away from its edges.

With twin renders (:mod:`vit1d.corpus.twins`) the second view of a pair may come from a twin of
the track (:class:`TwinPool`, ``data.twin_prob``).

Sampling is stateless: batch ``k`` is drawn from ``numpy.random.default_rng([seed, k])``, so
the data order of a resumed run is exactly that of an uninterrupted one.
"""

from __future__ import annotations

import csv
import hashlib
import json
import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from tqdm.auto import tqdm

from vit1d.audio.frontend import AMIN, FRAME_RATE, N_MELS, LogMel, load_audio
from vit1d.core import atomic
from vit1d.core.errors import UserError
from vit1d.corpus.tasks import TWINS_CSV

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
FLOOR_DB = 10.0 * float(np.log10(AMIN))  # the value of silence in the cache


def read_manifest(path: str | Path, split: str = "") -> list[Path]:
    """Audio paths (absolute) from a ``manifest.csv`` or a folder of audio files.

    With a manifest, ``split`` keeps the rows of that split when there is a ``split`` column.
    Raises :class:`UserError` for a missing manifest, a manifest without an ``audio`` column
    or one naming files that do not exist.
    """
    path = Path(path)
    if path.is_dir():
        if (path / "manifest.csv").is_file():
            return read_manifest(path / "manifest.csv", split)
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
        if not files:
            raise UserError(
                f"no audio files ({', '.join(AUDIO_SUFFIXES)}) and no manifest.csv in {path}; "
                "build a corpus with `vit1d corpus --out DIR` or point --data at your audio"
            )
        return files
    if not path.is_file():
        raise UserError(f"manifest not found: {path}; build it with `vit1d corpus` or fix the path")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or "audio" not in rows[0]:
        raise UserError(
            f"manifest {path} has no rows or no 'audio' column: a manifest.csv needs a header "
            "line with an 'audio' column (paths relative to the manifest) and one row per file; "
            "build one with `vit1d corpus` (see `vit1d corpus --help`) or point --data at a "
            "folder of audio files"
        )
    if split and "split" in rows[0]:
        rows = [r for r in rows if r["split"] == split]
        if not rows:
            raise UserError(f"manifest {path} has no rows with split={split!r}")
    files = [(path.parent / r["audio"]).resolve() for r in rows]
    missing = [f for f in files if not f.is_file()]
    if missing:
        shown = ", ".join(str(m) for m in missing[:3])
        raise UserError(
            f"manifest {path} names {len(missing)} missing audio file(s), e.g. {shown}; "
            "rebuild the corpus or fix the paths (they are relative to the manifest)"
        )
    return files


def read_manifest_column(path: str | Path, column: str, split: str = "") -> list[str]:
    """One column of a manifest, row for row as :func:`read_manifest` returns the files.

    Used for hard-negative batches (``data.group_by``); raises :class:`UserError` when the
    data is a folder without a manifest or the column does not exist.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "manifest.csv"
    if not path.is_file():
        raise UserError(
            f"data.group_by={column!r} needs a manifest.csv with that column, not found at "
            f"{path}; set data.group_by='' for a folder of audio"
        )
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if rows and column not in rows[0]:
        raise UserError(
            f"data.group_by={column!r}: manifest {path} has no such column "
            f"(columns: {', '.join(rows[0])}); pick one of them or set data.group_by=''"
        )
    if split and rows and "split" in rows[0]:
        rows = [r for r in rows if r["split"] == split]
    return [r[column] for r in rows]


def read_twins(path: str | Path, redraw: str, split: str = "") -> list[list[Path]]:
    """The twin renders of each pool track: for every row :func:`read_manifest` returns, the
    audio paths (absolute) of the rows of ``twins.csv`` beside the manifest whose ``twin_of``
    is that row's ``render_id`` and whose ``redraw`` is ``redraw`` (:mod:`vit1d.corpus.twins`).

    Raises :class:`UserError` when there is no ``twins.csv`` or none of that redraw.
    """
    path = Path(path)
    manifest = path / "manifest.csv" if path.is_dir() else path
    twins_csv = manifest.parent / TWINS_CSV
    fix = (
        f"build the corpus with `pretrain: {{twins: [{redraw}]}}` in its preset, or set "
        "data.twin_prob=0 (two crops of one render)"
    )
    if not twins_csv.is_file():
        raise UserError(f"data.twin_prob > 0 needs twin renders, but {twins_csv} is missing: {fix}")
    ids = read_manifest_column(manifest, "render_id", split)
    with open(twins_csv, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["redraw"] == redraw]
    if not rows:
        raise UserError(f"{twins_csv} holds no twins with redraw {redraw!r}: {fix}")
    by_original: dict[str, list[Path]] = {}
    for r in rows:
        by_original.setdefault(r["twin_of"], []).append((twins_csv.parent / r["audio"]).resolve())
    return [by_original.get(i, []) for i in ids]


@dataclass
class TwinPool:
    """The twins of the pool's tracks in one :class:`MelCache`: ``index[t]`` lists the
    positions in ``cache`` of track ``t``'s twins (a twin has its original's length)."""

    cache: MelCache
    index: list[list[int]]

    @property
    def counts(self) -> np.ndarray:
        return np.array([len(i) for i in self.index], dtype=np.int64)

    def positions(self, tracks: np.ndarray, source: np.ndarray) -> np.ndarray:
        """The cache position of twin ``source - 1`` of each track (``source >= 1``)."""
        return np.array([self.index[t][k - 1] for t, k in zip(tracks, source, strict=True)])


def twin_pool(
    twins: list[list[Path]], cache_dir: str | Path, progress: bool = True, **decode: Any
) -> TwinPool:
    """Decode the twins of each track (``twins[t]``, from :func:`read_twins`) into one log-mel
    cache; a twin that cannot be decoded is left out (its track keeps its other twins)."""
    flat = [p for ps in twins for p in ps]
    cache = build_mel_cache(flat, cache_dir, progress=progress, **decode)
    where = {int(k): j for j, k in enumerate(cache.kept)}
    index, n = [], 0
    for ps in twins:
        index.append([where[i] for i in range(n, n + len(ps)) if i in where])
        n += len(ps)
    return TwinPool(cache, index)


def _fingerprint(files: list[Path]) -> str:
    h = hashlib.sha256(f"logmel-v1 {N_MELS} {FRAME_RATE} {AMIN}".encode())
    for f in files:
        st = f.stat()
        h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


@dataclass
class MelCache:
    """All tracks' log-mel frames in one ``(total_frames, n_mels)`` float16 memmap."""

    mels: np.ndarray
    offsets: np.ndarray
    lengths: np.ndarray
    files: list[str]
    #: positions, in the list the cache was built from, of the files it holds
    kept: np.ndarray | None = None
    #: ``{"file", "reason"}`` of each file that could not be decoded and was left out
    skipped: list[dict[str, str]] | None = None

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def hours(self) -> float:
        return float(self.lengths.sum()) / FRAME_RATE / 3600.0

    def crops(self, tracks: np.ndarray, starts: np.ndarray, frames: int) -> np.ndarray:
        """``(N, frames, n_mels)`` float32 crops; tracks shorter than ``frames`` are padded
        with silence (the dB floor) at the end."""
        out = np.full((len(tracks), frames, self.mels.shape[1]), FLOOR_DB, dtype=np.float32)
        for i, (t, s) in enumerate(zip(tracks, starts, strict=True)):
            n = min(frames, int(self.lengths[t]) - int(s))
            begin = int(self.offsets[t]) + int(s)
            out[i, :n] = self.mels[begin : begin + n]
        return out


def _mel_of(path: Path, logmel: LogMel, device: torch.device) -> np.ndarray:
    wave = torch.from_numpy(load_audio(path)).to(device)
    return logmel(wave[None])[0].to(torch.float16).cpu().numpy()


_WORKER_LOGMEL: LogMel | None = None


def _worker_init() -> None:
    global _WORKER_LOGMEL
    torch.set_num_threads(1)  # one decoding process per core, not one per core per process
    _WORKER_LOGMEL = LogMel()


def _worker_mel(path: str) -> tuple[np.ndarray | None, str]:
    """In a worker process: the log-mel of one file, or the reason it cannot be decoded."""
    try:
        with torch.inference_mode():
            return _mel_of(Path(path), _WORKER_LOGMEL, torch.device("cpu")), ""
    except UserError as exc:
        return None, str(exc)


def build_mel_cache(
    files: list[Path],
    cache_dir: str | Path,
    device: torch.device | None = None,
    progress: bool = True,
    workers: int = 0,
    skip_unreadable: bool = False,
) -> MelCache:
    """Decode every file once and store its log-mel; reuse the cache when files are unchanged.

    The cache is keyed by the files' paths, sizes and modification times. It is written to a
    temporary name and renamed, so an interrupted build leaves no half-written cache.
    ``workers`` > 0 decodes in that many processes (streamed in order, one file at a time per
    process). With ``skip_unreadable`` a file that cannot be decoded is left out and listed in
    :attr:`MelCache.skipped` (its reason too) instead of stopping the build; the build still
    fails when no file at all can be read.
    """
    cache_dir = Path(cache_dir)
    key = _fingerprint(files)
    data_path, index_path = cache_dir / f"mels-{key}.f16", cache_dir / f"mels-{key}.json"
    if index_path.is_file() and data_path.is_file():
        index = json.loads(index_path.read_text())
        if index.get("skipped") and not skip_unreadable:
            raise _unreadable_error(index["skipped"])
        return _open_cache(data_path, index)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the log-mel cache folder {cache_dir}: {exc}") from None
    pool, results = _decoded(files, device, workers)
    lengths, kept, skipped = [], [], []
    try:
        with atomic.replacing(data_path) as tmp, open(tmp, "wb") as fh:
            bar = tqdm(
                results, total=len(files), desc="log-mel cache", unit="file", disable=not progress
            )
            for i, (mel, reason) in enumerate(bar):
                if mel is None:
                    skipped.append({"file": str(files[i]), "reason": reason})
                    if not skip_unreadable:
                        raise _unreadable_error(skipped)
                    bar.set_postfix(skipped=len(skipped))
                    continue
                fh.write(mel.tobytes())
                lengths.append(mel.shape[0])
                kept.append(i)
            if not kept:  # raised inside: the empty cache file is not kept
                raise UserError(
                    f"none of the {len(files)} audio files could be decoded (first: "
                    f"{skipped[0]['reason']}); check the folder or manifest given as training data"
                )
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    index = {
        "key": key,
        "n_mels": N_MELS,
        "lengths": lengths,
        "files": [str(files[i]) for i in kept],
        "kept": kept,
        "skipped": skipped,
    }
    atomic.write_json(index_path, index)
    return _open_cache(data_path, index)


def _decoded(
    files: list[Path], device: torch.device | None, workers: int
) -> tuple[Any, Iterator[tuple[np.ndarray | None, str]]]:
    """``(pool, results)``: each file's log-mel (or ``None`` and why not), in order, decoded in
    ``workers`` processes (``pool``, to shut down) or in this one (``pool`` is ``None``)."""
    if workers > 0:
        # spawned, not forked: a fork of a process whose OpenMP threads already ran can hang
        context = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init)
        return pool, pool.map(_worker_mel, [str(f) for f in files], chunksize=4)
    device = device or torch.device("cpu")
    logmel = LogMel().to(device)

    def one(f: Path) -> tuple[np.ndarray | None, str]:
        try:
            with torch.inference_mode():
                return _mel_of(f, logmel, device), ""
        except UserError as exc:
            return None, str(exc)

    return None, map(one, files)


def _unreadable_error(skipped: list[dict[str, str]]) -> UserError:
    return UserError(
        f"{skipped[0]['reason']} (or set data.skip_unreadable=true to leave unreadable files "
        "out of the pretraining pool; they are then listed in the run folder)"
    )


def _open_cache(data_path: Path, index: dict) -> MelCache:
    lengths = np.asarray(index["lengths"], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    total = int(lengths.sum())
    mels = np.memmap(data_path, dtype=np.float16, mode="r", shape=(total, index["n_mels"]))
    kept = np.asarray(index.get("kept", range(len(lengths))), dtype=np.int64)
    return MelCache(
        mels=mels,
        offsets=offsets,
        lengths=lengths,
        files=index["files"],
        kept=kept,
        skipped=list(index.get("skipped", [])),
    )


class PairBatch(NamedTuple):
    """One step's pairs: the tracks, the start frames of the two views, and where the second
    view comes from (``source``: 0 = the track's own render, ``k`` = its ``k``-th twin).

    With a third view (``PairSampler(third_view=True)``) the twin draws go to ``starts_c``
    and ``source_c`` and the second view is always a crop of the track's own render."""

    tracks: np.ndarray
    starts_a: np.ndarray
    starts_b: np.ndarray
    source: np.ndarray
    starts_c: np.ndarray | None = None
    source_c: np.ndarray | None = None


class PairSampler:
    """Positive pairs: two crops of ``frames`` frames of one track, starts at most
    ``max_distance`` frames apart; the ``batch_size`` tracks of a batch are distinct (when
    the pool has that many), so the other tracks of the batch are the negatives.

    With ``twin_counts`` (the number of twin renders of each track) and ``twin_prob`` > 0,
    the second view of a pair is, with that probability, cropped from one of the track's
    twins (drawn uniformly), starting at most ``twin_max_distance`` frames from the first
    view's start: the same score time played by other instruments in another room. Tracks
    without twins always pair with themselves.

    With ``groups`` (one label per track, e.g. its instrumentation) a batch is filled from as
    few groups as possible: a random track picks a group (so groups are drawn in proportion to
    their size), distinct tracks of that group are taken in random order, then the next group.
    The negatives of an anchor then mostly share its group: hard negatives.

    With ``third_view`` the twin draws make a third view instead of replacing the second
    (``loss.twin_head``): the draws are the same as without it, only where they go differs."""

    def __init__(
        self,
        lengths: np.ndarray,
        batch_size: int,
        frames: int,
        max_distance: int,
        seed: int,
        groups: list[str] | None = None,
        twin_counts: np.ndarray | None = None,
        twin_prob: float = 0.0,
        twin_max_distance: int = 0,
        third_view: bool = False,
    ) -> None:
        if len(lengths) < 2:
            raise UserError(
                f"contrastive pretraining needs at least 2 tracks, the pool has {len(lengths)}"
            )
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.frames = frames
        self.max_distance = max_distance
        self.seed = seed
        self.group_of: np.ndarray | None = None
        self.twin_prob = float(twin_prob)
        self.twin_max_distance = int(twin_max_distance)
        self.third_view = bool(third_view)
        self.twin_counts = np.zeros(len(self.lengths), dtype=np.int64)
        if twin_counts is not None:
            if len(twin_counts) != len(self.lengths):
                raise UserError(
                    f"twin counts for {len(twin_counts)} tracks, the pool has "
                    f"{len(self.lengths)}: rebuild the log-mel cache (delete .vit1d_cache)"
                )
            self.twin_counts = np.asarray(twin_counts, dtype=np.int64)
        if groups is not None:
            if len(groups) != len(self.lengths):
                raise UserError(
                    f"{len(groups)} group labels for {len(self.lengths)} tracks: the manifest "
                    "and the log-mel cache disagree; rebuild the cache (delete .vit1d_cache)"
                )
            _, self.group_of = np.unique(np.asarray(groups, dtype=str), return_inverse=True)

    def _grouped(self, rng: np.random.Generator) -> np.ndarray:
        n, want = len(self.lengths), self.batch_size
        order = rng.permutation(n)  # a random track order; groups appear in proportion
        ranks = np.empty(n, dtype=np.int64)
        ranks[order] = np.arange(n)
        first_seen: dict[int, int] = {}
        for t in order:
            first_seen.setdefault(int(self.group_of[t]), len(first_seen))
        # sort tracks by (their group's first appearance, their own random rank)
        key = np.array([first_seen[int(g)] for g in self.group_of]) * n + ranks
        return np.argsort(key)[:want]

    def batch(self, step: int) -> PairBatch:
        """The pairs of optimiser step ``step`` (stateless: a function of seed and step)."""
        rng = np.random.default_rng([self.seed, step])
        n = len(self.lengths)
        if self.group_of is not None and self.batch_size <= n:
            tracks = self._grouped(rng)
        else:
            tracks = rng.choice(n, size=self.batch_size, replace=self.batch_size > n)
        room = np.maximum(self.lengths[tracks] - self.frames, 0)
        starts_a = (rng.random(self.batch_size) * (room + 1)).astype(np.int64)
        offset = rng.integers(-self.max_distance, self.max_distance + 1, size=self.batch_size)
        starts_b = np.clip(starts_a + offset, 0, room)
        source = np.zeros(self.batch_size, dtype=np.int64)
        if self.twin_prob > 0:  # drawn after the rest, so twin_prob=0 keeps every batch
            counts = self.twin_counts[tracks]
            use = (rng.random(self.batch_size) < self.twin_prob) & (counts > 0)
            pick = (rng.random(self.batch_size) * np.maximum(counts, 1)).astype(np.int64) + 1
            d = self.twin_max_distance
            near = np.clip(starts_a + rng.integers(-d, d + 1, size=self.batch_size), 0, room)
            if self.third_view:  # a track without a twin draw: the second view's crop again
                third = np.where(use, near, starts_b)
                return PairBatch(tracks, starts_a, starts_b, source, third, np.where(use, pick, 0))
            source = np.where(use, pick, 0)
            starts_b = np.where(use, near, starts_b)
        return PairBatch(tracks, starts_a, starts_b, source)
