"""Probing tasks: their specs, manifests and targets.

A task is a manifest (``<root>/<task>/manifest.csv``: audio, split, label) read into
:class:`Task` (examples by split, the label vocabulary of the training split, notes on what
was dropped); :func:`global_targets` and :func:`frame_targets` turn labels into what a probe
fits (class indices, multi-hot tags, per-frame chord classes or beat activations). The task
table is in :mod:`vit1d.probing.probe`'s docstring.
"""

from __future__ import annotations

import argparse
import csv
import functools
import hashlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mir_eval
import numpy as np

from vit1d.audio.grid import FRAME_RATE
from vit1d.core.errors import UserError
from vit1d.probing import metrics as M

# ----------------------------------------------------------------------------------------------
# Tasks
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskSpec:
    """What a task's manifest column holds and how it is probed and scored."""

    name: str
    local: bool
    loss: str  # "softmax" or "sigmoid"
    column: str
    metrics: tuple[str, ...]
    unit: str  # what the metric averages over (the bootstrap resamples it)
    balance: bool = False  # positive class weight n_neg / n_pos (sparse event targets)


SPECS: dict[str, TaskSpec] = {
    "tagging": TaskSpec("tagging", False, "sigmoid", "tags", ("roc_auc", "map"), "clip"),
    "key": TaskSpec("key", False, "softmax", "key", ("weighted", "accuracy"), "clip"),
    "pitch": TaskSpec("pitch", False, "softmax", "pitch", ("accuracy",), "clip"),
    "instrument": TaskSpec("instrument", False, "softmax", "instrument", ("accuracy",), "clip"),
    "tempo": TaskSpec("tempo", False, "softmax", "bpm", ("acc1", "acc2"), "clip"),
    "chords": TaskSpec("chords", True, "softmax", "annotation", ("majmin", "root"), "track"),
    "beats": TaskSpec(
        "beats", True, "sigmoid", "annotation", ("f_measure", "cmlt", "amlt"), "track", True
    ),
    "onsets": TaskSpec("onsets", True, "sigmoid", "annotation", ("f_measure",), "track", True),
}
TASKS = tuple(SPECS)
#: The probing suite of the book and the claims, in the order tables list them: every global
#: task, and the local tasks with a probing chapter (onsets are the attention chapter's).
GLOBAL_TASKS = ("tagging", "key", "pitch", "instrument", "tempo")
LOCAL_TASKS = ("chords", "beats")
SPLITS = ("train", "valid", "test")
TEMPO_RATIO = 1.08


@dataclass
class Example:
    """One manifest row: the audio file, its split and its raw label (or annotation path)."""

    audio: Path
    split: str
    label: Any
    work: str = ""


@dataclass
class Task:
    """A task's examples and label vocabulary, read from a manifest (docs/design.md, "Public
    API")."""

    name: str
    spec: TaskSpec
    manifest: Path
    examples: list[Example]
    classes: list[Any]
    notes: list[str] = field(default_factory=list)

    def indices(self, split: str) -> np.ndarray:
        """Row numbers of one split."""
        return np.array([i for i, ex in enumerate(self.examples) if ex.split == split], dtype=int)

    @property
    def n_outputs(self) -> int:
        return 1 if self.name in ("beats", "onsets") else len(self.classes)


