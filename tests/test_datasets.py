"""Real-dataset adapters: each adapter runs on a tiny copy of its dataset made here,
in the dataset's real folder layout and file formats (short audio written with soundfile,
annotation files in their published syntax), and must write a manifest that
:func:`vit1d.probing.tasks.load_task` accepts, with the labels of the fixture, the dataset's split, and
relative audio paths that resolve to the original files. A folder of the wrong shape must be
refused with the expected layout in the message."""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from pathlib import Path

import mir_eval
import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from vit1d.cli import main
from vit1d.core.errors import UserError
from vit1d.datasets import ADAPTERS, adapter
from vit1d.datasets._common import connected_groups, group_split, key_label, mirdata_module
from vit1d.pretrain.data import read_manifest
from vit1d.probing.tasks import load_task

SR = 16_000

#: Adapters that parse with mirdata (the optional ``datasets`` extra) are tested only with it.
needs_mirdata = pytest.mark.skipif(
    importlib.util.find_spec("mirdata") is None,
    reason="mirdata not installed (pip install 'vit1d[datasets]')",
)


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


def audio(path: Path, seconds: float = 0.2) -> Path:
    """A short, quiet noise file in the format its suffix names (wav, flac, mp3, au)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    y = 0.01 * np.random.default_rng(len(str(path))).standard_normal(int(seconds * SR))
    sf.write(path, y.astype(np.float32), SR)
    return path


def text(path: Path, content: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content, encoding="utf-8")
    return path


def rows_of(manifest: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(manifest, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
    return list(reader.fieldnames or []), rows


def check_manifest(
    root: Path, task: str, dataset: str, source: Path, columns: list[str]
) -> list[dict[str, str]]:
    """The manifest's rows, after the checks every adapter must pass."""
    manifest = root / task / "manifest.csv"
    header, rows = rows_of(manifest)
    assert header[: len(columns)] == columns
    assert rows and {r["split"] for r in rows} <= {"train", "valid", "test"}
    for r in rows:
        # relative, through the link to the source, and resolving to the user's file
        assert r["audio"].startswith(f"../source/{dataset}/"), r["audio"]
        resolved = (manifest.parent / r["audio"]).resolve()
        assert resolved.is_file() and resolved.is_relative_to(source.resolve())
        if "annotation" in r:
            assert not Path(r["annotation"]).is_absolute()
            assert (manifest.parent / r["annotation"]).resolve().is_file()
    if task != "pretrain":
        loaded = load_task(manifest)
        assert len(loaded.examples) == len(rows)
    return rows


def provenance(root: Path, dataset: str) -> dict:
    return json.loads((root / "datasets.json").read_text())["datasets"][dataset]


