"""GiantSteps Key (Knees et al., ISMIR 2015): the key task, 24 major/minor keys.

Sources (audio: the Beatport previews that each repository's ``audio_dl.sh`` fetches):

* https://github.com/GiantSteps/giantsteps-key-dataset: 604 tracks, ``annotations/key/
  <id>.LOFI.key`` (one line, ``Bb major``) and ``audio/<id>.LOFI.mp3``;
* optionally https://github.com/GiantSteps/giantsteps-mtg-key-dataset:
  ``annotations/annotations.txt`` (``ID<TAB>MANUAL KEY<TAB>C``) and ``audio/<id>.LOFI.mp3``;
* or the revised "GiantSteps Key+" that mirdata loads (Zenodo record 1095691): ``keys_gs+/
  <title>.txt``, ``meta/<title>.json`` (Beatport metadata, with the artists), ``audio/
  <title>.mp3``.

Point ``--source`` at a repository folder or at a folder holding both repositories. Splits:
with both repositories, the convention of the probing literature (Castellon et al. 2021):
GiantSteps Key is the test set, GiantSteps-MTG Key train and valid (a seeded 9:1 split by
track; only its single-key, confidence-2 annotations). With GiantSteps Key alone, a seeded
70/10/20 split by track (this release names no artists). With Key+, a seeded 70/10/20 split by
artist: tracks sharing any artist share a split. Key files are read with mirdata's
``giantsteps_key.load_key`` and the artists with ``load_artist``; the MTG table, which mirdata
does not cover, is parsed here. Labels that are not one major or minor key (``-``, ``C minor /
F# minor``, modal keys) are skipped and counted.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from vit1d.datasets._common import (
    Build,
    connected_groups,
    group_split,
    key_label,
    layout_error,
    mirdata_module,
)

NAME = "giantsteps_key"
TITLE = "GiantSteps Key"
TASKS = ("key",)
ORIGIN = (
    "https://github.com/GiantSteps/giantsteps-key-dataset (+ optional "
    "https://github.com/GiantSteps/giantsteps-mtg-key-dataset for training), audio via their "
    "audio_dl.sh; or GiantSteps Key+ https://zenodo.org/record/1095691"
)
LAYOUT = (
    "DIR/annotations/key/*.LOFI.key + DIR/audio/*.LOFI.mp3 (giantsteps-key-dataset), "
    "optionally beside giantsteps-mtg-key-dataset/ (annotations/annotations.txt + audio/); "
    "or DIR/keys_gs+/*.txt + DIR/meta/*.json + DIR/audio/*.mp3 (Key+)"
)
MTG_MIN_CONFIDENCE = 2  # the MTG table's C column: 2 = sure, 1 = likely, 0 = unsure
AUDIO_EXT = (".mp3", ".wav", ".flac")
COLUMNS = ["audio", "split", "key", "work", "collection"]


def _audio(folder: Path, stem: str) -> Path | None:
    for ext in AUDIO_EXT:
        if (folder / f"{stem}{ext}").is_file():
            return folder / f"{stem}{ext}"
    return None


def _candidates(source: Path) -> list[Path]:
    return [source] + sorted(p for p in source.iterdir() if p.is_dir())


def _gs_tracks(b: Build, repo: Path) -> list[dict[str, Any]]:
    """Rows (no split yet) of giantsteps-key-dataset, keys read with mirdata."""
    gk = mirdata_module("giantsteps_key")
    rows = []
    for ann in sorted((repo / "annotations" / "key").glob("*.key")):
        stem = ann.name[: -len(".key")]  # "<id>.LOFI"
        key = key_label(gk.load_key(str(ann)) or "")
        if key is None:
            b.skip("not a single major/minor key", ann.name)
            continue
        path = _audio(repo / "audio", stem)
        if not b.usable_audio(path, stem):
            continue
        rows.append({"audio": b.audio(path), "key": key, "work": stem.split(".")[0]})
    return rows


def _mtg_tracks(b: Build, repo: Path, exclude: set[str]) -> list[dict[str, Any]]:
    """Rows (no split yet) of giantsteps-mtg-key-dataset's single-key, sure annotations."""
    rows = []
    with open(repo / "annotations" / "annotations.txt", newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh, delimiter="\t")
        next(reader, None)  # ID, MANUAL KEY, C
        for line in reader:
            if len(line) < 3 or not line[0].strip():
                continue
            track, raw, conf = line[0].strip(), line[1], line[2].strip()
            if track.lstrip("0") in exclude:
                b.skip("MTG track also in the GiantSteps Key test set", track)
                continue
            if not conf.isdigit() or int(conf) < MTG_MIN_CONFIDENCE:
                b.skip(f"MTG key confidence below {MTG_MIN_CONFIDENCE}", track)
                continue
            key = key_label(raw)
            if key is None:
                b.skip("not a single major/minor key", f"{track}: {raw}")
                continue
            path = _audio(repo / "audio", f"{track}.LOFI")
            if not b.usable_audio(path, track):
                continue
            rows.append({"audio": b.audio(path), "key": key, "work": track})
    return rows


