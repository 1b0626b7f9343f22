"""Linear probes on frozen features: every task, every layer, every pooling, several seeds.

A frozen backbone and one linear layer per (task, layer, pooling). By default
(``ProbeConfig(solver="lbfgs")``) each probe is the exact solution of its convex problem for a
few L2 weights, keeping the one of lowest validation loss (:class:`LinearProbes`); the solution
does not depend on a seed, so one is fitted per view (:func:`fit_seeds`). Local tasks, with
their ~1e5 training frames, keep the group's protocol (``local_solver="adam"``), which is an
option for every task (``solver="adam"``): one probe per seed, trained with Adam (lr 1e-3, batch 128)
in epochs of 128 steps, at most 50 epochs, early stopping on the validation loss (patience 5
epochs; the weights of the best epoch are kept). :mod:`vit1d.solvers` compares the two on the
same features. Features are
standardised with the training split's mean and standard deviation. Global tasks use pooled
vectors (``cls``, ``seq``, ``avg``; ``meanstd`` for the log-mel baseline); local tasks apply
the probe to every frame token (pooling ``frame``).

=========  ========================================================  =====================
task       target and loss                                           decoded for the metric
=========  ========================================================  =====================
tagging    multi-hot tags of the training vocabulary; sigmoid (BCE)  scores -> AUC, AP
key        24 keys (those in train); softmax                         argmax key name
pitch      MIDI numbers in train; softmax                            argmax
instrument instruments in train; softmax                             argmax
tempo      log-spaced BPM classes (ratio 1.08); softmax              centre BPM of argmax
chords     25 classes (12 maj, 12 min, N) per frame; softmax         frames -> intervals
beats      per-frame beat activation (1 at a beat, 0.5 next to it);  librosa beat tracker
           sigmoid with positive weight n_neg / n_pos
onsets     per-frame onset activation, as beats                      peak picking (0.5)
=========  ========================================================  =====================

**Tempo as classes, not regression.** A regression on (log) BPM is pulled towards the mean
between octave-ambiguous answers (60 vs 120 BPM), which Acc1 scores as wrong; a softmax over
BPM classes can commit to one mode. The classes are log-spaced with ratio 1.08, the coarsest
spacing for which the centre of the right class is always within Acc1's 4 % of the truth
(``sqrt(1.08) = 1.039``): finer classes only split the training examples further (the first
build's ratio 1.04 gave 35 classes over 50-200 BPM, about 28 training clips each, and every
model was at chance).

**Chance.** Beside every model, :func:`chance_summary` scores the prior-only predictor (the
training split's most frequent class for every item; constant scores for tagging, whose
ROC-AUC is then 0.5 and AP each tag's prevalence) on the same splits, as model ``chance``.

**Independence.** The probes of one task are trained together as a stack of weight matrices
``W[g]`` (``torch.baddbmm``), which is exactly ``G`` independent linear layers: each has its
own initialisation (seeded), its own batch order (seeded), its own Adam state (Adam is
element-wise) and its own early stopping, and the stopping of one never changes another; the
result of a probe does not depend on which others share its stack. Chords ignore frames whose
reference chord has no maj/min reduction.

Used by ``vit1d probe`` and the probing notebooks; results go through :mod:`vit1d.results`.
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import functools
import hashlib
import json
import math
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from vit1d import metrics as M
from vit1d.errors import UserError
from vit1d.grid import FRAME_RATE
from vit1d.items import scalar_items, tagging_items, write_items
from vit1d.provenance import file_sha256, library_versions

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
        import mir_eval

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
    import mir_eval

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
# The probes
# ----------------------------------------------------------------------------------------------


@dataclass
class ProbeConfig:
    """Probe settings: the exact solver by default, the group's Adam protocol as an option."""

    lr: float = 1e-3
    batch_size: int = 128
    steps_per_epoch: int = 128
    max_epochs: int = 50
    patience: int = 5
    min_delta: float = 0.0  # a validation loss must fall by more than this to count as better
    max_train_frames: int = 100_000  # local tasks: frames drawn from the training files
    max_valid_frames: int = 20_000  # local tasks: frames for the early-stopping loss
    # local tasks: at most this many train, valid and test files (0 = all): frame tokens of
    # every layer take L * 31.25 * D * 2 bytes per second of audio (4.7 MB/min for ViT-Tiny)
    max_local_files: tuple[int, int, int] = (200, 50, 150)
    # global tasks: the same cap (0 = all files; lowers extraction time on large corpora)
    max_global_files: tuple[int, int, int] = (0, 0, 0)
    memory_mb: int = 1024  # features held at once; local tasks train layers in chunks
    n_boot: int = 1000  # bootstrap replicates of the summary
    n_boot_tagging: int = 500  # tagging recomputes macro AUC/AP per replicate (slower)
    # torch threads while training: 1, because these small matrix products run 10-100x slower
    # with two threads on a busy 2-core machine (threads wait on each other); 0 = leave as is
    threads: int = 1
    # tasks fitted at once, each in its own thread with ``threads`` torch threads (the
    # matrix products release the GIL); 0 = one per CPU core. Results do not depend on it.
    workers: int = 0
    # "lbfgs" (exact, LinearProbes docs; one fit per view) or "adam" (the group's protocol:
    # the epoch, batch and patience settings above, one fit per seed); vit1d.solvers compares
    solver: str = "lbfgs"
    # the solver of local (frame-level) tasks: their ~1e5 training frames make every L-BFGS
    # iteration a pass over all of them (400 passes per probe: over 9 minutes for one model's
    # chords and beats on a 2-core CPU), where Adam's epochs see 128 batches of 128 frames
    local_solver: str = "adam"
    l2: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1)  # lbfgs: L2 weights tried, best on valid
    max_iter: int = 100  # lbfgs: L-BFGS iterations at most per L2 weight


# L-BFGS curvature pairs kept by the exact solver: its memory is 2 x this many copies of the
# stacked weights (torch's default of 100 would hold 200, over 100 MB for a large stack)
LBFGS_HISTORY = 20


def standardise(x: Any) -> tuple[Any, Any]:
    """Mean and standard deviation (floored at 1e-6) over rows of ``(N, D)``, in float64."""
    x64 = x.double()
    return x64.mean(0).float(), x64.std(0, unbiased=False).clamp_min(1e-6).float()


