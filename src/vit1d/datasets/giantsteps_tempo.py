"""GiantSteps Tempo (Knees et al., ISMIR 2015; v2 annotations: Schreiber & Müller, ISMIR 2018):
the tempo task.

Source: https://github.com/GiantSteps/giantsteps-tempo-dataset, audio (664 Beatport previews)
fetched with its ``audio_dl.sh``. Layout::

    DIR/audio/<id>.LOFI.mp3
    DIR/annotations_v2/jams/<id>.LOFI.jams   crowdsourced tempi (v2), several per track
    DIR/annotations/jams/<id>.LOFI.jams      the original Beatport-forum tempi (v1)
    DIR/splits/fold01.txt ... fold10.txt     the repository's 10 folds (file names)

mirdata's layout (``GiantSteps_tempo/audio/`` beside ``giantsteps-tempo-dataset-<commit>/``)
works too. The label is the v2 tempo with the highest confidence (the most-voted one) when
``annotations_v2/jams`` exists, else the v1 tempo; tracks without a tempo (three in v2) are
skipped. The JAMS files are read with mirdata's ``giantsteps_tempo.load_tempo``. Split: the
repository's folds, 1-8 train, 9 valid, 10 test; without ``splits/``, a seeded 70/10/20 split
by track (the release names no artists).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vit1d.datasets._common import (
    Build,
    find_dirs,
    group_split,
    layout_error,
    mirdata_module,
    walk_files,
)

NAME = "giantsteps_tempo"
TITLE = "GiantSteps Tempo"
TASKS = ("tempo",)
ORIGIN = (
    "https://github.com/GiantSteps/giantsteps-tempo-dataset (annotations, splits), audio via "
    "its audio_dl.sh"
)
LAYOUT = (
    "DIR/annotations_v2/jams/*.LOFI.jams and/or DIR/annotations/jams/*.LOFI.jams, "
    "DIR/audio/*.LOFI.mp3, optionally DIR/splits/fold01.txt ... fold10.txt"
)
#: Fold number -> split.
FOLD_SPLIT = {**dict.fromkeys(range(1, 9), "train"), 9: "valid", 10: "test"}
COLUMNS = ["audio", "split", "bpm", "work", "annotations"]


def _jams_dir(source: Path) -> tuple[Path, str] | None:
    """The JAMS folder to read and its version, v2 preferred."""
    for version, parent in (("v2", "annotations_v2"), ("v1", "annotations")):
        for jams in find_dirs(source, "jams", depth=3):
            if jams.parent.name == parent:
                return jams, version
    return None


def _folds(repo: Path) -> dict[str, int]:
    """Track stem (``<id>.LOFI``) -> fold number, from ``splits/foldNN.txt``."""
    folds = {}
    for path in sorted((repo / "splits").glob("fold*.txt")):
        digits = path.stem[len("fold") :]
        if not digits.isdigit():
            continue
        for line in path.read_text().split():
            folds[Path(line.strip()).name.split(".mp3")[0]] = int(digits)
    return folds


def build(source: Path, out_root: Path, seed: int = 0, quiet: bool = False) -> Path:
    """Write ``<out_root>/tempo/manifest.csv`` from a GiantSteps Tempo copy; returns the root."""
    b = Build.start(NAME, source, out_root, seed, TASKS)
    found = _jams_dir(b.source)
    if found is None:
        raise layout_error(TITLE, b.source, "no annotations_v2/jams nor annotations/jams", LAYOUT)
    jams_dir, version = found
    repo = jams_dir.parent.parent
    gt = mirdata_module("giantsteps_tempo")
    audio = {
        p.name.split(".")[0]: p
        for p in walk_files(b.source, (".mp3", ".wav", ".flac"), exclude=b.out_root)
        if ".LOFI." in p.name
    }
    folds = _folds(repo)
    rows: list[dict[str, Any]] = []
    for ann in sorted(jams_dir.glob("*.jams")):
        track = ann.name.split(".")[0]
        try:
            data = gt.load_tempo(str(ann))
            values = np.asarray(data.tempos, dtype=float)
            conf = np.asarray(data.confidence, dtype=float)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            values, conf = np.zeros(0), np.zeros(0)  # malformed JAMS or no tempo data
        if values.size == 0 or not np.all(np.isfinite(values)):
            b.skip(f"no {version} tempo", ann.name)
            continue
        bpm = float(values[int(np.argmax(conf))] if conf.size == values.size else values[0])
        if bpm <= 0:
            b.skip(f"no {version} tempo", ann.name)  # the 0.0 tempi of the README's list
            continue
        path = audio.get(track)
        if not b.usable_audio(path, f"{track}.LOFI.mp3"):
            continue
        rows.append(
            {"audio": b.audio(path), "bpm": f"{bpm:g}", "work": track, "annotations": version}
        )
    if folds:
        kept = []
        for r in rows:
            fold = folds.get(f"{r['work']}.LOFI")
            if fold not in FOLD_SPLIT:
                b.skip("not in any splits/fold file", r["work"])
                continue
            r["split"] = FOLD_SPLIT[fold]
            kept.append(r)
        rows = kept
        rule = "the repository's folds: 1-8 train, 9 valid, 10 test"
    else:
        for r, s in zip(rows, group_split([r["work"] for r in rows], seed), strict=True):
            r["split"] = s
        rule = f"seeded 70/10/20 by track (seed {seed}); no splits/ folder found"
    b.notes.append(f"tempo annotations: {version} ({jams_dir})")
    b.write("tempo", rows, COLUMNS)
    return b.finish(rule, quiet)
