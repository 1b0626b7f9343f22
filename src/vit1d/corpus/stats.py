"""Counts and label distributions of a built corpus: a table, CSV files and a figure.

:func:`write_stats` writes, under ``<root>/stats/``:

* ``counts.csv`` and ``counts.md``: examples per task and split, with hours of audio;
* ``labels.csv``: for every task and label value, its count per split (tags, keys,
  tempo classes, chord classes by seconds, pitches, instruments);
* ``label_distributions.png``: one panel per task, ready for the book's corpus page.

It also returns the tag vocabulary (tags with their train counts, most frequent first),
which ``corpus.json`` records. Used by :mod:`vit1d.corpus.build`.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path
from typing import Any

import mir_eval
import numpy as np

from vit1d.core import atomic
from vit1d.corpus import labels, tasks

SPLITS = ("train", "valid", "test")


def _atomic_write(path: Path, text: str) -> None:
    atomic.write_text(path, text, fsync=False)


def label_counts(root: Path, rows: dict[str, list[dict]]) -> list[tuple[str, str, str, float]]:
    """``(task, label, split, count)`` for every label value of every labelled task."""
    out: list[tuple[str, str, str, float]] = []

    def add(task: str, counter: dict[tuple[str, str], float]) -> None:
        for (lab, split), n in sorted(counter.items()):
            out.append((task, lab, split, round(float(n), 3)))

    c: Counter = Counter()
    for r in rows["tagging"]:
        for t in r["labels"]["tags"]:
            c[(t, r["split"])] += 1
    add("tagging", c)
    c = Counter((r["labels"]["key"], r["split"]) for r in rows["key"])
    add("key", c)
    c = Counter((labels.tempo_class(r["labels"]["bpm"]), r["split"]) for r in rows["tempo"])
    add("tempo", c)
    c = Counter()
    for r in rows["chords"]:
        iv, labs = mir_eval.io.load_labeled_intervals(str(root / r["annotations"]["chords"]))
        for (a, b), lab in zip(iv, labs, strict=True):
            c[(lab, r["split"])] += float(b - a)
    add("chords (seconds)", c)
    c = Counter((str(r["labels"]["pitch"]), r["split"]) for r in rows["pitch"])
    add("pitch", c)
    c = Counter((r["labels"]["instrument"], r["split"]) for r in rows["instrument"])
    add("instrument", c)
    return out


def write_stats(
    root: Path, records: list[dict[str, Any]], counts: dict[str, dict[str, int]], cfg: dict
) -> dict[str, Any]:
    """Write the tables and the figure; returns ``{"table": markdown, "tags": vocabulary}``."""
    rows = tasks.task_rows(records, cfg)
    hours = {t: sum(r["duration"] for r in rs) / 3600 for t, rs in rows.items()}
    works = {t: len({r["work"] for r in rs}) for t, rs in rows.items()}
    lines = [
        "| task | train | valid | test | works | hours |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    csv_lines = ["task,train,valid,test,works,hours\n"]
    for t in tasks.TASKS:
        c = counts[t]
        lines.append(
            f"| {t} | {c['train']} | {c['valid']} | {c['test']} | {works[t]} | {hours[t]:.2f} |"
        )
        csv_lines.append(f"{t},{c['train']},{c['valid']},{c['test']},{works[t]},{hours[t]:.3f}\n")
    table = "\n".join(lines)
    _atomic_write(root / "stats" / "counts.md", table + "\n")
    _atomic_write(root / "stats" / "counts.csv", "".join(csv_lines))

    lc = label_counts(root, rows)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["task", "label", "split", "count"])
    w.writerows(lc)
    _atomic_write(root / "stats" / "labels.csv", buf.getvalue())

    train_tags = Counter(
        t for r in rows["tagging"] if r["split"] == "train" for t in r["labels"]["tags"]
    )
    vocab = [
        {"tag": t, "train": n} for t, n in sorted(train_tags.items(), key=lambda x: (-x[1], x[0]))
    ]
    try:
        plot_distributions(root / "stats" / "label_distributions.png", rows, lc)
    except ImportError as exc:
        print(f'warning: label figure not written ({exc}): pip install "vit1d[corpus]"')
    except Exception as exc:  # a figure must never sink a build
        print(f"warning: label figure not written: {exc}")
    return {"table": table, "tags": vocab}


def plot_distributions(path: Path, rows: dict[str, list[dict]], lc: list[tuple]) -> None:
    """One panel per task: tag frequencies, keys, tempi, chord classes, pitches, instruments."""
    # a Figure without pyplot: no backend is chosen or switched (matplotlib.use would change
    # the backend of the whole process, e.g. a notebook's inline one)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(15, 8.5))
    axes = fig.subplots(2, 3)
    train = [x for x in lc if x[2] == "train"]

    def bars(ax, task: str, order: list[str] | None, title: str, horizontal: bool = False):
        d = {lab: n for t, lab, _s, n in train if t == task}
        keys = order if order is not None else sorted(d, key=lambda k: -d[k])
        vals = [d.get(k, 0) for k in keys]
        if horizontal:
            ax.barh(range(len(keys)), vals, color="tab:blue")
            ax.set_yticks(range(len(keys)), keys, fontsize=6)
            ax.invert_yaxis()
        else:
            ax.bar(range(len(keys)), vals, color="tab:blue")
            ax.set_xticks(range(len(keys)), keys, rotation=90, fontsize=6)
        ax.set_title(title, fontsize=10)

    bars(axes[0, 0], "tagging", None, "tagging: train positives per tag", horizontal=True)
    bars(axes[0, 1], "key", list(labels.KEYS), "key: train examples per class")
    ax = axes[0, 2]
    bpm = [r["labels"]["bpm"] for r in rows["tempo"] if r["split"] == "train"]
    if bpm:
        ax.hist(bpm, bins=np.geomspace(40, 240, 30), color="tab:blue")
        ax.set_xscale("log")
    ax.set_title("tempo: train BPM (log axis)", fontsize=10)
    ax.set_xlabel("BPM")
    bars(axes[1, 0], "chords (seconds)", list(labels.CHORDS), "chords: train seconds per class")
    ax = axes[1, 1]
    pitches = [r["labels"]["pitch"] for r in rows["pitch"] if r["split"] == "train"]
    if pitches:
        ax.hist(pitches, bins=np.arange(min(pitches), max(pitches) + 2) - 0.5, color="tab:blue")
    ax.set_title("pitch: train notes per MIDI number", fontsize=10)
    bars(axes[1, 2], "instrument", None, "instrument: train notes per instrument")
    fig.suptitle("Embedded corpus: label distributions (train split)")
    fig.tight_layout()
    with atomic.replacing(path, fsync=False) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
