"""Labels against the audio itself.

A handful of real scores are rendered by the builder's own job code (solo piano, or the drum
track alone, without room or noise) and the labels it *writes* (record, ``.lab`` and event
files) are checked against the audio file it writes, with independent analyses from
librosa and mir_eval, never against the builder's own earlier output:

* note onsets vs ``librosa.onset.onset_detect`` on solo-piano renders (F-measure, 50 ms);
* beats vs the onsets of the drum track rendered alone;
* keys vs a Krumhansl-Kessler template correlation on mean chroma (MIREX weighted score);
* chords vs chroma: the labelled triad must be among the two best-matching templates;
* isolated-note pitches vs ``librosa.pyin``.

Each check is also run on deliberately wrong labels (a semitone off, 5 % slow) and must
then fail, so the checks can catch drift, transposition and tempo bugs.
"""

from __future__ import annotations

from pathlib import Path

import librosa
import mir_eval
import numpy as np
import pytest
import soundfile

pytest.importorskip("music21")
pytest.importorskip("tinysoundfont")

from vit1d.corpus import jobs, labels, scores  # noqa: E402
from vit1d.corpus.config import load_preset  # noqa: E402
from vit1d.corpus.render import resolve_soundfont  # noqa: E402
from vit1d.corpus.scores import stable_hash  # noqa: E402

# every test renders real scores with the SoundFont
pytestmark = pytest.mark.slow

SR = 16000
UNITS = [
    "bach/bwv66.6.mxl",
    "bach/bwv26.6.mxl",
    "bach/bwv40.8.mxl",
    "bach/bwv253.mxl",
    "bach/bwv269.mxl",
    "bach/bwv308.mxl",
    "essenFolksong/altdeu10.abc#1",
    "essenFolksong/ballad10.abc#3",
    "oneills1850/0001-0050.abc#5",
    "ryansMammoth/ButterMilkAndPrateesJig.abc",
]

# Krumhansl-Kessler key profiles (C major / C minor)
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    cache = tmp_path_factory.mktemp("score-cache")
    works = []
    for u in UNITS:
        works.extend(w for w in scores.load_unit(u, cache) if "error" not in w)
    assert len(works) == len(UNITS)
    return works, load_preset("smoke"), str(resolve_soundfont(None))


def render(work, cfg, sf, out: Path, instrument="piano", drums=False, channels=None):
    """Run one music job with plain settings; returns (audio, record, settings)."""
    rid = f"music/{stable_hash(work['id']):010d}"
    seen = {}

    def adjust(s):
        seen.update(jobs.plain(s, instrument, drums))
        return dict(seen)

    rec = jobs.run_music(
        out, rid, work, "train", 0, cfg, 12.0, sf, adjust=adjust, channels=channels
    )
    y, sr = soundfile.read(out / rec["audio"], dtype="float32")
    assert sr == SR and y.ndim == 1
    return y, rec, seen


def events(out: Path, rec: dict, name: str) -> np.ndarray:
    return mir_eval.io.load_events(str(out / rec["annotations"][name]))


def test_onset_labels_match_onset_detection_on_piano(setup, tmp_path: Path):
    works, cfg, sf = setup
    scores_, shifted = [], []
    for w in works:
        y, rec, _ = render(w, cfg, sf, tmp_path)
        ref = events(tmp_path, rec, "onsets")
        est = librosa.onset.onset_detect(y=y, sr=SR, hop_length=256, units="time")
        scores_.append(mir_eval.onset.f_measure(ref, est, window=0.05)[0])
        shifted.append(mir_eval.onset.f_measure(ref * 1.05 + 0.06, est, window=0.05)[0])
    assert np.mean(scores_) > 0.85, scores_
    assert min(scores_) > 0.7, scores_
    assert np.mean(shifted) < 0.6, shifted  # the check notices drifting labels


def test_beat_labels_match_the_drum_track(setup, tmp_path: Path):
    works, cfg, sf = setup
    for w in works[:4] + works[-3:]:
        y, rec, s = render(w, cfg, sf, tmp_path, instrument=None, drums=True, channels={9})
        sec_per_q = 60.0 / (s["bpm"] * s["beat_q"])
        beats = events(tmp_path, rec, "beats")
        downbeats = events(tmp_path, rec, "downbeats")
        assert set(np.round(downbeats, 4)) <= set(np.round(beats, 4))
        est = librosa.onset.onset_detect(y=y, sr=SR, hop_length=256, units="time")
        _, _, recall = mir_eval.onset.f_measure(beats, est, window=0.05)
        assert recall > 0.85, (w["id"], recall)
        # every drum onset sits on a beat or on a subdivision of the labelled beat grid
        sub = 3 if s["beat_q"] in (1.5, 3.0) else 2
        step = s["beat_q"] * sec_per_q / sub
        grid = np.sort((beats[:, None] + step * np.arange(sub)[None, :]).ravel())
        _, precision, _ = mir_eval.onset.f_measure(grid, est, window=0.05)
        assert precision > 0.85, (w["id"], precision)
        _, _, slow = mir_eval.onset.f_measure(beats * 1.05, est, window=0.03)
        assert slow < recall - 0.2, (w["id"], slow)
        # the tempo label is the beat rate
        assert np.median(np.diff(beats)) == pytest.approx(60.0 / rec["labels"]["bpm"], rel=1e-3)


