"""Unit tests of the corpus builder's pieces: label arithmetic, repeats, presets, errors.

No rendering and no music21 parsing here (fast); the label-versus-audio checks live in
``test_corpus_labels.py`` and the whole build in ``test_corpus_build.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import mir_eval
import numpy as np
import pytest
import yaml

from vit1d.core.errors import UserError
from vit1d.corpus import labels, tasks
from vit1d.corpus.config import load_preset, preset_digest
from vit1d.corpus.repeats import expand, repeat_order

# ---------------------------------------------------------------------------- beat grid


def test_beat_grid_pickup_and_downbeats():
    # 4/4 with a one-beat pickup, then two full bars and a three-beat closing bar
    measures = [
        [0.0, 1.0, 3.0, 4, 4, 1.0],
        [1.0, 4.0, 0.0, 4, 4, 1.0],
        [5.0, 4.0, 0.0, 4, 4, 1.0],
        [9.0, 3.0, 0.0, 4, 4, 1.0],
    ]
    beats, down, lengths, index = labels.beat_grid(measures, 0.0, 12.0)
    np.testing.assert_allclose(beats, np.arange(12.0))
    assert list(np.flatnonzero(down)) == [1, 5, 9]  # the pickup beat is not a downbeat
    assert list(index[:6]) == [3, 0, 1, 2, 3, 0]
    assert np.all(lengths == 1.0)


def test_beat_grid_compound_meter_and_window():
    # 6/8: two dotted-quarter beats per bar; an eighth-note pickup has no beat at all
    measures = [[0.0, 0.5, 2.5, 6, 8, 1.5], [0.5, 3.0, 0.0, 6, 8, 1.5], [3.5, 3.0, 0.0, 6, 8, 1.5]]
    beats, down, _, _ = labels.beat_grid(measures, 0.0, 6.5)
    np.testing.assert_allclose(beats, [0.5, 2.0, 3.5, 5.0])
    assert list(down) == [True, False, True, False]
    beats, _, _, _ = labels.beat_grid(measures, 2.0, 5.0)  # a window inside the work
    np.testing.assert_allclose(beats, [2.0, 3.5])


# ------------------------------------------------------------------------------ chords


def test_chord_segments_triads_sevenths_and_silence():
    notes = [
        (0.0, 1.0, 48),
        (0.0, 1.0, 64),
        (0.0, 1.0, 67),  # C E G -> C:maj
        (1.0, 2.0, 57),
        (1.0, 2.0, 60),
        (1.0, 2.0, 64),  # A C E -> A:min
        (2.0, 3.0, 43),
        (2.0, 3.0, 59),
        (2.0, 3.0, 62),
        (2.0, 3.0, 65),  # G7 -> G:maj
        (3.0, 3.5, 59),
        (3.0, 3.5, 62),
        (3.0, 3.5, 65),  # B D F (rootless G7) -> G:maj
        # silence 3.5-4.0 -> N
        (4.0, 5.0, 52),
        (4.0, 5.0, 55),
        (4.0, 5.0, 59),  # E G B -> E:min
        (5.0, 5.5, 52),
        (5.0, 5.5, 57),  # E A: one foreign note over E:min -> E:min
    ]
    segs = labels.chord_segments(notes, 6.0)
    assert [s[2] for s in segs] == ["C:maj", "A:min", "G:maj", "N", "E:min", "N"]
    assert segs[2][:2] == (2.0, 3.5)
    assert segs[3][:2] == (3.5, 4.0)
    for lab in {s[2] for s in segs}:  # every label is valid Harte syntax for mir_eval
        mir_eval.chord.encode(lab)


def test_chord_inversion_prefers_bass_root():
    # C E G A: contains C:maj and A:min; the bass decides
    assert labels.slice_chord(frozenset({0, 4, 7, 9}), 9, None) == (9, "min")
    assert labels.slice_chord(frozenset({0, 4, 7, 9}), 0, None) == (0, "maj")
    assert labels.slice_chord(frozenset({9, 0}), 9, None) == (9, "min")  # a bare third
    assert labels.slice_chord(frozenset({0, 6}), 0, None) is None  # a tritone: N


def test_key_names_are_mir_eval_keys():
    for k in labels.KEYS:
        mir_eval.key.validate_key(k)
    assert labels.key_name(9 + 12, "minor") == "A minor"
    assert labels.key_name(-1, "major") == "B major"


def test_merge_onsets():
    out = labels.merge_onsets([0.5, 0.0, 0.01, 0.02, 0.2])
    np.testing.assert_allclose(out, [0.0, 0.2, 0.5])


def test_annotation_files_round_trip(tmp_path: Path):
    labels.write_intervals(tmp_path / "a.lab", [(0.0, 1.5, "C:maj"), (1.5, 2.0, "N")])
    iv, lab = mir_eval.io.load_labeled_intervals(str(tmp_path / "a.lab"))
    np.testing.assert_allclose(iv, [[0.0, 1.5], [1.5, 2.0]])
    assert lab == ["C:maj", "N"]
    labels.write_events(tmp_path / "b.txt", [0.5, 1.0], "beats")
    np.testing.assert_allclose(mir_eval.io.load_events(str(tmp_path / "b.txt")), [0.5, 1.0])
    assert not list(tmp_path.glob("*.tmp*"))


# ----------------------------------------------------------------------------- repeats


def _bars(n, start=(), end=(), endings=None):
    endings = endings or {}
    return [
        {
            "offset": 4.0 * i,
            "dur": 4.0,
            "pad": 0.0,
            "ts": [4, 4, 1.0],
            "start": i in start,
            "end": 2 if i in end else 0,
            "endings": endings.get(i, set()),
        }
        for i in range(n)
    ]


def test_repeat_order_simple_and_endings():
    assert repeat_order(_bars(4)) == [0, 1, 2, 3]
    assert repeat_order(_bars(4, end={1})) == [0, 1, 0, 1, 2, 3]
    assert repeat_order(_bars(5, start={2}, end={3})) == [0, 1, 2, 3, 2, 3, 4]
    # |: A B [1 C :| [2 D | E
    bars = _bars(5, end={2}, endings={2: {1}, 3: {2}})
    assert repeat_order(bars) == [0, 1, 2, 0, 1, 3, 4]
    # two repeated sections in a row, the second with its own start sign
    assert repeat_order(_bars(4, start={2}, end={1, 3})) == [0, 1, 0, 1, 2, 3, 2, 3]


def test_expand_shifts_events_and_cuts_ties_at_jumps():
    bars = _bars(2, end={1})
    events = [[0.0, 1.0, 60], [6.0, 3.0, 62]]  # the second note is tied past the repeat sign
    out = expand(events, bars, repeat_order(bars))
    assert out == [[0.0, 1.0, 60], [6.0, 2.0, 62], [8.0, 1.0, 60], [14.0, 2.0, 62]]


# ------------------------------------------------------------------------------ splits


def test_work_groups_and_splits_are_stable():
    assert tasks.work_group("mozart/k155/movement1.mxl") == "mozart/k155"
    assert tasks.work_group("palestrina/Agnus_II_12_a.krn") == "palestrina/Agnus_II_12"
    assert tasks.work_group("essenFolksong/han1.abc#12") == "essenFolksong/han1.abc#12"
    assert tasks.work_group("bach/bwv66.6.mxl") == "bach/bwv66.6"
    groups = [f"g{i}" for i in range(4000)]
    splits = [tasks.assign_split(g, 0, 0.1, 0.2) for g in groups]
    assert splits == [tasks.assign_split(g, 0, 0.1, 0.2) for g in groups]
    frac = {s: splits.count(s) / len(splits) for s in ("train", "valid", "test")}
    assert abs(frac["test"] - 0.2) < 0.03 and abs(frac["valid"] - 0.1) < 0.03
    assert splits != [tasks.assign_split(g, 1, 0.1, 0.2) for g in groups]  # the seed matters


# ------------------------------------------------------------------------------ presets


def test_packaged_presets_load():
    for name in ("smoke", "default"):
        cfg = load_preset(name)
        assert cfg["name"] == name
        assert cfg["collections"]
    assert preset_digest(load_preset("smoke")) != preset_digest(load_preset("default"))
    assert preset_digest(load_preset("smoke", {"workers": 1})) == preset_digest(
        load_preset("smoke")
    )


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    "data, needle",
    [
        ({"sead": 1}, "sead"),
        ({"render": {"tempo": [50, 100]}}, "render.tempo"),
        ({"render": {"tempo_bpm": [200, 50]}}, "render.tempo_bpm"),
        ({"effects": {"reverb_prob": 2}}, "effects.reverb_prob"),
        ({"seed": "zero"}, "seed"),
        ({"collections": {"bahc": {"works": 3}}}, "bahc"),
        ({"collections": {"bach": {"files": 3}}}, "bach.files"),
        ({"collections": {"bach": {"works": -1}}}, "bach.works"),
    ],
)
def test_bad_preset_keys_name_the_key(tmp_path: Path, data: dict, needle: str):
    with pytest.raises(UserError, match=needle.replace(".", r"\.")):
        load_preset(_write(tmp_path, data))


def test_missing_preset_file_is_a_user_error(tmp_path: Path):
    with pytest.raises(UserError, match="corpus_default.yaml"):
        load_preset(tmp_path / "nope.yaml")


# --------------------------------------------------------------------- command line errors


def test_cli_help_lists_options(capsys):
    from vit1d.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["corpus", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--preset", "--out", "--seed", "--workers", "--soundfont", "--cache"):
        assert flag in out


def test_cli_missing_soundfont_is_one_line_error(tmp_path: Path, capsys):
    from vit1d.cli import main

    code = main(
        ["corpus", "--preset", "smoke", "--out", str(tmp_path / "c"), "--soundfont", "x.sf2"]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "SoundFont not found" in err and "--soundfont" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_cli_unwritable_output_is_a_user_error(tmp_path: Path, capsys):  # pragma: no cover
    from vit1d.cli import main

    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    code = main(["corpus", "--preset", "smoke", "--out", str(ro / "c")])
    assert code == 2
    assert "cannot write" in capsys.readouterr().err


def test_unwritable_output_path_is_a_user_error(tmp_path: Path):
    from vit1d.corpus.build import _check_writable

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(UserError, match="cannot write to the output folder"):
        _check_writable(blocker / "corpus")
