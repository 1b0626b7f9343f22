"""MagnaTagATune (Law et al., ISMIR 2009): the tagging task, top-50 tags.

Source: https://mirg.city.ac.uk/codeapps/the-magnatagatune-dataset (``mp3.zip.001``-``003``,
concatenated and unzipped, and ``annotations_final.csv``). Layout::

    DIR/annotations_final.csv      tab-separated, quoted: clip_id, 188 tag columns, mp3_path
    DIR/0/ ... DIR/f/              the 25,863 clips, mp3_path = "<d>/<name>.mp3"

(the clip folders may also sit in ``DIR/mp3/``). The tag vocabulary is the 50 most frequent
tags over all clips (count ties broken by name). The split is the usual one by the first
character of the clip folder (Dieleman & Schrauwen 2014; Choi et al. 2016): folders ``0``-``b``
train (12), ``c`` valid (1), ``d``-``f`` test (3). Clips without any top-50 tag are kept (all
negatives), as in that split; the split is not artist-disjoint, which is the convention.
mirdata has no MagnaTagATune loader, so the CSV is parsed here.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

from vit1d.datasets._common import Build, find_file, find_root, layout_error

NAME = "mtat"
TITLE = "MagnaTagATune"
TASKS = ("tagging",)
ORIGIN = (
    "https://mirg.city.ac.uk/codeapps/the-magnatagatune-dataset "
    "(mp3.zip.001-003 unzipped, annotations_final.csv)"
)
LAYOUT = (
    "DIR/annotations_final.csv and the clip folders DIR/0 ... DIR/f (or DIR/mp3/0 ... f) "
    "that mp3.zip unpacks to"
)
N_TAGS = 50
#: First character of the clip folder -> split (12 / 1 / 3 folders).
FOLDER_SPLIT = {
    **dict.fromkeys("0123456789ab", "train"),
    "c": "valid",
    **dict.fromkeys("def", "test"),
}
SPLIT_RULE = "clip folders 0-b train, c valid, d-f test (the usual 12/1/3 split)"


def read_annotations(path: Path) -> tuple[list[str], list[tuple[str, str, list[str]]]]:
    """The tag names and ``(clip_id, mp3_path, tags)`` rows of ``annotations_final.csv``."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh, delimiter="\t")
        header = next(reader, [])
        if len(header) < 3 or header[0] != "clip_id" or header[-1] != "mp3_path":
            raise layout_error(
                TITLE,
                path.parent,
                f"{path.name} has no clip_id ... mp3_path header (found {header[:2]}...)",
                LAYOUT,
            )
        tags = header[1:-1]
        rows = []
        for line in reader:
            if len(line) != len(header):
                continue  # a truncated last line
            rows.append(
                (line[0], line[-1], [t for t, v in zip(tags, line[1:-1], strict=True) if v == "1"])
            )
    return tags, rows


def build(source: Path, out_root: Path, seed: int = 0, quiet: bool = False) -> Path:
    """Write ``<out_root>/tagging/manifest.csv`` from a MagnaTagATune copy; returns the root.
    ``seed`` is unused: the split is fixed by the clip folders."""
    b = Build.start(NAME, source, out_root, seed, TASKS)
    ann = find_file(b.source, "annotations_final.csv", depth=2)
    if ann is None:
        raise layout_error(TITLE, b.source, "no annotations_final.csv", LAYOUT)
    _, clips = read_annotations(ann)
    counts = Counter(t for _, _, tags in clips for t in tags)
    top = {t for t, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:N_TAGS]}
    root = find_root(b.source, [p for _, p, _ in clips if p])
    if root is None:
        raise layout_error(TITLE, b.source, "none of the clips of annotations_final.csv", LAYOUT)
    rows = []
    for clip_id, rel, tags in clips:
        split = FOLDER_SPLIT.get(rel[:1].lower()) if "/" in rel else None
        if split is None:
            b.skip("mp3_path not in a folder 0-f", rel or clip_id)
            continue
        path = root / rel
        if not b.usable_audio(path, rel):
            continue
        rows.append(
            {
                "audio": b.audio(path),
                "split": split,
                "tags": ";".join(sorted(set(tags) & top)),
                # the artist is the file name up to its first '-' (artist-album-track-...)
                "work": Path(rel).name.split("-")[0],
                "clip_id": clip_id,
            }
        )
    b.write("tagging", rows, ["audio", "split", "tags", "work", "clip_id"])
    b.notes.append(f"top-{N_TAGS} tags: {', '.join(sorted(top))}")
    return b.finish(SPLIT_RULE, quiet)
