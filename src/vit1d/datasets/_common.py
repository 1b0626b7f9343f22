"""What every dataset adapter shares: finding files in the user's copy, linking it into the
corpus root, deterministic splits, label normalisation and writing manifests and annotations.

An adapter never copies or converts audio. It links the user's folder into the corpus root as
``<out>/source/<dataset>`` (a symbolic link) and writes audio paths through that link, so the
manifest's paths are relative, stay inside the corpus root (which :func:`vit1d.probing.tasks.load_task`
requires of relative paths) and resolve to the original files. Where the link cannot be made
(Windows without the symlink privilege) the paths are absolute instead, which ``load_task``
also accepts. Annotations are always rewritten, parsed and checked, into the formats
``mir_eval.io`` reads, under ``<out>/annotations/<dataset>/``.
"""

from __future__ import annotations

import csv
import hashlib
import importlib
import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import mir_eval
import numpy as np
import soundfile as sf

from vit1d.audio.frontend import _content_error
from vit1d.core.errors import UserError
from vit1d.corpus.labels import PITCH_NAMES as ROOTS

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".au", ".ogg", ".aif", ".aiff")
SPLITS = ("train", "valid", "test")
PROVENANCE = "datasets.json"


# ----------------------------------------------------------------------------------------------
# Optional dependency
# ----------------------------------------------------------------------------------------------


def mirdata_module(name: str) -> ModuleType:
    """``mirdata.datasets.<name>``, imported on first use; a :class:`UserError` saying how to
    install it when mirdata (an optional dependency, extra ``datasets``) is missing."""
    try:
        return importlib.import_module(f"mirdata.datasets.{name}")
    except ImportError as exc:
        missing = getattr(exc, "name", None) or "mirdata"
        raise UserError(
            f"this dataset adapter parses its annotations with mirdata, which is not installed "
            f"(missing module {missing!r}); install it with `pip install 'vit1d[datasets]'` "
            "or `pip install mirdata`"
        ) from None


# ----------------------------------------------------------------------------------------------
# Finding files
# ----------------------------------------------------------------------------------------------


def _walk(
    root: Path, depth: int | None = None, exclude: Path | None = None
) -> Iterator[tuple[Path, list[str], list[str]]]:
    """``os.walk`` in sorted order that follows symbolic links to folders (datasets are often
    assembled from links to other disks) but enters each real folder once (no cycles), stops
    ``depth`` levels below ``root`` and never enters ``exclude`` (the corpus root, which may
    sit inside the source and links back to it)."""
    skip = os.path.realpath(exclude) if exclude is not None else None
    seen: set[tuple[int, int]] = set()
    base = len(root.parts)
    for folder, dirs, files in os.walk(root, followlinks=True):
        here = Path(folder)
        st = here.stat()
        real = os.path.realpath(here)
        if (st.st_dev, st.st_ino) in seen or (
            skip is not None and (real == skip or real.startswith(skip + os.sep))
        ):
            dirs[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirs.sort()
        if depth is not None and len(here.parts) - base >= depth:
            dirs[:] = []
        yield here, dirs, sorted(files)


def walk_files(
    root: Path, suffixes: Sequence[str] | None = None, exclude: Path | None = None
) -> Iterator[Path]:
    """Files under ``root`` (sorted; see :func:`_walk`), optionally only those with the given
    suffixes (case-insensitive) and outside ``exclude``."""
    wanted = tuple(s.lower() for s in suffixes) if suffixes else None
    for folder, _, files in _walk(root, exclude=exclude):
        for name in files:
            if wanted is None or name.lower().endswith(wanted):
                yield folder / name


def find_dirs(root: Path, name: str, depth: int = 3) -> list[Path]:
    """Folders called ``name`` at most ``depth`` levels below ``root`` (``root`` included)."""
    return sorted(folder for folder, _, _ in _walk(root, depth) if folder.name == name)


def find_file(root: Path, name: str, depth: int = 3) -> Path | None:
    """The first file called ``name`` at most ``depth`` levels below ``root``, or ``None``."""
    for folder, _, files in _walk(root, depth):
        if name in files:
            return folder / name
    return None


def find_root(source: Path, relpaths: Sequence[str], depth: int = 2) -> Path | None:
    """The folder (``source`` or one at most ``depth`` levels below) under which most of
    ``relpaths`` exist: datasets list audio relative to a folder whose name varies with how
    the archive was unpacked (``audio/``, ``TinySOL/``, ``mp3/``, ...). Tested on 20 paths
    spread over the list, so a partly unpacked copy is still recognised."""
    if not relpaths:
        return None
    step = max(1, len(relpaths) // 20)
    sample = list(relpaths[::step])[:20]
    best, best_hits = None, 0
    for folder, _, _ in _walk(source, depth):
        hits = sum((folder / p).is_file() for p in sample)
        if hits > best_hits:
            best, best_hits = folder, hits
            if hits == len(sample):
                break
    return best


# ----------------------------------------------------------------------------------------------
# Labels
# ----------------------------------------------------------------------------------------------

_MODES = {"maj": "major", "major": "major", "min": "minor", "minor": "minor"}


def key_label(text: str) -> str | None:
    """A key in the probe's spelling (``Bb major``, ``C# minor``: the roots of
    :data:`vit1d.corpus.labels.PITCH_NAMES`, so enharmonic spellings of one key are one class), from
    ``Bb major``, ``a# minor``, ``D:min`` or ``E maj``; ``None`` when the text is not a single
    major or minor key (``-``, ``C minor / F# minor``, modal keys)."""
    text = text.strip().replace("\u266f", "#").replace("\u266d", "b").replace(":", " ")
    parts = text.split()
    if len(parts) != 2:
        return None
    semitone = mir_eval.key.KEY_TO_SEMITONE.get(parts[0].lower())
    mode = _MODES.get(parts[1].lower())
    if semitone is None or mode is None:
        return None
    return f"{ROOTS[semitone]} {mode}"


def chord_label_ok(label: str) -> bool:
    """Whether ``mir_eval`` parses ``label`` as a Harte chord (``N`` and ``X`` included); the
    probe reduces parsed chords to maj/min itself and ignores frames without a reduction."""
    if not label or any(c.isspace() for c in label):
        return False  # a blank splits the label into two columns of the .lab file
    try:
        mir_eval.chord.encode(label)
    except Exception:  # mir_eval raises InvalidChordException, ValueError, IndexError
        return False
    return True


# ----------------------------------------------------------------------------------------------
# Splits
# ----------------------------------------------------------------------------------------------


def _stable_int(text: str) -> int:
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:8], 16)