def _parse_label(spec: TaskSpec, raw: str, where: str, folder: Path) -> Any:
    raw = (raw or "").strip()
    if spec.column == "annotation":
        if not raw:
            raise UserError(f"{where}: empty 'annotation'; every row of a local task needs one")
        _check_inside_root(raw, "annotation", where, folder)
        path = (folder / raw).resolve()
        if not path.is_file():
            raise UserError(
                f"{where}: annotation file {path} not found (paths are relative to the manifest)"
            )
        return path
    if spec.name == "tagging":
        return sorted({t.strip() for t in raw.split(";") if t.strip()})
    if not raw:
        raise UserError(f"{where}: empty '{spec.column}' label; fill it or drop the row")
    if spec.name == "key":
        try:
            mir_eval.key.validate_key(raw)
        except ValueError as exc:
            raise UserError(
                f"{where}: key {raw!r} is not a key label ({exc}); write a tonic and a mode, "
                "like 'C major' or 'Eb minor', or drop the row"
            ) from None
        return raw
    if spec.name == "pitch":
        try:
            return int(round(float(raw)))
        except ValueError:
            raise UserError(f"{where}: pitch {raw!r} is not a MIDI number") from None
    if spec.name == "tempo":
        try:
            bpm = float(raw)
        except ValueError:
            bpm = -1.0
        if not bpm > 0:
            raise UserError(f"{where}: bpm {raw!r} is not a positive number")
        return bpm
    return raw


def _check_inside_root(raw: str, column: str, where: str, folder: Path) -> None:
    """Refuse a relative path that climbs out of the corpus root (the task folder's parent):
    such a corpus is not self-contained, and it is most often a manifest moved a level away
    from its audio. Absolute paths are the user's explicit choice and stay allowed."""
    if os.path.isabs(raw):
        return
    # lexical (abspath, not resolve): a symlinked folder inside the root stays inside
    root = os.path.dirname(os.path.abspath(folder))
    target = os.path.abspath(os.path.join(folder, raw))
    if os.path.commonpath([root, target]) != root:
        raise UserError(
            f"{where}: {column} path {raw!r} points outside the corpus root {root}; keep the "
            "files under the root (paths are relative to the manifest, e.g. '../audio/x.wav') "
            "or give an absolute path if the file really lives elsewhere"
        )


def tempo_classes(train_bpm: Sequence[float], ratio: float = TEMPO_RATIO) -> list[float]:
    """Centres of log-spaced BPM classes ``c_k = lo * ratio**k`` covering the training range
    (one class beyond each end)."""
    lo, hi = min(train_bpm) / ratio, max(train_bpm) * ratio
    n = int(math.ceil(math.log(hi / lo) / math.log(ratio))) + 1
    return [float(lo * ratio**k) for k in range(n)]


