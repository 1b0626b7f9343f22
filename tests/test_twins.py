"""Twin renders against the audio, and the sampler that pairs a view with its twin.

A twin (:mod:`vit1d.corpus.twins`) plays the excerpt of its original again with other
instruments, room or timing. Checked with librosa and mir_eval, not with the builder's own
output: the chroma of a twin and its original correlate strongly frame by frame when aligned
and weakly one bar apart; their instrumentations differ (or, for a production twin, their
room, EQ, noise or humanisation); their beat, downbeat and chord labels are identical and
their onsets agree within mir_eval's 50 ms window (exactly, when the timing is kept).
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

from conftest import tone_pool_with_twins  # noqa: E402

from vit1d.core.errors import UserError  # noqa: E402
from vit1d.corpus import jobs, scores, twins  # noqa: E402
from vit1d.corpus.config import load_preset  # noqa: E402
from vit1d.corpus.render import resolve_soundfont  # noqa: E402
from vit1d.pretrain.data import PairSampler, read_twins, twin_pool  # noqa: E402

SR = 16000
HOP = 512
UNITS = [
    "bach/bwv66.6.mxl",
    "bach/bwv26.6.mxl",
    "bach/bwv253.mxl",
    "essenFolksong/altdeu10.abc#1",
    "oneills1850/0001-0050.abc#5",
    "ryansMammoth/ButterMilkAndPrateesJig.abc",
]
PRODUCTION = ("reverb_rt60", "reverb_wet", "highpass_hz", "lowpass_hz", "noise", "humanize_ms")


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[dict, dict]]]:
    """Each work rendered once as a pretraining excerpt and once per kind of twin."""
    cache = tmp_path_factory.mktemp("score-cache")
    out = tmp_path_factory.mktemp("twins")
    cfg, sf = load_preset("smoke"), str(resolve_soundfont(None))
    works = [w for u in UNITS for w in scores.load_unit(u, cache) if "error" not in w]
    assert len(works) == len(UNITS)
    found = []
    for i, w in enumerate(works):
        original = f"pretrain/{i:05d}"
        rec = jobs.run_music(out, original, w, "train", 0, cfg, cfg["pretrain"]["clip_s"], sf)
        for redraw in twins.REDRAWS:
            twin = twins.run_twin(
                out, twins.twin_id(original, redraw), original, w, "train", 0, cfg, sf
            )
            found.append((rec, twin))
    return out, found


def _chroma(path: Path) -> np.ndarray:
    y, sr = soundfile.read(path, dtype="float32")
    assert sr == SR
    return librosa.feature.chroma_cqt(y=y, sr=SR, hop_length=HOP)


def _framewise_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over frames of the Pearson correlation of two 12-bin chroma vectors."""
    a, b = a - a.mean(0), b - b.mean(0)
    r = (a * b).sum(0) / (np.linalg.norm(a, axis=0) * np.linalg.norm(b, axis=0) + 1e-9)
    return float(r.mean())


def _events(root: Path, rec: dict, name: str) -> np.ndarray:
    return mir_eval.io.load_events(str(root / rec["annotations"][name]))


@pytest.mark.slow  # the pairs are rendered with the SoundFont
def test_twin_chroma_follows_the_original_aligned_not_a_bar_apart(pairs) -> None:
    root, found = pairs
    aligned, shifted = [], []
    for rec, twin in found:
        a, b = _chroma(root / rec["audio"]), _chroma(root / twin["audio"])
        assert a.shape == b.shape  # the same length to the frame
        downbeats = _events(root, rec, "downbeats")
        bar = int(round(np.median(np.diff(downbeats)) * SR / HOP))
        assert 0 < bar < a.shape[1] // 2
        aligned.append(_framewise_correlation(a, b))
        shifted.append(_framewise_correlation(a[:, bar:], b[:, :-bar]))
    aligned, shifted = np.array(aligned), np.array(shifted)
    assert aligned.min() > 0.55, aligned
    assert (aligned - shifted).min() > 0.2, (aligned, shifted)
    assert aligned.mean() > 0.75 and shifted.mean() < 0.4, (aligned.mean(), shifted.mean())


@pytest.mark.slow  # the pairs are rendered with the SoundFont
def test_twins_redraw_what_they_say_and_keep_the_rest(pairs) -> None:
    _root, found = pairs
    for rec, twin in found:
        a, b = rec["settings"], twin["settings"]
        assert twin["kind"] == "twin" and twin["twin_of"] == rec["render_id"]
        assert twin["n_samples"] == rec["n_samples"] and twin["split"] == rec["split"]
        for key in ("render_bpm", "transpose", "start_q", "drums", "collection"):
            assert a[key] == b[key], (twin["render_id"], key)
        assert twin["labels"]["key"] == rec["labels"]["key"]
        if twin["redraw"] in ("orchestration", "both"):
            assert sorted(a["instrumentation"].split(";")) != sorted(
                b["instrumentation"].split(";")
            ), twin["render_id"]
        else:
            assert a["instrumentation"] == b["instrumentation"]
            assert a["programs"] == b["programs"]
        moved = [k for k in PRODUCTION if a[k] != b[k]]
        if twin["redraw"] == "orchestration":
            assert not moved, (twin["render_id"], moved)  # same room, EQ, noise, timing
        else:
            assert moved, twin["render_id"]


