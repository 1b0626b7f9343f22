"""Schubert Winterreise Dataset (SWD; Weiß et al., ACM JOCCH 2021): the chords task.

Source: https://zenodo.org/record/3968389 (the record its README names; SWD v2.0).
Layout of the unpacked ``Schubert_Winterreise_Dataset_v2-0``::

    DIR/01_RawData/audio_wav/Schubert_D911-01_HU33.wav ...      (song 01-24, performance)
    DIR/02_Annotations/ann_audio_chord/Schubert_D911-01_HU33.csv ...

Only the performances HU33 and SC06 are published with audio; the annotations cover nine. Audio
of the others, named the same way anywhere under ``DIR``, is used when present. The chord CSVs
(semicolon-separated, quoted text, header ``start;end;shorthand;extended;majmin;majmin_inv``)
are parsed here (mirdata 1.0 has no SWD loader): the ``shorthand`` label (Harte syntax), or the
``extended`` / ``majmin`` label where mir_eval cannot parse the shorthand, rewritten as ``.lab``.
The local-key CSVs (``ann_audio_localkey-ann*``) are not needed for the chords task. Split: the
SWD song split, songs 1-13 train, 14-16 valid, 17-24 test, so the performances of one song are
in one split.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np

from vit1d.datasets._common import (
    AUDIO_SUFFIXES,
    Build,
    chord_label_ok,
    find_dirs,
    layout_error,
    walk_files,
    write_lab,
)

NAME = "winterreise"
TITLE = "the Schubert Winterreise Dataset"
TASKS = ("chords",)
ORIGIN = "https://zenodo.org/record/3968389 (Schubert_Winterreise_Dataset_v2-0.zip unpacked)"
LAYOUT = (
    "DIR/02_Annotations/ann_audio_chord/Schubert_D911-NN_PERF.csv and "
    "DIR/01_RawData/audio_wav/Schubert_D911-NN_PERF.wav"
)
NAME_RE = re.compile(r"^Schubert_D911-(\d{2})_([A-Za-z0-9]+)$")


def song_split(song: int) -> str:
    """The SWD song split: songs 1-13 train, 14-16 valid, 17-24 test."""
    return "train" if song <= 13 else "valid" if song <= 16 else "test"


def read_chords(path: Path) -> tuple[np.ndarray, list[str]]:
    """Intervals and Harte labels of an SWD ``ann_audio_chord`` CSV; raises ValueError."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh, delimiter=";", quotechar='"')
        names = [n.strip() for n in reader.fieldnames or []]
        if not {"start", "end"} <= set(names) or not {"shorthand", "majmin"} & set(names):
            raise ValueError(f"header {names} has no start;end;shorthand;...;majmin columns")
        intervals, labels = [], []
        for row in reader:
            row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
            # the first label mir_eval parses: the full chord, else its simpler spellings
            options = [row.get(c, "") for c in ("shorthand", "extended", "majmin")]
            label = next((o for o in options if o and chord_label_ok(o)), None)
            if label is None:
                raise ValueError(f"no parseable chord label in {options}")
            intervals.append((float(row["start"]), float(row["end"])))
            labels.append(label)
    return np.asarray(intervals, dtype=float).reshape(-1, 2), labels


def build(source: Path, out_root: Path, seed: int = 0, quiet: bool = False) -> Path:
    """Write ``<out_root>/chords/manifest.csv`` (+ ``.lab`` files) from an SWD copy; returns the
    root. ``seed`` is unused: the split is the song split."""
    b = Build.start(NAME, source, out_root, seed, TASKS)
    # the main annotations (02_Annotations/), not a variant under 03_ExtraMaterial/
    ann_dirs = sorted(
        find_dirs(b.source, "ann_audio_chord", depth=4),
        key=lambda d: (d.parent.name != "02_Annotations", str(d)),
    )
    if not ann_dirs:
        raise layout_error(TITLE, b.source, "no 02_Annotations/ann_audio_chord folder", LAYOUT)
    audio = {
        p.stem: p
        for p in walk_files(b.source, AUDIO_SUFFIXES, b.out_root)
        if NAME_RE.match(p.stem) and "ExtraMaterial" not in p.as_posix()
    }
    rows = []
    for ann in sorted(ann_dirs[0].glob("*.csv")):
        m = NAME_RE.match(ann.stem)
        if not m:
            b.skip("not a Schubert_D911-NN_PERF.csv file", ann.name)
            continue
        song, performance = int(m.group(1)), m.group(2)
        if not 1 <= song <= 24:
            b.skip("song number not in 1-24", ann.name)
            continue
        path = audio.get(ann.stem)
        if path is None:
            b.skip("no audio for this performance (only HU33 and SC06 are public)", ann.stem)
            continue
        if not b.usable_audio(path, ann.stem):
            continue
        try:
            intervals, labels = read_chords(ann)
        except (ValueError, KeyError) as exc:
            b.skip("unreadable chord file", f"{ann.name} ({exc})")
            continue
        out = b.annotation(f"{ann.stem}.lab")
        write_lab(out, intervals, labels)
        rows.append(
            {
                "audio": b.audio(path),
                "split": song_split(song),
                "annotation": b.rel(out),
                "work": f"D911-{song:02d}",
                "performance": performance,
            }
        )
    b.write("chords", rows, ["audio", "split", "annotation", "work", "performance"])
    return b.finish("SWD song split: songs 1-13 train, 14-16 valid, 17-24 test", quiet)