def by_name(rows: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    return {Path(r["audio"]).name: r for r in rows}


# ----------------------------------------------------------------------------------------------
# Shared pieces
# ----------------------------------------------------------------------------------------------


def test_key_label_spells_keys_as_the_probe_does() -> None:
    assert key_label("Bb major") == "Bb major"
    assert key_label("A# major") == "Bb major"  # one class per key, whatever the spelling
    assert key_label("d# minor") == "Eb minor"
    assert key_label("E:min") == "E minor"
    assert key_label("C maj") == "C major"
    for bad in ("-", "C minor / F# minor", "A-A# minor", "G dorian", "", "H major"):
        assert key_label(bad) is None
    for s in ("C# minor", "F# major", "Ab minor"):
        mir_eval.key.validate_key(key_label(s))


def test_group_split_keeps_groups_together_and_is_seeded() -> None:
    groups = [f"artist{i % 40}" for i in range(400)]
    a = group_split(groups, seed=3)
    assert a == group_split(groups, seed=3)
    assert a != group_split(groups, seed=4)
    for g in set(groups):
        assert len({s for s, h in zip(a, groups, strict=True) if h == g}) == 1
    share = {s: a.count(s) / len(a) for s in ("train", "valid", "test")}
    assert abs(share["train"] - 0.7) < 0.06 and abs(share["test"] - 0.2) < 0.06
    # the order of the items does not matter
    assert group_split(groups[::-1], seed=3) == a[::-1]
    # three groups fill the three splits; strata are split on their own
    assert sorted(group_split(["a", "b", "c"], seed=0)) == ["test", "train", "valid"]
    strat = group_split(list("abcdefgh"), 0, strata=list("xxxxyyyy"))
    assert sorted(strat[:4]) == sorted(strat[4:]) == ["test", "train", "train", "valid"]


def test_connected_groups_join_collaborations() -> None:
    groups = connected_groups([["A"], ["B", "A"], ["C"], ["B"], []])
    assert groups[0] == groups[1] == groups[3] != groups[2]
    assert groups[4] not in groups[:4]


def test_missing_mirdata_is_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mirdata.datasets.ballroom", None)
    with pytest.raises(UserError, match="pip install"):
        mirdata_module("ballroom")


# ----------------------------------------------------------------------------------------------
# MagnaTagATune
# ----------------------------------------------------------------------------------------------


def make_mtat(src: Path) -> dict[str, list[str]]:
    """annotations_final.csv (tab-separated, quoted) and clips in folders 0-f; 50 tags on two
    clips each, two rare tags on one clip, a clip without audio and an empty one."""
    common = ["no voice", "guitar", "classical"] + [f"tag{i:02d}" for i in range(47)]
    tags = common + ["rare one", "rare two"]
    folders = ["0", "5", "b", "b", "c", "d", "e", "f"]
    clips = [f"{d}/artist{k}-album-{k:02d}-song-30-59.mp3" for k, d in enumerate(folders)]
    clips += ["3/ghost-album-01-missing-0-29.mp3", "9/jacob-album-19-empty-204-233.mp3"]
    want: dict[str, list[str]] = {}
    lines = ["\t".join(f'"{h}"' for h in ["clip_id", *tags, "mp3_path"])]
    for k, rel in enumerate(clips):
        on = {t for i, t in enumerate(common) if i % 4 == k % 4}
        if k == 0:
            on |= {"rare one", "rare two"}
        want[rel] = sorted(on & set(common))
        values = ["1" if t in on else "0" for t in tags]
        lines.append("\t".join(f'"{v}"' for v in [str(k + 2), *values, rel]))
        if k < len(folders):
            audio(src / rel)
    (src / "9").mkdir(parents=True, exist_ok=True)
    (src / clips[-1]).write_bytes(b"")  # MTAT ships a few 0-byte mp3s
    text(src / "annotations_final.csv", "\n".join(lines) + "\n")
    return want


def test_mtat(tmp_path: Path) -> None:
    src, out = tmp_path / "magnatagatune", tmp_path / "corpus"
    want = make_mtat(src)
    adapter("mtat").build(src, out, quiet=True)
    rows = check_manifest(out, "tagging", "mtat", src, ["audio", "split", "tags", "work"])
    assert len(rows) == 8
    for r in rows:
        rel = r["audio"].split("/source/mtat/")[1]
        assert r["tags"].split(";") == want[rel]  # rare tags are outside the top 50
        assert r["split"] == {"0": "train", "5": "train", "b": "train", "c": "valid"}.get(
            rel[0], "test"
        )
        assert r["work"] == Path(rel).name.split("-")[0]
    task = load_task(out / "tagging" / "manifest.csv")
    assert len(task.classes) == 50 and "no voice" in task.classes
    assert "rare one" not in task.classes
    skipped = provenance(out, "mtat")["skipped"]
    assert skipped == {"audio file not found": 1, "empty audio file (0 bytes)": 1}


# ----------------------------------------------------------------------------------------------
# GiantSteps key
# ----------------------------------------------------------------------------------------------


def make_giantsteps_key(src: Path, with_mtg: bool = True) -> None:
    gs = src / "giantsteps-key-dataset"
    for track, key in [("1234749", "Bb major"), ("877345", "D# minor"), ("945256", "G minor")]:
        text(gs / "annotations" / "key" / f"{track}.LOFI.key", key)
        audio(gs / "audio" / f"{track}.LOFI.mp3")
    text(gs / "annotations" / "key" / "981591.LOFI.key", "E minor")  # audio not fetched
    if not with_mtg:
        return
    mtg = src / "giantsteps-mtg-key-dataset"
    table = [
        ("5061", "D# minor", "2"),
        ("5881", "A major", "2"),
        ("7217", "F minor", "2"),
        ("10359", "D minor", "2"),
        ("11077", "G minor", "2"),
        ("37779", "A# major", "2"),
        ("10981", "-", "0"),
        ("16484", "A minor", "1"),
        ("61578", "C minor / F# minor", "2"),
    ]
    text(
        mtg / "annotations" / "annotations.txt",
        "ID\tMANUAL KEY\tC\n" + "".join(f"{t}\t{k}\t{c}\n" for t, k, c in table),
    )
    for t, _, _ in table:
        audio(mtg / "audio" / f"{t}.LOFI.mp3")
    # a failed preview download: Beatport's error page saved under the mp3's name
    text(
        mtg / "annotations" / "annotations.txt",
        (mtg / "annotations" / "annotations.txt").read_text() + "14344\tD minor\t2\n",
    )
    text(mtg / "audio" / "14344.LOFI.mp3", "<!DOCTYPE html><html>Not found</html>")


@needs_mirdata
def test_giantsteps_key_mtg_train_giantsteps_test(tmp_path: Path) -> None:
    src, out = tmp_path / "giantsteps", tmp_path / "corpus"
    make_giantsteps_key(src)
    adapter("giantsteps_key").build(src, out, seed=1, quiet=True)
    rows = check_manifest(out, "key", "giantsteps_key", src, ["audio", "split", "key", "work"])
    got = by_name(rows)
    assert {n for n, r in got.items() if r["split"] == "test"} == {
        "1234749.LOFI.mp3",
        "877345.LOFI.mp3",
        "945256.LOFI.mp3",
    }
    assert got["877345.LOFI.mp3"]["key"] == "Eb minor"
    assert got["37779.LOFI.mp3"]["key"] == "Bb major"  # A# major, spelled as the probe does
    assert {r["split"] for r in rows if r["collection"] == "giantsteps_mtg_key"} == {
        "train",
        "valid",
    }
    assert "10981.LOFI.mp3" not in got and "61578.LOFI.mp3" not in got
    skipped = provenance(out, "giantsteps_key")["skipped"]
    assert skipped["MTG key confidence below 2"] == 2
    assert skipped["not a single major/minor key"] == 1
    assert skipped["audio file not found"] == 1
    assert skipped["not audio (wrong file signature)"] == 1


@needs_mirdata
def test_giantsteps_key_alone_and_key_plus(tmp_path: Path) -> None:
    src = tmp_path / "gs_only"
    make_giantsteps_key(src, with_mtg=False)
    adapter("giantsteps_key").build(src / "giantsteps-key-dataset", tmp_path / "a", quiet=True)
    rows = check_manifest(tmp_path / "a", "key", "giantsteps_key", src, ["audio", "split", "key"])
    assert sorted(r["split"] for r in rows) == ["test", "train", "valid"]

    # GiantSteps Key+ (mirdata's layout): artists from the Beatport metadata
    plus = tmp_path / "GiantSteps_key"
    tracks = [
        ("10089 Jason Sparks - Close My Eyes (Original Mix)", "D major", ["Jason Sparks"]),
        ("10090 Jason Sparks - Other (Original Mix)", "A minor", ["Jason Sparks", "J. Little"]),
        ("10091 J. Little - Third (Original Mix)", "F# minor", ["J. Little"]),
        ("20001 Someone - A (Original Mix)", "C major", ["Someone"]),
        ("20002 Else - B (Original Mix)", "E minor", ["Else"]),
        ("20003 Third - C (Original Mix)", "G major", ["Third"]),
    ]
    for title, key, artists in tracks:
        text(plus / "keys_gs+" / f"{title}.txt", key + "\n")
        meta = {"artists": [{"name": a, "id": i} for i, a in enumerate(artists)], "bpm": 128}
        text(plus / "meta" / f"{title}.json", json.dumps(meta))
        audio(plus / "audio" / f"{title}.mp3")
    adapter("giantsteps_key").build(plus, tmp_path / "b", seed=2, quiet=True)
    rows = check_manifest(tmp_path / "b", "key", "giantsteps_key", plus, ["audio", "split", "key"])
    got = by_name(rows)
    sparks = {
        got[f"{t}.mp3"]["split"] for t, _, a in tracks if {"Jason Sparks", "J. Little"} & set(a)
    }
    assert len(sparks) == 1  # a collaboration ties both artists' tracks to one split
    assert got[f"{tracks[2][0]}.mp3"]["key"] == "F# minor"


# ----------------------------------------------------------------------------------------------
# GiantSteps tempo
# ----------------------------------------------------------------------------------------------


def tempo_jams(values: list[tuple[float, float]], version: str) -> str:
    data = [{"time": 0.0, "duration": 120.0, "value": v, "confidence": c} for v, c in values]
    return json.dumps(
        {
            "annotations": [
                {
                    "annotation_metadata": {"version": version, "corpus": "GiantSteps Tempo"},
                    "namespace": "tempo",
                    "data": data,
                    "sandbox": {},
                    "time": 0,
                    "duration": None,
                },
                {
                    "namespace": "tag_open",
                    "data": [
                        {"time": 0.0, "duration": 120.0, "value": "techno", "confidence": 1.0}
                    ],
                },
            ],
            "file_metadata": {"title": "x.LOFI", "duration": 120, "jams_version": "0.2.0"},
            "sandbox": {},
        },
        indent=2,
    )


@needs_mirdata
def test_giantsteps_tempo(tmp_path: Path) -> None:
    repo, out = tmp_path / "giantsteps-tempo-dataset", tmp_path / "corpus"
    tracks = [str(100000 + i) for i in range(11)]
    for fold, track in enumerate(tracks[:10], start=1):
        text(repo / "splits" / f"fold{fold:02d}.txt", f"{track}.LOFI.mp3\n")
    for i, track in enumerate(tracks):
        audio(repo / "audio" / f"{track}.LOFI.mp3")
        text(
            repo / "annotations" / "jams" / f"{track}.LOFI.jams",
            tempo_jams([(60.0 + i, 1.0)], "1.0"),
        )
        v2 = [(70.0 + i, 0.3), (140.0 + 2 * i, 0.7)] if i != 3 else []  # no v2 tempo
        text(repo / "annotations_v2" / "jams" / f"{track}.LOFI.jams", tempo_jams(v2, "2.0"))
    adapter("giantsteps_tempo").build(repo, out, quiet=True)
    rows = check_manifest(out, "tempo", "giantsteps_tempo", repo, ["audio", "split", "bpm", "work"])
    got = {r["work"]: r for r in rows}
    assert set(got) == set(tracks[:10]) - {tracks[3]}
    for i, track in enumerate(tracks[:10]):
        if i == 3:
            continue
        assert float(got[track]["bpm"]) == 140.0 + 2 * i  # the crowd's majority tempo
        assert got[track]["split"] == ("train" if i < 8 else "valid" if i == 8 else "test")
    skipped = provenance(out, "giantsteps_tempo")["skipped"]
    assert skipped == {"no v2 tempo": 1, "not in any splits/fold file": 1}


# ----------------------------------------------------------------------------------------------
# TinySOL
# ----------------------------------------------------------------------------------------------


def test_tinysol(tmp_path: Path) -> None:
    src, out = tmp_path / "tinysol", tmp_path / "corpus"
    header = (
        "Path,Fold,Family,Instrument (abbr.),Instrument (in full),Technique (abbr.),"
        "Technique (in full),Pitch,Pitch ID,Dynamics,Dynamics ID,Resampled,String ID\n"
    )
    items = [
        ("Winds/Flute/ordinario/Fl-ord-C4-mf-N.wav", 0, "Winds", "Fl", "Flute", "C4", 60),
        ("Winds/Flute/ordinario/Fl-ord-D4-pp-N.wav", 3, "Winds", "Fl", "Flute", "D4", 62),
        (
            "Strings/Violoncello/ordinario/Vc-ord-A2-mf-3c-N.wav",
            1,
            "Strings",
            "Vc",
            "Violoncello",
            "A2",
            45,
        ),
        (
            "Strings/Contrabass/ordinario/Cb-ord-A2-mf-3cR.wav",
            4,
            "Strings",
            "Cb",
            "Contrabass",
            "A2",
            45,
        ),
        ("Brass/Bass_Tuba/ordinario/BTb-ord-F1-ff-N.wav", 2, "Brass", "BTb", "Bass Tuba", "F1", 29),
        (
            "Winds/Clarinet_in_Bb/ordinario/ClBb-ord-E3-ff-N.wav",
            4,
            "Winds",
            "ClBb",
            "Clarinet in Bb",
            "E3",
            52,
        ),
        ("Winds/Oboe/ordinario/Ob-ord-C5-mf-N.wav", 2, "Winds", "Ob", "Oboe", "C5", 72),
    ]
    lines = [header]
    for path, fold, fam, abbr, full, pitch, pid in items:
        lines.append(f"{path},{fold},{fam},{abbr},{full},ord,ordinario,{pitch},{pid},mf,2,False,\n")
        audio(src / "TinySOL" / path)  # the tarball unpacks to TinySOL/<family>/...
    lines.append(
        "Winds/Oboe/ordinario/Ob-ord-D5-mf-N.wav,1,Winds,Ob,Oboe,ord,ordinario,D5,74,mf,2,False,\n"
    )
    text(src / "TinySOL_metadata.csv", "".join(lines))
    adapter("tinysol").build(src, out, quiet=True)
    pitch = check_manifest(out, "pitch", "tinysol", src, ["audio", "split", "pitch", "instrument"])
    instr = check_manifest(out, "instrument", "tinysol", src, ["audio", "split", "instrument"])
    fold_split = {0: "train", 1: "train", 2: "train", 3: "valid", 4: "test"}
    names = {
        "Fl": "flute",
        "Vc": "cello",
        "Cb": "contrabass",
        "BTb": "tuba",
        "ClBb": "clarinet",
        "Ob": "oboe",
    }
    got_p, got_i = by_name(pitch), by_name(instr)
    for path, fold, _, abbr, _, _, pid in items:
        name = Path(path).name
        assert got_p[name]["pitch"] == str(pid) and got_p[name]["split"] == fold_split[fold]
        assert got_i[name]["instrument"] == names[abbr]
    assert provenance(out, "tinysol")["skipped"] == {"audio file not found": 1}
    # the classes are those of the training folds (E3 = 52 is only in the test fold)
    assert load_task(out / "pitch" / "manifest.csv").classes == [29, 45, 60, 72]

    # the probing suite runs unchanged on the adapter's manifests (log-mel baseline here)
    from vit1d.cli import main

    results = tmp_path / "results"
    probe = ["probe", "--logmel", "--data", str(out), "--tasks", "pitch,instrument"]
    probe += ["--out", str(results), "--seeds", "0,1", "--max-epochs", "2"]
    probe += ["--steps-per-epoch", "4", "--n-boot", "20", "--no-progress"]
    assert main(probe) == 0
    summary = pd.read_csv(results / "probes_summary.csv")
    assert set(summary["task"]) == {"pitch", "instrument"}
    assert set(summary["corpus"]) == {"corpus"} and summary["mean"].notna().all()


# ----------------------------------------------------------------------------------------------
# RWC Popular (chords)
# ----------------------------------------------------------------------------------------------


@needs_mirdata
def test_rwc_pop(tmp_path: Path) -> None:
    src, out = tmp_path / "RWC-Popular", tmp_path / "corpus"
    chords = (
        "0.000\t0.104\tN\n0.104\t1.858\tAb:min\n1.858\t3.646\tE:maj\n3.646\t5.387\tBb:maj(*3)\n"
    )
    pieces = [(1, 1, 1), (2, 1, 2), (3, 1, 3), (21, 2, 1), (22, 2, 2), (41, 3, 1)]
    meta = [
        "Piece No.,Cat. Suffix,Tr. No.,Title,Artist (Vocal),Vocal,Length,Tempo,Instruments,Drum\n"
    ]
    artist = {
        1: "Kazuo Nishi",
        2: "Kazuo Nishi",
        3: "Hiromi Yoshii",
        21: "Tomomi Ogata",
        22: "Rin",
        41: "Shingo Katsuta",
    }
    lab_dir = src / "annotations" / "AIST.RWC-MDB-P-2001.CHORD" / "RWC_Pop_Chords"
    for piece, cd, track in pieces:
        text(lab_dir / f"N{piece:03d}-M{cd:02d}-T{track:02d}.lab", chords)
        audio(src / "audio" / f"rwc-p-m{cd:02d}" / f"{track}.wav")
        meta.append(
            f"No. {piece},M{cd:02d},Tr. {track:02d},Song {piece},{artist[piece]},male,"
            "04:00,120,Gt & Ba & Dr,Live drums\n"
        )
    text(lab_dir / "N099-M07-T05.lab", chords)  # audio CD 7 not ripped
    text(src / "metadata-master" / "rwc-p.csv", "".join(meta))
    adapter("rwc_pop").build(src, out, seed=5, quiet=True)
    rows = check_manifest(out, "chords", "rwc_pop", src, ["audio", "split", "annotation", "work"])
    assert len(rows) == len(pieces)
    nishi = {r["split"] for r in rows if r["artist"] == "Kazuo Nishi"}
    assert len(nishi) == 1  # one artist, one split
    lab = out / "chords" / rows[0]["annotation"]
    intervals, labels = mir_eval.io.load_labeled_intervals(str(lab))
    assert labels == ["N", "Ab:min", "E:maj", "Bb:maj(*3)"]
    assert np.allclose(intervals[1], [0.104, 1.858])
    assert provenance(out, "rwc_pop")["skipped"] == {"audio file not found": 1}
    # the same copy and seed give the same manifest, file for file
    adapter("rwc_pop").build(src, tmp_path / "again", seed=5, quiet=True)
    again = (tmp_path / "again" / "chords" / "manifest.csv").read_bytes()
    assert again == (out / "chords" / "manifest.csv").read_bytes()


# ----------------------------------------------------------------------------------------------
# Schubert Winterreise
# ----------------------------------------------------------------------------------------------


def test_winterreise(tmp_path: Path) -> None:
    src, out = tmp_path / "Schubert_Winterreise_Dataset_v2-0", tmp_path / "corpus"
    csv_text = (
        '"start";"end";"shorthand";"extended";"majmin";"majmin_inv"\n'
        '0.26;5.16;"C:min";"C:(b3,5)";"C:min";"C:min"\n'
        '5.16;5.84;"G:7";"G:(3,5,b7)";"G:maj";"G:maj"\n'
        '5.84;7.10;"Ab:weird";"Ab:(3,5)";"Ab:maj";"Ab:maj"\n'
    )
    for song in (1, 5, 14, 17, 24):
        for perf in ("HU33", "SC06", "AL98"):
            stem = f"Schubert_D911-{song:02d}_{perf}"
            text(src / "02_Annotations" / "ann_audio_chord" / f"{stem}.csv", csv_text)
            if perf != "AL98":  # only HU33 and SC06 are published with audio
                audio(src / "01_RawData" / "audio_wav" / f"{stem}.wav")
    text(
        src / "02_Annotations" / "ann_audio_localkey-ann1" / "Schubert_D911-01_HU33.csv",
        '"start";"end";"key"\n0.26;49.06;"C:min"\n',
    )
    adapter("winterreise").build(src, out, quiet=True)
    rows = check_manifest(
        out, "chords", "winterreise", src, ["audio", "split", "annotation", "work"]
    )
    assert len(rows) == 10
    want = {1: "train", 5: "train", 14: "valid", 17: "test", 24: "test"}
    for r in rows:
        assert r["split"] == want[int(r["work"][-2:])]
    _, labels = mir_eval.io.load_labeled_intervals(str(out / "chords" / rows[0]["annotation"]))
    assert labels == ["C:min", "G:7", "Ab:(3,5)"]  # extended where the shorthand fails
    skipped = provenance(out, "winterreise")["skipped"]
    assert skipped == {"no audio for this performance (only HU33 and SC06 are public)": 5}


# ----------------------------------------------------------------------------------------------
# Ballroom
# ----------------------------------------------------------------------------------------------


@needs_mirdata
def test_ballroom(tmp_path: Path) -> None:
    src, out = tmp_path / "ballroom", tmp_path / "corpus"
    files = [
        ("ChaChaCha", "Albums-Cafe_Paradiso-05"),
        ("ChaChaCha", "Albums-Cafe_Paradiso-06"),
        ("Rumba-American", "Albums-Cafe_Paradiso-11"),
        ("Waltz", "Media-105901"),
        ("Waltz", "Media-105902"),
        ("Tango", "Albums-Ballroom_Magic-03"),
        ("Jive", "Media-106003"),
    ]
    for dance, stem in files:
        audio(src / "BallroomData" / dance / f"{stem}.wav")
        text(
            src / "BallroomAnnotations" / f"{stem}.beats",
            "1.8600000000 1\n2.6270000000 2\n3.3330000000 3\n4.0900000000 1\n",
        )
    text(src / "BallroomAnnotations" / "Media-999999.beats", "1.0 1\n")  # no audio
    adapter("ballroom").build(src, out, seed=7, quiet=True)
    rows = check_manifest(
        out, "beats", "ballroom", src, ["audio", "split", "annotation", "downbeats"]
    )
    assert len(rows) == len(files)
    paradiso = {r["split"] for r in rows if r["work"] == "Albums-Cafe_Paradiso"}
    assert len(paradiso) == 1  # one album, one split, across dance folders
    r = by_name(rows)["Media-105901.wav"]
    assert r["genre"] == "Waltz"
    beats = mir_eval.io.load_events(str(out / "beats" / r["annotation"]))
    assert np.allclose(beats, [1.86, 2.627, 3.333, 4.09])
    down = mir_eval.io.load_events(str(out / "beats" / r["downbeats"]))
    assert np.allclose(down, [1.86, 4.09])
    assert provenance(out, "ballroom")["skipped"] == {"audio file not found": 1}


# ----------------------------------------------------------------------------------------------
# GTZAN-Rhythm
# ----------------------------------------------------------------------------------------------


def make_gtzan(src: Path) -> None:
    for genre in ("blues", "hiphop"):
        for n in range(4):
            audio(src / "gtzan_genre" / "genres" / genre / f"{genre}.{n:05d}.wav")
            text(
                src / "gtzan_tempo_beat-main" / "beats" / f"gtzan_{genre}_{n:05d}.beats",
                "0.5\t1\n1.0\t2\n1.5\t3\n2.0\t4\n2.5\t1\n",
            )
    text(src / "gtzan_tempo_beat-main" / "beats" / "gtzan_rock_00007.beats", "0.5\t1\n")


@needs_mirdata
def test_gtzan_rhythm_seeded_per_genre(tmp_path: Path) -> None:
    src, out = tmp_path / "gtzan", tmp_path / "corpus"
    make_gtzan(src)
    adapter("gtzan_rhythm").build(src, out, quiet=True)
    rows = check_manifest(out, "beats", "gtzan_rhythm", src, ["audio", "split", "annotation"])
    for genre in ("blues", "hiphop"):
        splits = sorted(r["split"] for r in rows if r["genre"] == genre)
        assert splits == ["test", "train", "train", "valid"]
    r = by_name(rows)["blues.00000.wav"]
    assert np.allclose(
        mir_eval.io.load_events(str(out / "beats" / r["annotation"])), [0.5, 1.0, 1.5, 2.0, 2.5]
    )
    assert np.allclose(mir_eval.io.load_events(str(out / "beats" / r["downbeats"])), [0.5, 2.5])
    assert provenance(out, "gtzan_rhythm")["skipped"] == {"audio file not found": 1}


@needs_mirdata
def test_gtzan_rhythm_fault_filtered_split(tmp_path: Path) -> None:
    src, out = tmp_path / "gtzan", tmp_path / "corpus"
    make_gtzan(src)
    text(src / "split" / "train_filtered.txt", "blues/blues.00000.wav\nhiphop/hiphop.00001.wav\n")
    text(src / "split" / "valid_filtered.txt", "blues/blues.00001.wav\n")
    text(src / "split" / "test_filtered.txt", "blues/blues.00002.wav\nhiphop/hiphop.00003.wav\n")
    adapter("gtzan_rhythm").build(src, out, quiet=True)
    rows = check_manifest(out, "beats", "gtzan_rhythm", src, ["audio", "split", "annotation"])
    assert {Path(r["audio"]).stem: r["split"] for r in rows} == {
        "blues.00000": "train",
        "hiphop.00001": "train",
        "blues.00001": "valid",
        "blues.00002": "test",
        "hiphop.00003": "test",
    }
    assert provenance(out, "gtzan_rhythm")["skipped"]["not in the fault-filtered split"] == 3


@needs_mirdata
def test_linked_folders_are_followed_and_a_root_inside_the_source_is_not(tmp_path: Path) -> None:
    elsewhere, src = tmp_path / "disk2", tmp_path / "gtzan"
    make_gtzan(elsewhere)
    src.mkdir()
    (src / "gtzan_genre").symlink_to(elsewhere / "gtzan_genre", target_is_directory=True)
    (src / "beats").symlink_to(elsewhere / "gtzan_tempo_beat-main", target_is_directory=True)
    out = src / "corpus"  # inside the source: it links back to it, and must not be walked
    adapter("gtzan_rhythm").build(src, out, quiet=True)
    adapter("gtzan_rhythm").build(src, out, quiet=True)
    rows = check_manifest(out, "beats", "gtzan_rhythm", elsewhere, ["audio", "split"])
    assert len(rows) == 8
    assert all(r["audio"].startswith("../source/gtzan_rhythm/gtzan_genre/") for r in rows)


# ----------------------------------------------------------------------------------------------
# FMA
# ----------------------------------------------------------------------------------------------


def test_fma(tmp_path: Path) -> None:
    src, out = tmp_path / "fma", tmp_path / "corpus"
    tracks = {2: ("training", 1), 5: ("training", 1), 140: ("validation", 6), 1039: ("test", 9)}
    for t in (*tracks, 99999):
        audio(src / "fma_small" / f"{t // 1000:03d}" / f"{t:06d}.mp3")
    header = (
        ",album,album,artist,artist,set,set,track,track\n"
        ",comments,title,bio,id,split,subset,genre_top,title\n"
        "track_id,,,,,,,,\n"
    )
    body = "".join(
        f'{t},0,Album,"A bio, with a comma\nand a new line",{artist},{split},small,Hip-Hop,Song\n'
        for t, (split, artist) in tracks.items()
    )
    text(src / "fma_metadata" / "tracks.csv", header + body)
    adapter("fma").build(src, out, quiet=True)
    rows = check_manifest(out, "pretrain", "fma", src, ["audio", "split", "work"])
    got = {int(Path(r["audio"]).stem): r for r in rows}
    assert set(got) == set(tracks)
    assert {t: r["split"] for t, r in got.items()} == {
        2: "train",
        5: "train",
        140: "valid",
        1039: "test",
    }
    assert got[2]["work"] == got[5]["work"] == "artist:1"
    assert len(read_manifest(out / "pretrain" / "manifest.csv", "train")) == 2
    assert provenance(out, "fma")["skipped"] == {"not in tracks.csv": 1}

    # without tracks.csv: every file, a seeded train/valid split
    (src / "fma_metadata" / "tracks.csv").unlink()
    adapter("fma").build(src, out, quiet=True)
    rows = check_manifest(out, "pretrain", "fma", src, ["audio", "split", "work"])
    assert len(rows) == 5 and {r["split"] for r in rows} <= {"train", "valid"}


# ----------------------------------------------------------------------------------------------
# Errors and the command line
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(ADAPTERS))
def test_wrong_layout_names_the_expected_one(tmp_path: Path, name: str) -> None:
    src = tmp_path / "downloads"
    audio(src / "some_song.wav")
    text(src / "readme.txt", "not a dataset\n")
    mod = adapter(name)
    with pytest.raises(UserError, match="Expected") as err:
        mod.build(src, tmp_path / "corpus", quiet=True)
    assert mod.LAYOUT in str(err.value) and str(src) in str(err.value)
    with pytest.raises(UserError, match="not a folder"):
        mod.build(tmp_path / "nowhere", tmp_path / "corpus", quiet=True)