@pytest.mark.slow  # the pairs are rendered with the SoundFont
def test_twin_labels_are_the_originals(pairs) -> None:
    root, found = pairs
    scores_ = []
    for rec, twin in found:
        for name in ("beats", "downbeats"):
            np.testing.assert_array_equal(_events(root, rec, name), _events(root, twin, name))
        ia, la = mir_eval.io.load_labeled_intervals(str(root / rec["annotations"]["chords"]))
        ib, lb = mir_eval.io.load_labeled_intervals(str(root / twin["annotations"]["chords"]))
        np.testing.assert_allclose(ia, ib)
        assert la == lb
        on_a, on_b = _events(root, rec, "onsets"), _events(root, twin, "onsets")
        f = mir_eval.onset.f_measure(on_a, on_b, window=0.05)[0]
        scores_.append(f)
        plain = {"solo", "keyboard", "strings", "winds", "brass", "choir", "mixed"}
        kept_timing = twin["redraw"] == "orchestration"
        if kept_timing and {rec["settings"]["ensemble"], twin["settings"]["ensemble"]} <= plain:
            np.testing.assert_allclose(on_a, on_b)  # the original's humanisation, note for note
        assert f > 0.8, (twin["render_id"], f)
    assert np.mean(scores_) > 0.9, scores_


@pytest.mark.slow  # the pairs are rendered with the SoundFont
def test_a_twin_is_reproducible_and_its_own_draw(pairs, tmp_path: Path) -> None:
    root, found = pairs
    rec, twin = found[0]
    cfg = load_preset("smoke")
    work = scores.load_unit(UNITS[0], tmp_path / "cache")[0]
    again = twins.plan_twin(work, rec["render_id"], twin["render_id"], "both", 0, cfg, 10.0)
    assert (
        ";".join(c["instrument"] for c in again["channels"])
        == (twin["settings"]["instrumentation"])
    )
    other = twins.plan_twin(work, rec["render_id"], "twin/both-2/00000", "both", 0, cfg, 10.0)
    assert other["noise_seed"] != again["noise_seed"]  # a second twin draws anew
    assert twins.twin_names(["both", "production", "both"]) == [
        ("both", "both"),
        ("production", "production"),
        ("both-2", "both"),
    ]
    assert twins.redraw_of("both-2") == "both"


# ----------------------------------------------------------------------------- sampler


def test_twin_prob_zero_keeps_every_batch_of_the_papers_sampler() -> None:
    lengths = np.full(40, 600)
    plain = PairSampler(lengths, 8, 126, 126, seed=3)
    off = PairSampler(lengths, 8, 126, 126, seed=3, twin_counts=np.ones(40), twin_prob=0.0)
    for step in range(5):
        a, b = plain.batch(step), off.batch(step)
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)
        assert not b.source.any()


def test_twin_views_start_at_the_same_score_time_and_skip_tracks_without_twins() -> None:
    counts = np.array([2, 1, 0, 3] * 10)
    sampler = PairSampler(np.full(40, 600), 16, 126, 126, seed=0, twin_counts=counts, twin_prob=1.0)
    picked = []
    for step in range(50):
        b = sampler.batch(step)
        has = counts[b.tracks] > 0
        assert (b.source[has] >= 1).all() and (b.source[~has] == 0).all()
        assert (b.source <= counts[b.tracks]).all()
        np.testing.assert_array_equal(b.starts_b[has], b.starts_a[has])  # aligned twins
        picked += list(b.source[b.tracks % 4 == 3])
    assert set(picked) == {1, 2, 3}  # every twin of a track is used
    np.testing.assert_array_equal(sampler.batch(7).source, sampler.batch(7).source)


def test_twin_prob_and_distance_are_honoured() -> None:
    sampler = PairSampler(
        np.full(64, 800),
        32,
        126,
        126,
        seed=1,
        twin_counts=np.ones(64),
        twin_prob=0.5,
        twin_max_distance=20,
    )
    used = np.concatenate([sampler.batch(s).source for s in range(200)])
    assert abs(used.mean() - 0.5) < 0.03
    gaps = np.concatenate(
        [np.abs(b.starts_b - b.starts_a)[b.source > 0] for b in map(sampler.batch, range(50))]
    )
    assert gaps.max() <= 20 and gaps.max() >= 15


def test_twin_pool_maps_each_track_to_its_twins_mel(tmp_path: Path) -> None:
    manifest = tone_pool_with_twins(tmp_path, 4, with_twins=[1, 3])
    per_track = read_twins(manifest, "both", "train")
    assert [len(p) for p in per_track] == [0, 1, 0, 1]
    pool = twin_pool(per_track, tmp_path / "cache", progress=False)
    np.testing.assert_array_equal(pool.counts, [0, 1, 0, 1])
    at = pool.positions(np.array([3, 1]), np.array([1, 1]))
    crops = pool.cache.crops(at, np.array([0, 0]), 50)
    # the twin of track 3 is the tone 2 * 220 * 2 ** (3 / 12) Hz: its loudest mel band is
    # higher than the twin of track 1's
    assert crops[0].mean(0).argmax() > crops[1].mean(0).argmax()
    with pytest.raises(UserError, match="no twins with redraw 'production'"):
        read_twins(manifest, "production")
    (tmp_path / "pretrain" / "twins.csv").unlink()
    with pytest.raises(UserError, match="twins.csv is missing"):
        read_twins(manifest, "both")