def _plus_tracks(b: Build, root: Path) -> list[dict[str, Any]]:
    """Rows of GiantSteps Key+ (mirdata's layout), with ``work`` = the artist group."""
    gk = mirdata_module("giantsteps_key")
    rows, artists = [], []
    for ann in sorted((root / "keys_gs+").glob("*.txt")):
        title = ann.stem
        key = key_label(gk.load_key(str(ann)) or "")
        if key is None:
            b.skip("not a single major/minor key", ann.name)
            continue
        path = _audio(root / "audio", title)
        if not b.usable_audio(path, title):
            continue
        meta = root / "meta" / f"{title}.json"
        try:
            names = gk.load_artist(str(meta)) if meta.is_file() else []
        except (ValueError, KeyError, TypeError):
            names = []
        rows.append({"audio": b.audio(path), "key": key, "collection": "giantsteps_key+"})
        artists.append(names or [title])  # no metadata: the track is its own group
    for row, group in zip(rows, connected_groups(artists), strict=True):
        row["work"] = group
    return rows


def build(source: Path, out_root: Path, seed: int = 0, quiet: bool = False) -> Path:
    """Write ``<out_root>/key/manifest.csv`` from a GiantSteps Key copy; returns the root."""
    b = Build.start(NAME, source, out_root, seed, TASKS)
    dirs = _candidates(b.source)
    gs = next((d for d in dirs if (d / "annotations" / "key").is_dir()), None)
    mtg = next((d for d in dirs if (d / "annotations" / "annotations.txt").is_file()), None)
    plus = next((d for d in dirs if (d / "keys_gs+").is_dir()), None)
    if gs is not None:
        test = _gs_tracks(b, gs)
        for r in test:
            r["collection"] = "giantsteps_key"
        if mtg is not None:
            train = _mtg_tracks(b, mtg, {r["work"].lstrip("0") for r in test})
            splits = group_split([r["work"] for r in train], seed, (0.9, 0.1, 0.0))
            for r, s in zip(train, splits, strict=True):
                r["split"], r["collection"] = s, "giantsteps_mtg_key"
            for r in test:
                r["split"] = "test"
            rows = train + test
            rule = (
                "GiantSteps Key = test; GiantSteps-MTG Key = train/valid "
                f"(seeded 90/10 by track, seed {seed})"
            )
        else:
            rows = test
            for r, s in zip(rows, group_split([r["work"] for r in rows], seed), strict=True):
                r["split"] = s
            rule = f"seeded 70/10/20 by track (seed {seed}); no artist metadata in this release"
            b.notes.append(
                "put giantsteps-mtg-key-dataset beside giantsteps-key-dataset for the usual "
                "split: MTG for training, GiantSteps Key for testing"
            )
    elif plus is not None:
        rows = _plus_tracks(b, plus)
        for r, s in zip(rows, group_split([r["work"] for r in rows], seed), strict=True):
            r["split"] = s
        rule = f"seeded 70/10/20 by artist (seed {seed}): no artist in two splits"
    else:
        raise layout_error(TITLE, b.source, "no annotations/key/ nor keys_gs+/ folder", LAYOUT)
    b.write("key", rows, COLUMNS)
    return b.finish(rule, quiet)
