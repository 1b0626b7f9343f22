"""FMA, the Free Music Archive dataset (Defferrard et al., ISMIR 2017): the pretraining pool.

Source: https://github.com/mdeff/fma (``fma_small.zip``, ``fma_medium.zip``, ``fma_large.zip``
or ``fma_full.zip``, and optionally ``fma_metadata.zip``). Layout::

    DIR/fma_large/000/000002.mp3 ...          (any of the audio archives, unpacked)
    DIR/fma_metadata/tracks.csv               (optional)

Every ``<6 digits>.mp3`` under ``DIR`` is a track. With ``tracks.csv`` the split is FMA's own
(``set.split``: training -> train, validation -> valid, test -> test; it keeps each artist in
one split) and ``work`` is the artist id, usable as ``data.group_by`` for hard negatives;
tracks it does not list are skipped. Without it, a seeded 95/5 train/valid split by track.
mirdata has no FMA loader (its ``fma_keys`` is another dataset), so ``tracks.csv`` is parsed here.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from vit1d.datasets._common import Build, find_file, group_split, layout_error, walk_files

NAME = "fma"
TITLE = "FMA (Free Music Archive)"
TASKS = ("pretrain",)
ORIGIN = "https://github.com/mdeff/fma (fma_small/medium/large/full.zip, fma_metadata.zip)"
LAYOUT = "DIR/fma_large/NNN/NNNNNN.mp3 (any FMA audio archive unpacked), optionally DIR/fma_metadata/tracks.csv"
TRACK = re.compile(r"^(\d{6})\.mp3$", re.IGNORECASE)
FMA_SPLIT = {"training": "train", "validation": "valid", "test": "test"}


def read_tracks(path: Path) -> dict[int, dict[str, str]]:
    """Track id -> ``split``, ``artist``, ``genre`` from ``tracks.csv``, whose two header rows
    name (group, field), e.g. (``set``, ``split``), (``artist``, ``id``)."""
    # artist bios are long quoted fields: raise csv's 128 kB field limit while reading
    old_limit = csv.field_size_limit(2**27)
    try:
        return _read_tracks(path)
    finally:
        csv.field_size_limit(old_limit)


def _read_tracks(path: Path) -> dict[int, dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        groups, fields = next(reader, []), next(reader, [])
        cols = {
            (g.strip(), f.strip()): i for i, (g, f) in enumerate(zip(groups, fields, strict=False))
        }
        want = {
            "split": cols.get(("set", "split")),
            "artist": cols.get(("artist", "id")),
            "genre": cols.get(("track", "genre_top")),
        }
        if want["split"] is None:
            raise layout_error(TITLE, path.parent, f"{path.name} has no set.split column", LAYOUT)
        tracks = {}
        for line in reader:
            if not line or not line[0].strip().isdigit():
                continue  # the third header row ("track_id")
            tracks[int(line[0])] = {
                k: (line[i].strip() if i is not None and i < len(line) else "")
                for k, i in want.items()
            }
    return tracks


def build(source: Path, out_root: Path, seed: int = 0, quiet: bool = False) -> Path:
    """Write ``<out_root>/pretrain/manifest.csv`` from an FMA copy; returns the root."""
    b = Build.start(NAME, source, out_root, seed, TASKS)
    files = {}
    for p in walk_files(b.source, (".mp3",), b.out_root):
        m = TRACK.match(p.name)
        if m:
            files.setdefault(int(m.group(1)), p)  # one copy when several archives overlap
    if not files:
        raise layout_error(TITLE, b.source, "no NNNNNN.mp3 tracks", LAYOUT)
    meta = find_file(b.source, "tracks.csv", depth=3)
    tracks = read_tracks(meta) if meta is not None else {}
    rows = []
    for track, path in sorted(files.items()):
        if not b.usable_audio(path, path.name):
            continue
        info = tracks.get(track)
        if tracks and info is None:
            b.skip("not in tracks.csv", path.name)
            continue
        split = FMA_SPLIT.get(info["split"], "") if info else ""
        if tracks and not split:
            b.skip("no split in tracks.csv", path.name)
            continue
        rows.append(
            {
                "audio": b.audio(path),
                "split": split,
                "work": f"artist:{info['artist']}" if info and info["artist"] else f"{track:06d}",
                "genre": info["genre"] if info else "",
            }
        )
    if tracks:
        rule = "FMA's split from tracks.csv (training/validation/test)"
    else:
        splits = group_split([r["work"] for r in rows], seed, (0.95, 0.05, 0.0))
        for r, s in zip(rows, splits, strict=True):
            r["split"] = s
        rule = f"seeded 95/5 train/valid by track (seed {seed}); no tracks.csv found"
    b.write("pretrain", rows, ["audio", "split", "work", "genre"])
    return b.finish(rule, quiet)