class LinearProbes:
    """``G`` independent linear probes ``logits = x W[g] + b[g]`` on views of the features.

    ``views[g]`` says which feature matrix group ``g`` reads, ``seeds[g]`` seeds its
    initialisation (PyTorch's ``nn.Linear`` default, uniform in +-1/sqrt(D)) and its batch
    order. ``loss``: ``softmax`` (cross-entropy, targets -1 ignored) or ``sigmoid`` (binary
    cross-entropy on targets in [0, 1], optionally with a positive weight).

    :meth:`fit` with ``solver="lbfgs"`` solves each group exactly instead: for every ``l2`` of
    ``cfg.l2``, ``min_{W,b} mean_n loss(x_n W + b, y_n) + l2 * ||W||_F^2`` (bias not
    penalised) by full-batch L-BFGS, keeping the ``l2`` of lowest validation loss. The problem
    is convex, so it can be solved to convergence rather than approached by epochs of Adam
    (the L2 weight chosen on valid takes the place of early stopping); the groups' objectives
    are separable, so one L-BFGS over their sum solves them all at once.
    """

    def __init__(
        self,
        views: Sequence[int],
        seeds: Sequence[int],
        dim: int,
        n_out: int,
        loss: str,
        pos_weight: float | None = None,
    ) -> None:
        import torch

        if loss not in ("softmax", "sigmoid"):
            raise ValueError(f"unknown probe loss {loss!r}")
        self.views = torch.as_tensor(list(views), dtype=torch.long)
        self.seeds = [int(s) for s in seeds]
        self.loss = loss
        self.dim, self.n_out = dim, n_out
        self.pos_weight = None if pos_weight is None else torch.tensor(float(pos_weight))
        bound = 1.0 / math.sqrt(dim)
        weights, biases = [], []
        for s in self.seeds:
            g = torch.Generator().manual_seed(s)
            weights.append((torch.rand(dim, n_out, generator=g) * 2 - 1) * bound)
            biases.append((torch.rand(n_out, generator=g) * 2 - 1) * bound)
        self.weight = torch.stack(weights)
        self.bias = torch.stack(biases)
        self.best_epoch = np.zeros(len(self.seeds), dtype=int)
        self.epochs_run = 0
        self.chosen_l2 = np.full(len(self.seeds), np.nan)  # lbfgs only: the L2 weight kept

    @property
    def n_groups(self) -> int:
        return len(self.seeds)

    def view_groups(self) -> list[tuple[int, list[int]]]:
        """``(view, groups reading it)`` for every view: groups of one view share its input,
        so their logits come from one product."""
        import torch

        return [
            (v, torch.nonzero(self.views == v).flatten().tolist())
            for v in torch.unique(self.views).tolist()
        ]

    def _group_loss(self, logits: Any, y: Any, dtype: Any = None) -> Any:
        """Mean loss per group: ``logits`` ``(G, B, C)``, targets ``(G, B)`` or ``(G, B, C)``.

        ``dtype``: average the per-example losses in this dtype (the exact solver's float64:
        near the minimum, a float32 mean cannot resolve the decreases L-BFGS looks for).
        """
        import torch.nn.functional as F

        if self.loss == "softmax":
            g, b, c = logits.shape
            per = F.cross_entropy(
                logits.reshape(g * b, c), y.reshape(-1), ignore_index=-1, reduction="none"
            ).reshape(g, b)
            valid = (y >= 0).float()
            if dtype is not None:
                per, valid = per.to(dtype), valid.to(dtype)
            return (per * valid).sum(1) / valid.sum(1).clamp_min(1.0)
        if y.dim() == logits.dim() - 1:
            y = y.unsqueeze(-1)
        per = F.binary_cross_entropy_with_logits(
            logits, y, pos_weight=self.pos_weight, reduction="none"
        )
        if dtype is not None:
            per = per.to(dtype)
        return per.mean(dim=(1, 2))

    def logits(self, x: Any, groups: Sequence[int]) -> Any:
        """``(len(groups), N, C)`` logits of groups that share the input ``x`` ``(N, D)``."""
        import torch

        idx = torch.as_tensor(list(groups), dtype=torch.long)
        return torch.einsum("nd,gdc->gnc", x, self.weight[idx]) + self.bias[idx][:, None, :]

    def view_blocks(self, n_rows: int, memory_mb: int) -> list[tuple[Any, Any]]:
        """The groups as ``(views (V,), groups (V, K))`` blocks: ``K`` groups read each view of
        a block, so one batched product ``(V, N, D) x (V, D, K*C)`` gives all their logits with
        no copy of the input. Blocks are cut so that their logits (and the gradients of them)
        take about ``memory_mb``; views read by different numbers of groups go to different
        blocks."""
        import torch

        by_k: dict[int, list[tuple[int, list[int]]]] = {}
        for v, groups in self.view_groups():
            by_k.setdefault(len(groups), []).append((v, groups))
        blocks = []
        for k, members in sorted(by_k.items()):
            per_view = 3 * 4 * n_rows * k * self.n_out  # logits, their gradient, the loss terms
            size = max(1, int(memory_mb * 2**20 // max(per_view, 1)))
            for start in range(0, len(members), size):
                part = members[start : start + size]
                vs = torch.as_tensor([v for v, _ in part], dtype=torch.long)
                blocks.append((vs, torch.as_tensor([g for _, g in part], dtype=torch.long)))
        return blocks

    def _block_loss(self, x: Any, y: Any, weight: Any, bias: Any, views: Any, groups: Any) -> Any:
        """Float64 mean loss of every group of one :meth:`view_blocks` block, ``(V*K,)`` in
        the order of ``groups.flatten()``: ``x`` ``(V_all, N, D)``, targets ``y`` shared."""
        import torch

        v, k = groups.shape
        c = self.n_out
        # (V, K, D, C) -> (V, D, K*C): the K groups' weights side by side
        w = weight[groups].permute(0, 2, 1, 3).reshape(v, weight.shape[1], k * c)
        logits = torch.bmm(x[views], w).reshape(v, -1, k, c) + bias[groups][:, None, :, :]
        logits = logits.permute(0, 2, 1, 3).reshape(v * k, -1, c)
        targets = y.unsqueeze(0).expand(v * k, *y.shape)
        return self._group_loss(logits, targets, torch.float64)

    def valid_loss(self, xva: Any, yva: Any) -> Any:
        """Loss of every group on the whole validation set ``(V, N, D)``."""
        import torch

        out = torch.empty(self.n_groups)
        with torch.no_grad():
            for v, groups in self.view_groups():
                logits = self.logits(xva[v], groups)
                y = yva.unsqueeze(0).expand(len(groups), *yva.shape)
                out[groups] = self._group_loss(logits, y)
        return out

    def fit(
        self, xtr: Any, ytr: Any, xva: Any, yva: Any, cfg: ProbeConfig, desc: str | None = None
    ) -> None:
        """Train every group at once with ``cfg.solver``.

        ``adam``: epochs of ``steps_per_epoch`` batches, early stopping per group on the
        validation loss; each group ends with its best epoch's weights. ``lbfgs``: the exact
        solution for each L2 weight of ``cfg.l2``; each group ends with the one of lowest
        validation loss (``chosen_l2``; ``best_epoch`` and ``epochs_run`` then count L-BFGS
        iterations).

        ``xtr`` ``(V, N, D)`` and ``xva`` standardised float32; ``ytr``/``yva`` targets.
        ``desc``: show a progress bar with this label. Runs with ``cfg.threads`` torch threads.
        """
        from vit1d.device import torch_threads

        if cfg.solver not in ("adam", "lbfgs"):
            raise ValueError(f"unknown probe solver {cfg.solver!r}; use 'adam' or 'lbfgs'")
        with torch_threads(cfg.threads):
            if cfg.solver == "adam":
                self._fit(xtr, ytr, xva, yva, cfg, desc)
            else:
                self._fit_exact(xtr, ytr, xva, yva, cfg, desc)

    def _fit(self, xtr: Any, ytr: Any, xva: Any, yva: Any, cfg: ProbeConfig, desc: str | None):
        import torch
        from tqdm.auto import tqdm

        n = xtr.shape[1]
        batch = min(cfg.batch_size, n)
        weight = torch.nn.Parameter(self.weight.clone())
        bias = torch.nn.Parameter(self.bias.clone())
        opt = torch.optim.Adam([weight, bias], lr=cfg.lr)
        best_w, best_b = self.weight.clone(), self.bias.clone()
        best = torch.full((self.n_groups,), float("inf"))
        bad = np.zeros(self.n_groups, dtype=int)
        stopped = np.zeros(self.n_groups, dtype=bool)
        unique_seeds = sorted(set(self.seeds))
        rngs = {s: np.random.default_rng(s) for s in unique_seeds}
        pending = {s: np.zeros(0, dtype=np.int64) for s in unique_seeds}
        seed_row = {s: k for k, s in enumerate(unique_seeds)}
        rows = torch.as_tensor([seed_row[s] for s in self.seeds])
        need = cfg.steps_per_epoch * batch
        bar = tqdm(total=cfg.max_epochs, desc=desc, unit="epoch", disable=desc is None, leave=False)
        for epoch in range(cfg.max_epochs):
            order = []
            for s in unique_seeds:  # each seed's own stream of shuffled passes over the data
                while len(pending[s]) < need:
                    pending[s] = np.concatenate([pending[s], rngs[s].permutation(n)])
                order.append(pending[s][:need])
                pending[s] = pending[s][need:]
            order_t = torch.from_numpy(np.stack(order))[rows]  # (G, need)
            for step in range(cfg.steps_per_epoch):
                idx = order_t[:, step * batch : (step + 1) * batch]  # (G, B)
                x = xtr[self.views[:, None], idx]  # (G, B, D)
                logits = torch.baddbmm(bias[:, None, :], x, weight)
                loss = self._group_loss(logits, ytr[idx]).sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            self.weight, self.bias = weight.detach(), bias.detach()
            current = self.valid_loss(xva, yva)
            improved = (current < best - cfg.min_delta) & torch.from_numpy(~stopped)
            for g in torch.nonzero(improved).flatten().tolist():
                best[g] = current[g]
                best_w[g], best_b[g] = weight.detach()[g], bias.detach()[g]
                self.best_epoch[g] = epoch + 1
                bad[g] = 0
            not_improved = ~improved.numpy() & ~stopped
            bad[not_improved] += 1
            stopped |= bad >= cfg.patience
            self.epochs_run = epoch + 1
            bar.update(1)
            bar.set_postfix(active=int((~stopped).sum()))
            if stopped.all():
                break
        bar.close()
        self.weight, self.bias = best_w, best_b

    def _fit_exact(
        self, xtr: Any, ytr: Any, xva: Any, yva: Any, cfg: ProbeConfig, desc: str | None
    ) -> None:
        """Full-batch L-BFGS of every group's penalised mean loss, once per L2 weight.

        The weights go from the largest L2 weight to the smallest, each solve warm-started
        from the previous solution (the first from the seeded initialisation): a strongly
        penalised problem is well conditioned and its solution is a good start for the next.
        """
        import torch
        from tqdm.auto import tqdm

        grid = sorted({float(a) for a in cfg.l2}, reverse=True)
        if not grid or grid[-1] < 0 or not all(math.isfinite(a) for a in grid):
            raise ValueError(f"lbfgs needs finite L2 weights >= 0, got {cfg.l2!r}")
        if cfg.max_iter < 1:
            raise ValueError(f"lbfgs needs max_iter >= 1, got {cfg.max_iter}")
        weight = torch.nn.Parameter(self.weight.clone())
        bias = torch.nn.Parameter(self.bias.clone())
        blocks = self.view_blocks(xtr.shape[1], cfg.memory_mb)

        def objective(l2: float) -> Any:
            # float32 products, float64 sums: the value's rounding must stay below the
            # decreases of the last iterations, or the line search stops L-BFGS early
            loss = torch.zeros((), dtype=torch.float64)
            for vs, idx in blocks:
                part = self._block_loss(xtr, ytr, weight, bias, vs, idx).sum()
                part.backward()  # one block's graph at a time
                loss += part.detach()
            penalty = l2 * weight.double().pow(2).sum()
            penalty.backward()
            return loss + penalty.detach()

        best_w, best_b = self.weight.clone(), self.bias.clone()
        best = torch.full((self.n_groups,), float("inf"))
        self.chosen_l2 = np.full(self.n_groups, np.nan)
        iterations = 0
        bar = tqdm(total=len(grid), desc=desc, unit="l2", disable=desc is None, leave=False)
        for l2 in grid:
            # a fresh curvature history: the objective changed with the L2 weight
            opt = torch.optim.LBFGS(
                [weight, bias],
                lr=1.0,
                max_iter=cfg.max_iter,
                history_size=LBFGS_HISTORY,
                line_search_fn="strong_wolfe",
            )

            def closure(l2: float = l2, opt: Any = opt) -> Any:
                opt.zero_grad(set_to_none=True)
                return objective(l2)

            # torch's tolerances: stops when the gradient (1e-7) or the change of the value or
            # of the step (1e-9) vanishes, or after max_iter iterations
            opt.step(closure)
            iterations += int(opt.state[weight].get("n_iter", 0))
            self.weight, self.bias = weight.detach(), bias.detach()
            current = self.valid_loss(xva, yva)
            for g in torch.nonzero(current < best).flatten().tolist():
                best[g] = current[g]
                best_w[g], best_b[g] = weight.detach()[g], bias.detach()[g]
                self.chosen_l2[g] = l2
                self.best_epoch[g] = iterations
            self.epochs_run = iterations
            bar.update(1)
        bar.close()
        self.weight, self.bias = best_w, best_b


# ----------------------------------------------------------------------------------------------
# Probing one task
# ----------------------------------------------------------------------------------------------


@dataclass
class View:
    """A feature matrix the probes read: which embeddings (init), layer and pooling."""

    source: int
    layer: int
    pooling: str


def _views(
    embeddings: Sequence[Any],
    local: bool,
    layers: Sequence[int] | None,
    poolings: Sequence[str] | None,
) -> list[View]:
    views = []
    for e_i, emb in enumerate(embeddings):
        use_layers = [la for la in emb.layers if layers is None or la in layers] or emb.layers[-1:]
        if local:
            views += [View(e_i, la, "frame") for la in use_layers]
            continue
        pools = [p for p in emb.poolings if poolings is None or p in poolings] or emb.poolings
        views += [View(e_i, la, p) for la in use_layers for p in pools]
    return views


def fit_seeds(solver: str, n_sources: int, seeds: Sequence[int]) -> list[int]:
    """The probe seeds that are fitted: all of ``seeds``, but with the exact solver on one
    feature source only the first. Its solution is the unique minimum of a strongly convex
    objective (L2 > 0), so another starting point gives the same probe up to the solver's
    tolerance: fitting it again per seed would repeat the work and count one probe as
    several. With one source per seed (random init) every seed has its own features."""
    seeds = [int(s) for s in seeds]
    if solver == "lbfgs" and n_sources == 1 and seeds:
        return seeds[:1]
    return seeds


def _groups(views: list[View], n_sources: int, seeds: Sequence[int]) -> list[tuple[int, int]]:
    """``(view, seed)`` pairs: every seed on every view, or, with one source per seed (random
    init), seed ``k`` on the views of source ``k``."""
    if n_sources == 1:
        return [(v, s) for v in range(len(views)) for s in seeds]
    if n_sources != len(seeds):
        raise UserError(
            f"{n_sources} feature sources but {len(seeds)} seeds: give one init seed per probe seed"
        )
    return [(v, seeds[views[v].source]) for v in range(len(views))]


def _global_matrix(emb: Any, view: View, indices: np.ndarray) -> Any:
    import torch

    return torch.from_numpy(emb.pooled(view.layer, view.pooling, indices))


def _frame_matrix(emb: Any, layer: int, indices: np.ndarray, picks: np.ndarray | None) -> Any:
    """Concatenated frame tokens ``(F, D)`` float32 of files ``indices`` (rows ``picks``)."""
    import torch

    frames = np.concatenate(emb.frames(layer, indices)).astype(np.float32)
    if picks is not None:
        frames = frames[picks]
    return torch.from_numpy(frames)


def _frame_targets(task: Task, emb: Any, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated frame targets and per-file offsets."""
    ys = [frame_targets(task, task.examples[i], int(emb.n_frames[i])) for i in indices]
    offsets = np.concatenate([[0], np.cumsum([len(y) for y in ys])]).astype(int)
    return np.concatenate(ys) if ys else np.zeros(0), offsets


def _subsample(y: np.ndarray, limit: int, seed: int, ignore_negative: bool) -> np.ndarray:
    """Sorted row numbers: at most ``limit`` rows (seeded), skipping ignored targets."""
    rows = np.flatnonzero(y >= 0) if ignore_negative else np.arange(len(y))
    if len(rows) > limit:
        rows = np.sort(np.random.default_rng(seed).choice(rows, size=limit, replace=False))
    return rows


def _score_global(task: Task, test_idx: np.ndarray, logits: np.ndarray) -> dict[str, tuple]:
    """Per-unit scores ``{metric: (values, weights)}`` of one probe's test logits ``(N, C)``."""
    exs = [task.examples[i] for i in test_idx]
    if task.name == "tagging":
        y = global_targets(task, test_idx)
        s = M.tagging_scores(y, logits)
        return {"roc_auc": (s["roc_auc"], None), "map": (s["map"], None)}
    pred = [task.classes[k] for k in np.argmax(logits, axis=1)]
    ref = [ex.label for ex in exs]
    if task.name == "key":
        s = M.key_scores(ref, pred)
    elif task.name == "tempo":
        s = M.tempo_scores(ref, pred)
    else:
        s = M.accuracy_scores(ref, pred)
    return {m: (v, None) for m, v in s.items()}


def _score_local(task: Task, example: Example, out: np.ndarray, duration: float) -> dict:
    """Scores of one test track from its frame outputs (logits ``(T, C)`` or ``(T, 1)``)."""
    if task.name == "chords":
        return chord_reference(example.label).scores(np.argmax(out, axis=1), FRAME_RATE, duration)
    act = 1.0 / (1.0 + np.exp(-out[:, 0].astype(np.float64)))
    ref = M.load_events(example.label)
    if task.name == "beats":
        s = M.beat_scores(ref, M.activation_to_beats(act, FRAME_RATE))
    else:
        s = M.onset_scores(ref, M.activation_to_onsets(act, FRAME_RATE))
    return {k: (v, 1.0) for k, v in s.items()}


def probe_task(
    task: Task,
    embeddings: Sequence[Any],
    seeds: Sequence[int] = (0, 1, 2),
    layers: Sequence[int] | None = None,
    poolings: Sequence[str] | None = None,
    config: ProbeConfig | None = None,
    splits: Sequence[str] = ("valid", "test"),
    progress: bool = False,
) -> dict[str, Any]:
    """Train and score every (layer, pooling, seed) probe of one task.

    ``embeddings``: one :class:`vit1d.embed.Embeddings` of ``task``'s files (in manifest
    order), or one per seed (random-init baselines: seed ``k`` probes init ``k``). Returns
    ``rows`` (task, layer, pooling, seed, split, metric, value, n), ``summary`` (per layer,
    pooling, split and metric: mean over seeds with bootstrap CI), ``items`` (the test
    split's per-item scores, :mod:`vit1d.items`) and ``info``. Both the valid and the test
    split are scored by default: layers and poolings are chosen on valid, reported on test.
    """

    from vit1d.results import bootstrap_tagging, summary_row

    cfg = config or ProbeConfig()
    if task.spec.local:
        cfg = replace(cfg, solver=cfg.local_solver)
    for emb in embeddings:
        if [Path(p) for p in emb.paths] != [ex.audio for ex in task.examples]:
            raise ValueError("embeddings must list the task's audio files in manifest order")
    t0 = time.perf_counter()
    views = _views(embeddings, task.spec.local, layers, poolings)
    fitted = fit_seeds(cfg.solver, len(embeddings), seeds)
    groups = _groups(views, len(embeddings), fitted)
    tr, va = task.indices("train"), task.indices("valid")
    scores: dict[tuple[int, str, str], list[tuple[int, np.ndarray, np.ndarray | None]]] = {}
    # with lbfgs, "epochs" and "best_epoch" count L-BFGS iterations (over the L2 weights, the
    # largest first) and "l2" holds the L2 weight each probe kept
    info: dict[str, Any] = {"solver": cfg.solver, "seeds": fitted, "epochs": {}, "best_epoch": {}}
    if cfg.solver == "lbfgs":
        info["l2"] = {}
    if task.spec.local:
        chunks = _local_chunks(task, embeddings, views, tr, cfg)
    else:
        chunks = [list(range(len(views)))]
    for chunk in chunks:
        _train_and_score(
            task, embeddings, views, groups, chunk, tr, va, splits, cfg, scores, info, progress
        )
    rows, summary = [], []
    for (v, split, metric), per_seed in sorted(scores.items()):
        view = views[v]
        per_seed.sort(key=lambda t: t[0])
        for seed, values, weights in per_seed:
            rows.append(
                {
                    "task": task.name,
                    "layer": view.layer,
                    "pooling": view.pooling,
                    "seed": seed,
                    "split": split,
                    "metric": metric,
                    "value": M.weighted_mean(values, weights),
                    "n": int(len(values)),
                }
            )
    merged: dict[tuple[int, str, str, str], list] = {}
    for (v, split, metric), per_seed in scores.items():
        key = (views[v].layer, views[v].pooling, split, metric)
        merged.setdefault(key, []).extend(per_seed)
    raw = info.pop("_raw", {})
    tag_ci: dict[tuple[int, str, str, str], tuple[float, float, float]] = {}
    for (layer, pooling, split), per_seed in raw.items():  # tagging: macro metrics
        per_seed.sort(key=lambda t: t[0])
        y = global_targets(task, task.indices(split))
        logits = [out for _, out in per_seed]
        n_boot = min(cfg.n_boot, cfg.n_boot_tagging)
        for metric, stat in bootstrap_tagging(y, logits, n_boot=n_boot).items():
            tag_ci[(layer, pooling, split, metric)] = stat
    for (layer, pooling, split, metric), per_seed in sorted(merged.items()):
        per_seed.sort(key=lambda t: t[0])
        matrix = np.stack([values for _, values, _ in per_seed])
        weights = per_seed[0][2]
        stats = summary_row(matrix, weights, task.spec.unit, n_boot=cfg.n_boot)
        key = (layer, pooling, split, metric)
        if key in tag_ci:
            mean, lo, hi = tag_ci[key]
            n_clips = len(task.indices(split))
            stats.update({"mean": mean, "ci_low": lo, "ci_high": hi, "n": n_clips})
        summary.append(
            {
                "task": task.name,
                "layer": layer,
                "pooling": pooling,
                "split": split,
                "metric": metric,
                **stats,
            }
        )
    info["seconds"] = round(time.perf_counter() - t0, 2)
    info["notes"] = task.notes
    info["n"] = {s: int(len(task.indices(s))) for s in SPLITS}
    items = _item_frames(task, views, scores, raw)
    return {"rows": rows, "summary": summary, "items": items, "info": info}


def chance_summary(task: Task, splits: Sequence[str] = ("valid", "test")) -> list[dict[str, Any]]:
    """Summary rows of the prior-only predictor on ``splits``: every item gets the training
    split's most frequent class (tagging: one constant score). Global tasks only."""
    if task.spec.local:
        return []
    out = []
    for split in splits:
        idx = task.indices(split)
        if len(idx) == 0:
            continue
        logits = np.zeros((len(idx), len(task.classes)))
        if task.name != "tagging":
            y = global_targets(task, task.indices("train"))
            logits[:, int(np.bincount(y[y >= 0], minlength=len(task.classes)).argmax())] = 1.0
        for metric, (values, weights) in _score_global(task, idx, logits).items():
            out.append(
                {
                    "task": task.name,
                    "layer": 0,
                    "pooling": "prior",
                    "split": split,
                    "metric": metric,
                    "mean": M.weighted_mean(values, weights),
                    "ci_low": float("nan"),
                    "ci_high": float("nan"),
                    "std_seeds": 0.0,
                    "n_seeds": 0,
                    "n": int(len(idx)),
                    "unit": task.spec.unit,
                }
            )
    return out


def item_names(task: Task, indices: np.ndarray) -> list[str]:
    """The items of ``indices``: audio paths relative to the corpus root (the same names for
    every model probed on the corpus)."""
    root = task.manifest.parent.parent
    return [os.path.relpath(task.examples[i].audio, root) for i in indices]


def _item_frames(task: Task, views: list[View], scores: dict, raw: dict) -> list[Any]:
    """Per-item rows of the test split (:mod:`vit1d.items`): scores, or tagging's logits."""
    split = "test"
    names = item_names(task, task.indices(split))
    frames = []
    if task.name == "tagging":
        y = global_targets(task, task.indices(split))
        for (layer, pooling, s), per_seed in raw.items():
            if s != split:
                continue
            for seed, logits in per_seed:
                probe = {"task": task.name, "layer": layer, "pooling": pooling, "seed": seed}
                probe["split"] = split
                frames.append(tagging_items(probe, names, task.classes, logits, y))
        return frames
    for (v, s, metric), per_seed in scores.items():
        if s != split:
            continue
        view = views[v]
        for seed, values, weights in per_seed:
            probe = {"task": task.name, "layer": view.layer, "pooling": view.pooling}
            probe.update({"seed": seed, "split": split, "metric": metric})
            frames.append(scalar_items(probe, names, values, weights))
    return frames


def _local_chunks(
    task: Task, embeddings: Sequence[Any], views: list[View], tr: np.ndarray, cfg: ProbeConfig
) -> list[list[int]]:
    """Views per training stack so that the training frames fit ``memory_mb``."""
    frames = min(cfg.max_train_frames, int(embeddings[0].n_frames[tr].sum()))
    per_view = max(1, frames * embeddings[0].frame_dim * 4)
    size = max(1, int(cfg.memory_mb * 2**20 // per_view))
    return [list(range(i, min(i + size, len(views)))) for i in range(0, len(views), size)]


def _train_and_score(
    task: Task,
    embeddings: Sequence[Any],
    views: list[View],
    groups: list[tuple[int, int]],
    chunk: list[int],
    tr: np.ndarray,
    va: np.ndarray,
    splits: Sequence[str],
    cfg: ProbeConfig,
    scores: dict,
    info: dict,
    progress: bool = False,
) -> None:
    """Train the probes of the views in ``chunk`` together and score them on ``splits``."""
    import torch

    local = task.spec.local
    emb0 = embeddings[0]
    if local:
        ytr_all, _ = _frame_targets(task, emb0, tr)
        yva_all, _ = _frame_targets(task, emb0, va)
        ignore = task.spec.loss == "softmax"
        pick_tr = _subsample(ytr_all, cfg.max_train_frames, 0, ignore)
        pick_va = _subsample(yva_all, cfg.max_valid_frames, 1, ignore)
        ytr_np, yva_np = ytr_all[pick_tr], yva_all[pick_va]

        def load(v: int, indices: np.ndarray, picks: np.ndarray) -> Any:
            return _frame_matrix(embeddings[views[v].source], views[v].layer, indices, picks)

        n_tr, n_va = len(pick_tr), len(pick_va)
        parts = ((tr, pick_tr), (va, pick_va))
    else:
        ytr_np, yva_np = global_targets(task, tr), global_targets(task, va)

        def load(v: int, indices: np.ndarray, picks: np.ndarray | None) -> Any:
            return _global_matrix(embeddings[views[v].source], views[v], indices)

        n_tr, n_va = len(tr), len(va)
        parts = ((tr, None), (va, None))
    if len(ytr_np) == 0 or len(yva_np) == 0:
        raise UserError(
            f"task {task.name}: no usable training or validation targets in {task.manifest}"
        )
    # one view at a time into preallocated stacks, standardised with train statistics
    dim = embeddings[0].frame_dim if local else embeddings[0].dim
    xtr_t = torch.empty(len(chunk), n_tr, dim)
    xva_t = torch.empty(len(chunk), n_va, dim)
    stats = []
    for k, v in enumerate(chunk):
        x = load(v, *parts[0])
        m, sd = standardise(x)
        stats.append((m, sd))
        xtr_t[k] = (x - m) / sd
        xva_t[k] = (load(v, *parts[1]) - m) / sd
        del x
    if task.spec.loss == "softmax":
        ytr_t, yva_t = torch.from_numpy(ytr_np).long(), torch.from_numpy(yva_np).long()
    else:
        ytr_t, yva_t = torch.from_numpy(ytr_np).float(), torch.from_numpy(yva_np).float()
    pos_weight = None
    if task.spec.balance:
        pos = float(ytr_np.sum())
        pos_weight = (len(ytr_np) - pos) / max(pos, 1.0)
    local_view = {v: k for k, v in enumerate(chunk)}
    chunk_groups = [g for g, (v, _) in enumerate(groups) if v in local_view]
    probes = LinearProbes(
        [local_view[groups[g][0]] for g in chunk_groups],
        [groups[g][1] for g in chunk_groups],
        xtr_t.shape[2],
        task.n_outputs,
        task.spec.loss,
        pos_weight,
    )
    probes.fit(xtr_t, ytr_t, xva_t, yva_t, cfg, desc=f"probe {task.name}" if progress else None)
    for k, g in enumerate(chunk_groups):
        v, seed = groups[g]
        key = f"{views[v].layer}/{views[v].pooling}/{seed}"
        info["best_epoch"][key] = int(probes.best_epoch[k])
        if "l2" in info:
            info["l2"][key] = float(probes.chosen_l2[k])
    info["epochs"][f"chunk{chunk[0]}"] = probes.epochs_run
    del xtr_t, xva_t
    for split in splits:
        idx = task.indices(split)
        if len(idx) == 0:
            continue
        for v in chunk:
            view = views[v]
            emb = embeddings[view.source]
            members = [k for k, g in enumerate(chunk_groups) if groups[g][0] == v]
            m, s = stats[local_view[v]]
            with torch.no_grad():
                if local:
                    x = (_frame_matrix(emb, view.layer, idx, None) - m) / s
                else:
                    x = (_global_matrix(emb, view, idx) - m) / s
                out = probes.logits(x, members).numpy()
            for pos, k in enumerate(members):
                seed = groups[chunk_groups[k]][1]
                if local:
                    per = _score_local_tracks(task, emb, idx, out[pos])
                else:
                    per = _score_global(task, idx, out[pos])
                    if task.name == "tagging":  # macro metrics: the bootstrap needs scores
                        key = (view.layer, view.pooling, split)
                        info.setdefault("_raw", {}).setdefault(key, []).append((seed, out[pos]))
                for metric, (values, weights) in per.items():
                    scores.setdefault((v, split, metric), []).append((seed, values, weights))


def _score_local_tracks(task: Task, emb: Any, idx: np.ndarray, out: np.ndarray) -> dict:
    """Per-track scores of one probe over the files ``idx`` (frame outputs concatenated)."""
    offsets = np.concatenate([[0], np.cumsum(emb.n_frames[idx])]).astype(int)
    values: dict[str, list[float]] = {m: [] for m in task.spec.metrics}
    weights: dict[str, list[float]] = {m: [] for m in task.spec.metrics}
    for j, i in enumerate(idx):
        ex = task.examples[i]
        duration = float(emb.n_frames[i] - 1) / FRAME_RATE + 0.5 / FRAME_RATE
        per = _score_local(task, ex, out[offsets[j] : offsets[j + 1]], duration)
        for metric, (value, weight) in per.items():
            values[metric].append(value)
            weights[metric].append(weight)
    return {
        m: (np.asarray(values[m]), np.asarray(weights[m]) if task.name == "chords" else None)
        for m in task.spec.metrics
    }


# ----------------------------------------------------------------------------------------------
# Whole runs: models x tasks -> results files
# ----------------------------------------------------------------------------------------------


def corpus_name(root: Path) -> str:
    """A corpus's name: ``config.name`` of its corpus.json, else its folder name."""
    try:
        name = json.loads((root / "corpus.json").read_text())["config"]["name"]
        if name:
            return str(name)
    except (OSError, KeyError, TypeError, json.JSONDecodeError):
        pass
    return root.resolve().name


@dataclass
class ExtractOptions:
    """Extraction settings passed to :func:`vit1d.embed.embed`."""

    cache_dir: str | None = None
    window_s: float = 4.0
    hop_s: float = 4.0
    batch_size: int = 32
    device: str = "auto"
    precision: str = "auto"
    threads: int | None = None  # None: vit1d.embed.inference_threads decides

    def embed(
        self,
        spec: Any,
        files: Sequence[Any],
        cache: Any,
        frames: bool,
        model: Any,
        progress: bool,
        depth: int | None = None,
    ) -> Any:
        """:func:`vit1d.embed.embed` with these settings (``depth``: layers 0..depth only)."""
        from vit1d.embed import embed

        return embed(
            spec,
            files,
            cache_dir=cache,
            frames=frames,
            window_s=self.window_s,
            hop_s=self.hop_s,
            batch_size=self.batch_size,
            device=self.device,
            precision=self.precision,
            threads=self.threads,
            progress=progress,
            model=model,
            depth=depth,
        )


def run_probes(
    tasks: Sequence[Task],
    sources: Sequence[Sequence[Any]],
    out_dir: str | Path,
    seeds: Sequence[int] = (0, 1, 2),
    layers: Sequence[int] | None = None,
    poolings: Sequence[str] | None = None,
    config: ProbeConfig | None = None,
    extract: ExtractOptions | None = None,
    corpus: str | None = None,
    progress: bool = True,
    say: Any = print,
) -> dict[str, Any]:
    """Probe every task on every feature source and merge the results into ``out_dir``.

    ``sources``: a list of source groups, each a list of :class:`vit1d.embed.ModelSpec`: one
    spec (a checkpoint, the log-mel baseline), or one per seed (random init: init seed ``k``
    is probed with probe seed ``k``). Extraction happens once per spec over the union of the
    tasks' audio (frame tokens only for the files of local tasks).
    """

    from vit1d.device import hardware_summary, select_device
    from vit1d.embed import load_model
    from vit1d.results import SUMMARY_COLUMNS, SUMMARY_CSV, results_lock, upsert_csv, write_results

    cfg = config or ProbeConfig()
    ext = extract or ExtractOptions()
    out_dir = Path(out_dir)
    if not tasks:
        raise UserError("no tasks to probe")
    tasks = [
        limit_files(t, cfg.max_local_files if t.spec.local else cfg.max_global_files) for t in tasks
    ]
    root = tasks[0].manifest.parent.parent
    corpus = corpus or corpus_name(root)
    cache = ext.cache_dir or str(root / ".vit1d_cache" / "embed")
    global_files = list(
        dict.fromkeys(ex.audio for t in tasks if not t.spec.local for ex in t.examples)
    )
    local_files = list(dict.fromkeys(ex.audio for t in tasks if t.spec.local for ex in t.examples))
    written: dict[str, Any] = {"run_ids": []}
    # probing only some layers: the blocks above the deepest are not run
    depth = max(layers) if layers else None
    for group in sources:
        run_id = f"{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        started = time.perf_counter()
        per_spec: list[dict[str, Any]] = []
        for spec in group:
            model = load_model(spec)
            say(f"extract {spec.name} {spec.checkpoint_name}")
            made = {}
            local_set = set(local_files)
            for frames, files in ((True, local_files), (False, global_files)):
                only = [f for f in files if frames or f not in local_set]
                if only:
                    made[frames] = ext.embed(spec, only, cache, frames, model, progress, depth)
            per_spec.append({"spec": spec, "model": model, "made": made})
        rows, summary, items, task_info = [], [], [], {}
        task_embs = [
            [
                # the task's files, in manifest order, from the store that holds them (all
                # extracted above: looked up here, in this thread, before the fits start)
                ext.embed(
                    entry["spec"],
                    [ex.audio for ex in task.examples],
                    cache,
                    task.spec.local,
                    entry["model"],
                    progress=False,
                    depth=depth,
                )
                for entry in per_spec
            ]
            for task in tasks
        ]
        for task in tasks:
            say(f"probe {group[0].name} {task.name}: {len(task.examples)} examples")
        results = _fit_tasks(tasks, task_embs, seeds, layers, poolings, cfg, progress)
        for task, embs, result in zip(tasks, task_embs, results, strict=True):
            prov0 = embs[0].provenance
            checkpoint = group[0].checkpoint_name if len(group) == 1 else "random-init"
            common = {
                "model": group[0].name,
                "checkpoint": checkpoint,
                "step": group[0].step if group[0].step is not None else "",
                "corpus": corpus,
                "precision": prov0["precision"],
                "run_id": run_id,
            }
            rows += [{**common, **r} for r in result["rows"]]
            summary += [{**common, **r} for r in result["summary"]]
            keys = {k: common[k] for k in ("model", "checkpoint", "corpus")}
            items += [f.assign(**keys) for f in result["items"]]
            task_info[task.name] = {
                **result["info"],
                "manifest": str(task.manifest),
                "manifest_sha256": file_sha256(task.manifest),
                "classes": len(task.classes),
            }
        provenance = {
            "models": [
                {**asdict(e["spec"]), "weights_sha256": _embed_hash(e), "precision": _embed_prec(e)}
                for e in per_spec
            ],
            "model": group[0].name,
            "corpus": {
                "name": corpus,
                "root": str(root.resolve()),
                "corpus_json_sha256": file_sha256(root / "corpus.json")
                if (root / "corpus.json").is_file()
                else None,
            },
            "tasks": task_info,
            "seeds": sorted({s for info in task_info.values() for s in info["seeds"]}),
            "seed_pairing": "init seed k <-> probe seed k" if len(group) > 1 else "all seeds",
            "layers": list(layers) if layers is not None else "all",
            "poolings": list(poolings) if poolings is not None else "all",
            "probe_config": asdict(cfg),
            "extraction": {**asdict(ext), "x_realtime": [_embed_speed(e) for e in per_spec]},
            "hardware": hardware_summary(select_device(ext.device)),
            "versions": library_versions(),
            "seconds": round(time.perf_counter() - started, 1),
            "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        with results_lock(out_dir):  # a run's rows and its items appear together
            paths = write_results(out_dir, rows, summary, run_id, provenance)
            write_items(out_dir, items)
        written["run_ids"].append(run_id)
        written.update({k: str(v) for k, v in paths.items()})
        say(
            f"  {group[0].name}: {len(rows)} rows in {provenance['seconds']:.0f} s -> "
            f"{paths['probes']}"
        )
    chance = {"model": "chance", "checkpoint": "-", "step": "", "corpus": corpus, "run_id": ""}
    rows = [{**chance, **r} for t in tasks for r in chance_summary(t)]
    if rows:
        upsert_csv(out_dir / SUMMARY_CSV, rows, SUMMARY_COLUMNS)
    return written


def _fit_tasks(
    tasks: Sequence[Task],
    task_embs: Sequence[Sequence[Any]],
    seeds: Sequence[int],
    layers: Sequence[int] | None,
    poolings: Sequence[str] | None,
    cfg: ProbeConfig,
    progress: bool,
) -> list[dict[str, Any]]:
    """:func:`probe_task` of every task, ``cfg.workers`` tasks at a time in threads (in
    order); the torch thread count is set once around them, not by each fit."""
    from concurrent.futures import ThreadPoolExecutor

    from vit1d.device import torch_threads

    workers = min(len(tasks), cfg.workers or os.cpu_count() or 1)
    if workers <= 1:
        return [
            probe_task(t, e, seeds, layers, poolings, cfg, progress=progress)
            for t, e in zip(tasks, task_embs, strict=True)
        ]
    shared = replace(cfg, threads=0)  # each fit leaves the thread count alone
    with (
        torch_threads(cfg.threads),
        ThreadPoolExecutor(workers, thread_name_prefix="vit1d-probe") as pool,
    ):
        futures = [
            pool.submit(probe_task, t, e, seeds, layers, poolings, shared, ("valid", "test"), False)
            for t, e in zip(tasks, task_embs, strict=True)
        ]
        return [f.result() for f in futures]


def _embed_hash(entry: dict[str, Any]) -> str | None:
    made = entry["made"]
    return next(iter(made.values())).provenance.get("weights_sha256") if made else None


def _embed_prec(entry: dict[str, Any]) -> str | None:
    made = entry["made"]
    return next(iter(made.values())).provenance.get("precision") if made else None


def _embed_speed(entry: dict[str, Any]) -> float | None:
    speeds = [e.provenance.get("extraction_x_realtime") for e in entry["made"].values()]
    speeds = [s for s in speeds if s]
    return round(float(np.mean(speeds)), 1) if speeds else None


def baseline_sources(config: dict[str, Any], random_init: int, logmel: bool) -> list[list[Any]]:
    """Source groups of the baselines: ``random_init`` seeds of a ViT-1D with ``config`` (one
    group, init seed ``k`` for probe seed ``k``) and the log-mel features."""
    from vit1d.embed import ModelSpec

    out: list[list[Any]] = []
    if random_init:
        out.append([ModelSpec("random", seed=k, config=config, step=0) for k in range(random_init)])
    if logmel:
        out.append([ModelSpec("logmel")])
    return out


def emergence_sources(run_dir: str | Path, label: str = "") -> list[list[Any]]:
    """One source group per snapshot kept by a pretraining run (``snapshots/step-N``)."""
    from vit1d.embed import ModelSpec
    from vit1d.train import snapshot_folders

    found = snapshot_folders(run_dir)
    if not found:
        raise UserError(
            f"{run_dir} has no snapshots/step-* folders: pretrain with train.snapshot_fractions "
            "set (e.g. [0.1, 0.25, 0.5, 1.0]) to probe emergence over training"
        )
    return [
        [ModelSpec("checkpoint", str(folder), label=label, step=step)] for step, folder in found
    ]


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


def _int_list(value: str) -> list[int]:
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {value!r}"
        ) from None


def parse_file_caps(value: str) -> tuple[int, int, int]:
    """``"TRAIN,VALID,TEST"`` file counts (or ``"0"``: no cap) as a tuple."""
    caps = _int_list(value) if value.strip() != "0" else [0, 0, 0]
    if len(caps) != 3 or min(caps) < 0:
        raise UserError(f"--max-*-files wants TRAIN,VALID,TEST counts (or 0), got {value!r}")
    return caps[0], caps[1], caps[2]


def register(subparsers: Any) -> None:
    """``vit1d probe``: linear probes of a checkpoint and baselines on a corpus."""
    from vit1d.embed import add_model_args

    p = subparsers.add_parser(
        "probe",
        help="linear probes per task, layer, pooling and seed; results CSV + summary",
        description=(
            "Extract features (cached) and train one linear probe per (task, layer, pooling, "
            "seed) on a corpus in the manifest format (<data>/<task>/manifest.csv); score "
            "them with the field's metrics and merge the rows into <out>/probes.csv, "
            "<out>/probes_summary.csv (mean over seeds, 95%% bootstrap CI) and "
            "<out>/probes_runs.json (provenance). Examples:\n"
            "  vit1d probe --data data/smoke --checkpoint runs/smoke/pretrain --baselines\n"
            "  vit1d probe --data data/smoke --checkpoint runs/smoke/pretrain --emergence "
            "--tasks key,tempo --no-final"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", help="corpus root holding <task>/manifest.csv")
    p.add_argument("--manifest", help="one manifest.csv instead of --data (task = its folder)")
    p.add_argument("--tasks", default="all", help="comma-separated tasks or all (default)")
    p.add_argument("--checkpoint", help="checkpoint folder (model.safetensors + config.json)")
    p.add_argument("--label", default="", help="model name in the results (default contrastive)")
    p.add_argument(
        "--emergence",
        action="store_true",
        help="also probe every snapshots/step-* folder of the --checkpoint run",
    )
    p.add_argument(
        "--no-final",
        action="store_true",
        help="with --emergence: skip the final model (probe only the snapshots)",
    )
    p.add_argument(
        "--random-init",
        type=int,
        default=0,
        metavar="N",
        help="random-init baseline with init seeds 0..N-1 (paired with probe seeds)",
    )
    p.add_argument("--logmel", action="store_true", help="log-mel baseline")
    p.add_argument(
        "--baselines",
        action="store_true",
        help="shorthand for --random-init <number of seeds> --logmel",
    )
    p.add_argument(
        "--config",
        default="",
        help="architecture for --random-init without --checkpoint: a preset name "
        "or checkpoint folder",
    )
    p.add_argument(
        "--seeds", type=_int_list, default="0,1,2", help="probe seeds (default: %(default)s)"
    )
    p.add_argument("--layers", default="all", help="depths to probe: all or e.g. 0,4,8,12")
    p.add_argument(
        "--poolings", default="cls,seq,avg", help="global poolings (default: %(default)s)"
    )
    p.add_argument("--out", default="results", help="results folder (default results/)")
    p.add_argument("--corpus", default="", help="corpus name in the results (default: its own)")
    g = p.add_argument_group("probe training")
    d = ProbeConfig()
    g.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate (%(default)s)")
    g.add_argument(
        "--max-epochs", type=int, default=d.max_epochs, help="Adam: epochs at most (%(default)s)"
    )
    g.add_argument(
        "--steps-per-epoch",
        type=int,
        default=d.steps_per_epoch,
        help="Adam: batches per epoch (%(default)s)",
    )
    g.add_argument(
        "--patience",
        type=int,
        default=d.patience,
        help="Adam: early stopping after this many epochs without gain (%(default)s)",
    )
    g.add_argument(
        "--solver",
        choices=("adam", "lbfgs"),
        default=d.solver,
        help=f"lbfgs (exact solution, L2 weight chosen on valid) or adam (the group's "
        f"protocol, one fit per seed) for global tasks; default {d.solver}",
    )
    g.add_argument(
        "--local-solver",
        choices=("adam", "lbfgs"),
        default=d.local_solver,
        help=f"the same for local (frame-level) tasks; default {d.local_solver}",
    )
    g.add_argument(
        "--max-train-frames",
        type=int,
        default=d.max_train_frames,
        help="local tasks: training frames drawn (%(default)s)",
    )
    g.add_argument(
        "--max-local-files",
        default=",".join(map(str, d.max_local_files)),
        help="local tasks: at most TRAIN,VALID,TEST files (0 = all; default %(default)s)",
    )
    g.add_argument(
        "--max-global-files",
        default="0",
        help="global tasks: at most TRAIN,VALID,TEST files (default 0 = all)",
    )
    g.add_argument(
        "--n-boot", type=int, default=d.n_boot, help="bootstrap replicates (%(default)s)"
    )
    g.add_argument(
        "--workers",
        type=int,
        default=d.workers,
        help="tasks fitted at once, one thread each (0 = one per CPU core; same results)",
    )
    add_model_args(p)
    p.set_defaults(func=_cli)


def probe_corpus(
    data: str | Path,
    out: str | Path,
    checkpoint: str | Path | None = None,
    tasks: Sequence[str] | str = "all",
    label: str = "",
    random_init: int = 0,
    logmel: bool = False,
    emergence: bool = False,
    final: bool = True,
    architecture: str | Path | None = None,
    seeds: Sequence[int] = (0, 1, 2),
    layers: Sequence[int] | None = None,
    poolings: Sequence[str] | None = ("cls", "seq", "avg"),
    config: ProbeConfig | None = None,
    extract: ExtractOptions | None = None,
    corpus: str | None = None,
    progress: bool = True,
    say: Any = print,
) -> dict[str, Any]:
    """What ``vit1d probe`` does, for notebooks: probe a corpus's tasks on a checkpoint (and
    its snapshots with ``emergence``; ``final=False`` skips the final model), on ``random_init``
    random-init models (init seed ``k`` <-> probe seed ``k``; architecture from the checkpoint
    or ``architecture``) and on log-mel features; merge the rows into ``out``."""
    from vit1d.embed import ModelSpec, architecture_config, checkpoint_step, tasks_arg

    root = Path(data)
    names = tasks_arg(tasks if isinstance(tasks, str) else ",".join(tasks), root)
    loaded = [load_task(root / t / "manifest.csv", t) for t in names]
    for t in loaded:
        for note in t.notes:
            say(f"{t.name}: {note}")
    if emergence and not checkpoint:
        raise UserError("emergence needs the checkpoint of the pretraining run folder")
    if random_init and random_init != len(seeds):
        raise UserError(
            f"{random_init} random-init models need as many probe seeds (got {len(seeds)}): "
            "init seed k is probed with probe seed k"
        )
    sources: list[list[Any]] = []
    if checkpoint and (final or not emergence):
        step = checkpoint_step(checkpoint)
        sources.append([ModelSpec("checkpoint", str(checkpoint), label=label, step=step)])
    if emergence:
        final_steps = {g[0].step for g in sources}
        # the last snapshot is the final model when both are probed: probe it once
        sources += [g for g in emergence_sources(checkpoint, label) if g[0].step not in final_steps]
    if random_init:
        arch = architecture or checkpoint
        if not arch:
            raise UserError("random-init baselines need a checkpoint or an architecture preset")
        sources += baseline_sources(architecture_config(str(arch)), random_init, False)
    if logmel:
        sources += baseline_sources({}, 0, True)
    if not sources:
        raise UserError("nothing to probe: give a checkpoint, random-init seeds or log-mel")
    pools = None if poolings is None else [*poolings, "meanstd"]
    return run_probes(
        loaded,
        sources,
        out,
        seeds=seeds,
        layers=layers,
        poolings=pools,
        config=config,
        extract=extract,
        corpus=corpus,
        progress=progress,
        say=say,
    )


def _cli(args: argparse.Namespace) -> int:
    if args.manifest:
        manifest = Path(args.manifest)
        data, tasks = manifest.parent.parent, manifest.parent.name
    elif args.data:
        data, tasks = Path(args.data), args.tasks
    else:
        raise UserError("give --data (a corpus root) or --manifest (one task's manifest.csv)")
    if args.emergence and not args.checkpoint:
        raise UserError("--emergence needs --checkpoint (the pretraining run folder)")
    cfg = ProbeConfig(
        lr=args.lr,
        max_epochs=args.max_epochs,
        steps_per_epoch=args.steps_per_epoch,
        patience=args.patience,
        solver=args.solver,
        local_solver=args.local_solver,
        max_train_frames=args.max_train_frames,
        max_local_files=parse_file_caps(args.max_local_files),
        max_global_files=parse_file_caps(args.max_global_files),
        n_boot=args.n_boot,
        workers=args.workers,
    )
    ext = ExtractOptions(
        cache_dir=args.cache,
        window_s=args.window_s,
        hop_s=args.hop_s,
        batch_size=args.batch_size,
        device=args.device,
        precision=args.precision,
        threads=args.threads or None,
    )
    t0 = time.perf_counter()
    out = probe_corpus(
        data,
        args.out,
        checkpoint=args.checkpoint,
        tasks=tasks,
        label=args.label,
        random_init=len(args.seeds) if args.baselines else args.random_init,
        logmel=args.logmel or args.baselines,
        emergence=args.emergence,
        final=not args.no_final,
        architecture=args.config or None,
        seeds=args.seeds,
        layers=None if args.layers == "all" else _int_list(args.layers),
        poolings=[p.strip() for p in args.poolings.split(",") if p.strip()],
        config=cfg,
        extract=ext,
        corpus=args.corpus or None,
        progress=not args.no_progress,
    )
    print(f"done in {time.perf_counter() - t0:.0f} s: {out['probes']}, {out['summary']}")
    return 0