def _estimate_key(chroma: np.ndarray) -> str:
    best = (-2.0, "")
    for mode, prof in (("major", KK_MAJOR), ("minor", KK_MINOR)):
        for t in range(12):
            r = np.corrcoef(chroma, np.roll(prof, t))[0, 1]
            if r > best[0]:
                best = (r, labels.key_name(t, mode))
    return best[1]


def test_key_labels_match_chroma_key_templates(setup, tmp_path: Path):
    works, cfg, sf = setup
    right, wrong = [], []
    for w in works:
        if not w["key"]:
            continue
        y, rec, _ = render(w, cfg, sf, tmp_path)
        est = _estimate_key(librosa.feature.chroma_cqt(y=y, sr=SR).mean(axis=1))
        label = rec["labels"]["key"]
        tonic, mode = label.split()
        off = labels.key_name(labels.PITCH_NAMES.index(tonic) + 1, mode)
        right.append(mir_eval.key.weighted_score(label, est))
        wrong.append(mir_eval.key.weighted_score(off, est))
    assert len(right) >= 6
    assert np.mean(right) > 0.6, right
    assert np.mean(wrong) < 0.2, wrong


def _chord_top2(segs, chroma, times, shift=0):
    names, temps = [], []
    for r in range(12):
        for q, iv in (("maj", (0, 4, 7)), ("min", (0, 3, 7))):
            v = np.zeros(12)
            v[[(r + i) % 12 for i in iv]] = 1
            names.append(labels.chord_name(r, q))
            temps.append(v)
    temps = np.asarray(temps)
    hits = total = 0
    for a, b, lab in segs:
        if lab == "N" or b - a < 0.25:
            continue
        if shift:
            root, q = lab.split(":")
            lab = labels.chord_name(labels.PITCH_NAMES.index(root) + shift, q)
        sel = (times >= a) & (times < b)
        if sel.sum() < 2:
            continue
        c = chroma[:, sel].mean(axis=1)
        order = [names[i] for i in np.argsort(-(temps @ (c / (np.linalg.norm(c) + 1e-9))))]
        hits += lab in order[:2]
        total += 1
    return hits, total


def test_chord_labels_match_chroma(setup, tmp_path: Path):
    works, cfg, sf = setup
    hits = total = hits_off = 0
    for w in works:
        if len(w["parts"]) < 3:
            continue
        y, rec, _ = render(w, cfg, sf, tmp_path)
        iv, labs = mir_eval.io.load_labeled_intervals(str(tmp_path / rec["annotations"]["chords"]))
        assert iv[-1, 1] == pytest.approx(y.size / SR, abs=1e-3)
        segs = [(a, b, lab) for (a, b), lab in zip(iv, labs, strict=True)]
        chroma = librosa.feature.chroma_cqt(y=y, sr=SR, hop_length=512)
        times = librosa.frames_to_time(np.arange(chroma.shape[1]), sr=SR, hop_length=512)
        h, t = _chord_top2(segs, chroma, times)
        h_off, _ = _chord_top2(segs, chroma, times, shift=1)
        hits, total, hits_off = hits + h, total + t, hits_off + h_off
    assert total >= 40
    assert hits / total > 0.8, (hits, total)
    assert hits_off / total < 0.2, (hits_off, total)


def test_isolated_note_pitch_matches_pyin(setup, tmp_path: Path):
    _, cfg, sf = setup
    rng = np.random.default_rng(0)
    todo = jobs.note_jobs({"pitch_step": 1, "dynamics": ["mf"]})
    picks = [todo[i] for i in rng.choice(len(todo), 24, replace=False)]
    ok = 0
    for rid, ins, midi, dyn in picks:
        rec = jobs.run_note(tmp_path, rid, ins, midi, dyn, "train", 0, cfg, sf)
        y, sr = soundfile.read(tmp_path / rec["audio"], dtype="float32")
        assert sr == SR and y.ndim == 1
        f0, voiced, _ = librosa.pyin(y, fmin=30, fmax=2200, sr=SR, frame_length=2048)
        f = f0[voiced & np.isfinite(f0)]
        est = int(np.round(np.median(librosa.hz_to_midi(f)))) if f.size else -1
        ok += est == rec["labels"]["pitch"]
    assert ok >= 21, ok  # pyin makes the odd octave error; a transposition bug fails all