def group_split(
    groups: Sequence[str],
    seed: int,
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
    strata: Sequence[str] | None = None,
) -> list[str]:
    """The split (``train``/``valid``/``test``) of each item such that all items of a group
    (an artist, a work, a track) share one split.

    Within each stratum (e.g. a genre; all items when ``strata`` is ``None``) the groups are
    shuffled with a generator seeded by ``seed`` and the stratum's name, then each goes to the
    split that is least filled relative to its fraction, so the item counts approach the
    fractions and, with three groups or more, no split with a positive fraction is empty. The
    result depends only on the seed and on the set of (group, stratum, count) triples, not on
    the order of the items. A group is placed in the stratum of its first item.
    """
    if len(groups) == 0:
        return []
    stratum_of: dict[str, str] = {}
    size: Counter[str] = Counter()
    for i, g in enumerate(groups):
        size[g] += 1
        stratum_of.setdefault(g, strata[i] if strata is not None else "")
    by_stratum: dict[str, list[str]] = {}
    for g in sorted(size):
        by_stratum.setdefault(stratum_of[g], []).append(g)
    split_of: dict[str, str] = {}
    active = [s for s, f in zip(SPLITS, fractions, strict=True) if f > 0]
    frac = dict(zip(SPLITS, fractions, strict=True))
    for stratum, names in sorted(by_stratum.items()):
        rng = np.random.default_rng([seed, _stable_int(stratum)])
        filled = dict.fromkeys(SPLITS, 0)
        for k in rng.permutation(len(names)):
            g = names[int(k)]
            # ties go to the first split in train, valid, test order
            best = min(active, key=lambda s: filled[s] / frac[s])
            split_of[g] = best
            filled[best] += size[g]
    return [split_of[g] for g in groups]