@needs_mirdata
def test_two_datasets_cannot_share_a_task_root(tmp_path: Path) -> None:
    src, out = tmp_path / "gtzan", tmp_path / "corpus"
    make_gtzan(src)
    adapter("gtzan_rhythm").build(src, out, quiet=True)
    adapter("gtzan_rhythm").build(src, out, seed=1, quiet=True)  # a rebuild is fine
    with pytest.raises(UserError, match="own corpus root"):
        adapter("ballroom").build(src, out, quiet=True)


def test_cli_help_lists_every_dataset_and_its_origin(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["data", "--help"])
    assert exit_.value.code == 0
    shown = capsys.readouterr().out
    for name in ADAPTERS:
        assert f"  {name}: " in shown
        for url in (w.rstrip(";,)") for w in adapter(name).ORIGIN.split() if "://" in w):
            assert url in shown  # where it comes from, unbroken
    for where in (
        "zenodo.org/record/3685367",
        "github.com/CPJKU/BallroomAnnotations",
        "annotations_final.csv",
        "github.com/mdeff/fma",
    ):
        assert where in shown


@needs_mirdata
def test_cli_builds_and_reports_a_wrong_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, out = tmp_path / "gtzan", tmp_path / "corpus"
    make_gtzan(src)
    assert main(["data", "gtzan_rhythm", "--source", str(src), "--out", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "beats/manifest.csv: 4 train, 2 valid, 2 test" in shown
    assert "skipped 1: audio file not found" in shown
    assert main(["data", "tinysol", "--source", str(src), "--out", str(out)]) == 2
    assert "TinySOL_metadata.csv" in capsys.readouterr().err