def _carve_valid(examples: list[Example], fraction: float = 0.1) -> str:
    """Move about ``fraction`` of the training works (rows without a ``work``) to valid,
    chosen by a hash so that it is deterministic."""
    train = [ex for ex in examples if ex.split == "train"]
    works = sorted({ex.work or str(ex.audio) for ex in train})

    def h(s: str) -> float:
        return int(hashlib.sha256(s.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF

    chosen = {w for w in works if h(w) < fraction} or set(works[: max(1, len(works) // 10)])
    for ex in train:
        if (ex.work or str(ex.audio)) in chosen:
            ex.split = "valid"
    return f"no valid split in the manifest: {len(chosen)} of {len(works)} training works moved"


def load_task(manifest: str | Path, name: str | None = None) -> Task:
    """Read ``<root>/<task>/manifest.csv`` (the task name defaults to its folder's name).

    Checks the columns, the splits, every audio and annotation file (present, and not climbing
    out of the corpus root with ``..``), every label and that no row is repeated, raising
    :class:`UserError` naming the file, the row and the fix. Without a ``valid`` split, about
    10 % of the training works become the validation set (noted in ``Task.notes``).
    """
    manifest = Path(manifest)
    name = name or manifest.parent.name
    if name not in SPECS:
        raise UserError(f"unknown task {name!r} for {manifest}; tasks: {', '.join(TASKS)}")
    spec = SPECS[name]
    if not manifest.is_file():
        raise UserError(f"manifest not found: {manifest}; build the corpus with `vit1d corpus`")
    with open(manifest, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
        columns = reader.fieldnames or []
    for col in ("audio", "split", spec.column):
        if col not in columns:
            raise UserError(
                f"manifest {manifest} has no '{col}' column (its columns: "
                f"{', '.join(columns) or 'none'}); add it to the header line: task {name} needs "
                f"audio, split and {spec.column} (audio: a path relative to the manifest; split: "
                "train, valid or test)"
            )
    examples, missing = [], []
    seen: dict[tuple[str, ...], int] = {}
    for i, row in enumerate(rows):
        where = f"{manifest} row {i + 2}"
        # a repeated row counts twice in training and scoring: refuse it
        first = seen.setdefault(tuple(str(v) for v in row.values()), i + 2)
        if first != i + 2:
            raise UserError(
                f"{where} repeats row {first} exactly (audio {row['audio']}); delete the "
                "repeated row: each example must appear once"
            )
        split = row["split"].strip()
        if split not in SPLITS:
            raise UserError(
                f"{where}: split {split!r} is not one of train, valid, test; fix the split"
            )
        _check_inside_root(row["audio"], "audio", where, manifest.parent)
        audio = (manifest.parent / row["audio"]).resolve()
        if not audio.is_file():
            missing.append(audio)
            continue
        label = _parse_label(spec, row[spec.column], where, manifest.parent)
        examples.append(Example(audio, split, label, (row.get("work") or "").strip()))
    if missing:
        raise UserError(
            f"manifest {manifest} names {len(missing)} missing audio file(s), e.g. "
            f"{missing[0]}; rebuild the corpus or fix the paths (relative to the manifest)"
        )
    notes = []
    present = {ex.split for ex in examples}
    for needed in ("train", "test"):
        if needed not in present:
            raise UserError(
                f"manifest {manifest} has no '{needed}' rows; a probe needs both "
                "train and test examples"
            )
    if "valid" not in present:
        notes.append(_carve_valid(examples))
    train = [ex for ex in examples if ex.split == "train"]
    if name == "tagging":
        classes: list[Any] = sorted({t for ex in train for t in ex.label})
        if not classes:
            raise UserError(f"manifest {manifest}: no tags in the train split")
    elif name == "tempo":
        classes = tempo_classes([ex.label for ex in train])
    elif name == "chords":
        classes = list(M.CHORD_CLASSES)
    elif spec.local:
        classes = ["event"]
    else:
        classes = sorted({ex.label for ex in train})
    return Task(name, spec, manifest, examples, classes, notes)


def limit_files(task: Task, caps: Sequence[int]) -> Task:
    """The task with at most ``caps = (train, valid, test)`` examples per split (0: all).

    The files kept are those whose path relative to the corpus root has the smallest hash, so
    the choice is deterministic and the local tasks (which share their audio) keep the same
    files, extracted once. The change is recorded in ``Task.notes``.
    """
    if not any(caps):
        return task
    root = task.manifest.parent.parent

    def rank(ex: Example) -> str:
        return hashlib.sha256(os.path.relpath(ex.audio, root).encode()).hexdigest()

    keep: set[int] = set()
    notes = list(task.notes)
    for split, cap in zip(SPLITS, caps, strict=True):
        idx = [i for i, ex in enumerate(task.examples) if ex.split == split]
        if cap and len(idx) > cap:
            idx = sorted(idx, key=lambda i: rank(task.examples[i]))[:cap]
            notes.append(f"{split}: {cap} of {len(task.indices(split))} files used")
        keep.update(idx)
    examples = [ex for i, ex in enumerate(task.examples) if i in keep]
    return Task(task.name, task.spec, task.manifest, examples, task.classes, notes)


# ----------------------------------------------------------------------------------------------
# Targets
# ----------------------------------------------------------------------------------------------


def global_targets(task: Task, indices: np.ndarray) -> np.ndarray:
    """Targets of global examples: class numbers (-1 for a label not seen in training) or a
    multi-hot ``(N, K)`` matrix for tagging."""
    exs = [task.examples[i] for i in indices]
    if task.name == "tagging":
        col = {t: k for k, t in enumerate(task.classes)}
        y = np.zeros((len(exs), len(task.classes)), dtype=np.float32)
        for r, ex in enumerate(exs):
            for t in ex.label:
                if t in col:
                    y[r, col[t]] = 1.0
        return y
    if task.name == "tempo":
        centres = np.log(np.asarray(task.classes))
        return np.array(
            [int(np.argmin(np.abs(centres - np.log(ex.label)))) for ex in exs], dtype=np.int64
        )
    lookup = {c: k for k, c in enumerate(task.classes)}
    return np.array([lookup.get(ex.label, -1) for ex in exs], dtype=np.int64)


def read_chords(path: Path) -> tuple[np.ndarray, list[str]]:
    """Reference chord intervals and Harte labels (``mir_eval.io.load_labeled_intervals``)."""
    try:
        intervals, labels = mir_eval.io.load_labeled_intervals(str(path))
    except Exception as exc:
        raise UserError(f"cannot read chord annotation {path}: {exc}") from None
    return np.asarray(intervals, dtype=float).reshape(-1, 2), list(labels)


@functools.lru_cache(maxsize=4096)
def _chord_reference(path: str, stamp: tuple[int, int]) -> M.ChordReference:
    return M.ChordReference(*read_chords(Path(path)))


def chord_reference(path: Path) -> M.ChordReference:
    """The track's reference chords read once for all its probes (every layer and seed), and
    read again when the file changes (its modification time and size key the cache)."""
    st = os.stat(path)
    return _chord_reference(str(path), (st.st_mtime_ns, st.st_size))


@functools.lru_cache(maxsize=4096)
def _event_reference(path: str, stamp: tuple[int, int]) -> np.ndarray:
    times = M.load_events(path)
    times.setflags(write=False)  # shared by every probe scored on the track
    return times


def event_reference(path: Path) -> np.ndarray:
    """The track's reference event times (beats, onsets; :func:`metrics.load_events`), read once
    for all its probes and again when the file changes, as :func:`chord_reference`."""
    st = os.stat(path)
    return _event_reference(str(path), (st.st_mtime_ns, st.st_size))


def frame_targets(task: Task, example: Example, n_frames: int) -> np.ndarray:
    """Per-frame targets of a local example on the frame grid ``t / 31.25`` s: chord class
    numbers (-1: no maj/min reduction) or event activations in [0, 1]."""
    if task.name == "chords":
        intervals, labels = read_chords(example.label)
        frame_labels = M.intervals_to_frames(intervals, labels, n_frames, FRAME_RATE)
        cache: dict[str, int] = {}
        out = np.empty(n_frames, dtype=np.int64)
        for t, lab in enumerate(frame_labels):
            if lab not in cache:
                try:
                    cache[lab] = M.chord_class(lab)
                except Exception:
                    raise UserError(
                        f"chord annotation {example.label}: {lab!r} is not a Harte chord label"
                    ) from None
            out[t] = cache[lab]
        return out
    events = M.load_events(example.label)
    return M.events_to_targets(events, n_frames, FRAME_RATE)


# ----------------------------------------------------------------------------------------------
# Task names and file caps, as the command line and the notebooks give them
# ----------------------------------------------------------------------------------------------


def int_list(value: str) -> list[int]:
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {value!r}"
        ) from None


def parse_file_caps(value: str) -> tuple[int, int, int]:
    """``"TRAIN,VALID,TEST"`` file counts (or ``"0"``: no cap) as a tuple."""
    caps = int_list(value) if value.strip() != "0" else [0, 0, 0]
    if len(caps) != 3 or min(caps) < 0:
        raise UserError(f"--max-*-files wants TRAIN,VALID,TEST counts (or 0), got {value!r}")
    return caps[0], caps[1], caps[2]


def tasks_arg(value: str, root: Path) -> list[str]:
    """``all`` or a comma list -> task names whose manifest exists under ``root``."""
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