def connected_groups(labels: Sequence[Iterable[str]]) -> list[str]:
    """One group name per item such that items sharing any label (e.g. any artist of a
    collaboration) share a group: the connected components of the item-label graph, named by
    their smallest label (items without labels form groups of their own)."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    item_labels = [sorted({str(v) for v in ls if str(v)}) for ls in labels]
    for ls in item_labels:
        for other in ls[1:]:
            a, b = find(ls[0]), find(other)
            if a != b:
                parent[max(a, b)] = min(a, b)
    return [find(ls[0]) if ls else f"#item{i}" for i, ls in enumerate(item_labels)]


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------


def write_events(path: Path, times: Iterable[float]) -> None:
    """Event times, one per line (``mir_eval.io.load_events``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{t:.6f}\n" for t in sorted(float(t) for t in times)))


def write_lab(path: Path, intervals: np.ndarray, labels: Sequence[str]) -> None:
    """Labelled intervals ``start<TAB>end<TAB>label`` (``load_labeled_intervals``), sorted by
    start; zero-length intervals are dropped (mir_eval refuses them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = sorted(
        (float(a), float(b), str(lab))
        for (a, b), lab in zip(
            np.asarray(intervals, dtype=float).reshape(-1, 2), labels, strict=True
        )
        if float(b) > float(a)
    )
    path.write_text("".join(f"{a:.6f}\t{b:.6f}\t{lab}\n" for a, b, lab in rows))


def safe_name(text: str) -> str:
    """A file name made of ``[A-Za-z0-9._-]`` for an annotation derived from ``text``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "item"


@dataclass
class Build:
    """One adapter run: the source, the corpus root, the skips, and the writing of manifests
    and of the provenance file ``<out>/datasets.json``.

    Use :meth:`start`, then :meth:`audio` / :meth:`annotation` / :meth:`skip` per item, then
    :meth:`write` per task and :meth:`finish`.
    """

    dataset: str
    source: Path
    out_root: Path
    seed: int
    tasks: tuple[str, ...]
    prefix: str = ""  # how manifests reach the source: "../source/<dataset>" or "" (absolute)
    skipped: Counter[str] = field(default_factory=Counter)
    skip_examples: dict[str, str] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @classmethod
    def start(
        cls, dataset: str, source: str | Path, out_root: str | Path, seed: int, tasks: Sequence[str]
    ) -> Build:
        """Check the source folder and the corpus root (a task manifest there must come from
        this dataset: two datasets in one root would overwrite each other's manifests)."""
        source = Path(source).expanduser()
        if not source.is_dir():
            raise UserError(f"--source {source} is not a folder; point it at your copy of the data")
        source = source.resolve()
        out_root = Path(out_root).expanduser().resolve()
        if out_root == source:
            raise UserError(
                f"--out {out_root} is the source folder; give the corpus root its own folder"
            )
        out_root.mkdir(parents=True, exist_ok=True)
        provenance = _read_provenance(out_root)
        for task in tasks:
            manifest = out_root / task / "manifest.csv"
            owner = provenance.get(task)
            if manifest.exists() and owner != dataset:
                made_by = f"the {owner} adapter" if owner else "something else (a corpus?)"
                raise UserError(
                    f"{manifest} already exists, made by {made_by}; write each dataset to its "
                    f"own corpus root, e.g. --out {out_root.parent / dataset}"
                )
        return cls(dataset, source, out_root, seed, tuple(tasks))

    # -- items -----------------------------------------------------------------------------

    def _link(self) -> str:
        """Link ``<out>/source/<dataset>`` to the source once; the manifests' path prefix."""
        if self.prefix:
            return self.prefix
        link = self.out_root / "source" / self.dataset
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink():
            if link.resolve() != self.source:
                link.unlink()  # our own link from an earlier build of another copy
        elif link.exists():
            raise UserError(
                f"{link} exists and is not a link to the source; remove it or choose another --out"
            )
        if not link.is_symlink():
            try:
                link.symlink_to(self.source, target_is_directory=True)
            except OSError:
                # no symlinks (Windows without the privilege): absolute paths, which load_task
                # accepts as the user's explicit choice
                self.prefix = "/"
                self.notes.append(f"could not link {link}; manifests hold absolute audio paths")
                return self.prefix
        self.prefix = f"../source/{self.dataset}"
        return self.prefix

    def audio(self, path: Path) -> str:
        """The manifest's ``audio`` value of a file inside the source."""
        prefix = self._link()
        if prefix == "/":
            return Path(os.path.abspath(path)).as_posix()
        # the path as found under the source, not resolved: a file reached through a link
        # inside the source stays addressed through the source
        return f"{prefix}/{Path(os.path.abspath(path)).relative_to(self.source).as_posix()}"

    def annotation(self, name: str) -> Path:
        """Where to write the converted annotation ``name``."""
        return self.out_root / "annotations" / self.dataset / name

    def rel(self, path: Path) -> str:
        """The manifest's value of a file written under the corpus root."""
        return f"../{path.relative_to(self.out_root).as_posix()}"

    def skip(self, reason: str, what: object) -> None:
        """Count an item that could not be used, keeping the first example of each reason."""
        self.skipped[reason] += 1
        self.skip_examples.setdefault(reason, str(what))

    def usable_audio(self, path: Path | None, what: object) -> bool:
        """Whether ``path`` is an audio file worth listing (present and not empty: several
        datasets ship a few 0-byte files); counts a skip otherwise."""
        if path is None or not path.is_file():
            self.skip("audio file not found", what)
            return False
        if path.stat().st_size == 0:
            self.skip("empty audio file (0 bytes)", path)
            return False
        # the frontend's cheap signature check: a failed download saved under an audio name
        # (an HTML page as .mp3) would otherwise only fail at feature extraction
        if _content_error(path) is not None:
            self.skip("not audio (wrong file signature)", path)
            return False
        # other formats: their header must parse (cheap); for mp3 the decoder resynchronises on
        # damage and may scan a whole VBR file for its length, so the signature must do
        if path.suffix.lower() != ".mp3":
            try:
                sf.info(str(path))
            except Exception:  # soundfile raises several types for damaged headers
                self.skip("unreadable audio header", path)
                return False
        return True

    # -- output ----------------------------------------------------------------------------

    def write(self, task: str, rows: list[dict[str, Any]], columns: Sequence[str]) -> Path:
        """Write ``<out>/<task>/manifest.csv`` (rows sorted by split, then audio)."""
        if not rows:
            raise UserError(
                f"{self.dataset}: no usable {task} examples in {self.source} "
                f"({self._skip_text() or 'nothing matched'})"
            )
        order = {s: i for i, s in enumerate(SPLITS)}
        rows = sorted(rows, key=lambda r: (order[r["split"]], str(r["audio"])))
        present = {r["split"] for r in rows}
        for needed in ("train", "test") if task != "pretrain" else ("train",):
            if needed not in present:
                self.notes.append(f"{task}: no {needed} rows (too few files?)")
        path = self.out_root / task / "manifest.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(columns), lineterminator="\n")
            writer.writeheader()
            for r in rows:
                writer.writerow({c: r.get(c, "") for c in columns})
        self.counts[task] = {s: sum(r["split"] == s for r in rows) for s in SPLITS}
        return path

    def _skip_text(self) -> str:
        return "; ".join(
            f"{n} skipped: {reason} (e.g. {self.skip_examples[reason]})"
            for reason, n in sorted(self.skipped.items())
        )

    def finish(self, split_rule: str, quiet: bool = False) -> Path:
        """Record the build in ``<out>/datasets.json``, print a summary, return the root."""
        path = self.out_root / PROVENANCE
        data = json.loads(path.read_text()) if path.is_file() else {}
        data.setdefault("datasets", {})[self.dataset] = {
            "source": str(self.source),
            "seed": self.seed,
            "tasks": list(self.tasks),
            "split_rule": split_rule,
            "counts": self.counts,
            "skipped": dict(sorted(self.skipped.items())),
            "skip_examples": dict(sorted(self.skip_examples.items())),
            "notes": self.notes,
        }
        path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        if not quiet:
            for task, c in self.counts.items():
                print(
                    f"{self.dataset}: {self.out_root / task / 'manifest.csv'}: "
                    + ", ".join(f"{c[s]} {s}" for s in SPLITS)
                )
            print(f"{self.dataset}: split: {split_rule}")
            for reason, n in sorted(self.skipped.items()):
                print(f"{self.dataset}: skipped {n}: {reason} (e.g. {self.skip_examples[reason]})")
            for note in self.notes:
                print(f"{self.dataset}: note: {note}")
        return self.out_root


def _read_provenance(out_root: Path) -> dict[str, str]:
    """Task name -> the dataset whose adapter wrote its manifest in ``out_root``."""
    path = out_root / PROVENANCE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except ValueError:
        return {}
    owners = {}
    for name, info in data.get("datasets", {}).items():
        for task in info.get("tasks", []):
            owners[task] = name
    return owners


def layout_error(title: str, source: Path, problem: str, layout: str) -> UserError:
    """The error for a source folder that does not look like the dataset."""
    return UserError(f"{source} does not look like {title}: {problem}. Expected: {layout}")
