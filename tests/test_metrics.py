"""Probe metrics against hand-checkable cases and independent references."""

from __future__ import annotations

from pathlib import Path

import mir_eval
import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from vit1d.audio.frontend import FRAME_RATE
from vit1d.probing import metrics as M
from vit1d.probing.results import bootstrap_ci, summary_row

# ---------------------------------------------------------------------------- tagging


def test_tagging_hand_case_and_perfect() -> None:
    # one tag: positives scored 0.9 and 0.3, negatives 0.8 and 0.1.
    # AUC = P(pos > neg) over 4 pairs = 3/4; AP: hits at ranks 1 and 3 -> (1/1 + 2/3) / 2.
    y = np.array([[1], [0], [1], [0]])
    s = np.array([[0.9], [0.8], [0.3], [0.1]])
    out = M.tagging_scores(y, s)
    assert out["roc_auc"][0] == pytest.approx(0.75)
    assert out["map"][0] == pytest.approx((1 + 2 / 3) / 2)
    perfect = M.tagging_scores(y, y.astype(float))
    assert perfect["roc_auc"][0] == 1.0 and perfect["map"][0] == 1.0
    assert M.tagging_scores(y, -s)["roc_auc"][0] == pytest.approx(0.25)


def test_tagging_macro_matches_sklearn_and_drops_undefined_tags() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random((60, 5)) < 0.3).astype(int)
    y[:, 4] = 0  # a tag without test positives: AUC undefined, left out
    s = rng.random((60, 5)) + y
    out = M.tagging_scores(y, s)
    assert list(out["tags"]) == [0, 1, 2, 3]
    assert out["roc_auc"].mean() == pytest.approx(roc_auc_score(y[:, :4], s[:, :4]))
    assert out["map"].mean() == pytest.approx(average_precision_score(y[:, :4], s[:, :4]))


# ---------------------------------------------------------------------------- key


@pytest.mark.parametrize(
    ("estimate", "score"),
    [
        ("C major", 1.0),  # same key
        ("G major", 0.5),  # a fifth above
        ("A minor", 0.3),  # relative minor
        ("C minor", 0.2),  # parallel minor
        ("D major", 0.0),  # unrelated
        ("F# major", 0.0),
    ],
)
def test_key_mirex_weights(estimate: str, score: float) -> None:
    out = M.key_scores(["C major"], [estimate])
    assert out["weighted"][0] == pytest.approx(score)
    assert out["accuracy"][0] == float(estimate == "C major")


def test_transposed_keys_get_partial_credit_across_the_circle() -> None:
    roots = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"]
    refs = [f"{r} minor" for r in roots]
    fifths = [f"{roots[(i + 7) % 12]} minor" for i in range(12)]
    assert M.key_scores(refs, fifths)["weighted"].tolist() == [0.5] * 12
    assert M.key_scores(refs, refs)["weighted"].tolist() == [1.0] * 12


# ---------------------------------------------------------------------------- tempo


def test_tempo_acc1_acc2_hand_cases() -> None:
    ref = [120.0] * 8
    est = [124.8, 125.0, 240.0, 40.0, 60.0, 180.0, 360.0, 115.3]
    out = M.tempo_scores(ref, est)
    # 124.8 is 4.0 % off (inside), 125 is 4.17 % (outside), 115.3 is 3.9 % (inside)
    assert out["acc1"].tolist() == [1, 0, 0, 0, 0, 0, 0, 1]
    # x2 (240), x1/3 (40), x1/2 (60), x3 (360) pass Acc2; x1.5 (180) never does
    assert out["acc2"].tolist() == [1, 0, 1, 1, 1, 0, 1, 1]


def test_tempo_agrees_with_mir_eval_clip_by_clip() -> None:
    """The vectorised scores against ``mir_eval.tempo.detection`` called per clip, with
    estimates placed exactly on and just beside the 4 % boundaries, and zero estimates."""
    import mir_eval

    rng = np.random.default_rng(5)
    ref = np.round(rng.uniform(40, 220, 300), 2)
    factor = rng.choice([1, 2, 3, 0.5, 1 / 3, 1.5], 300)
    est = ref * factor * rng.choice([0.96, 1.04, 0.9599, 1.0401, 1.0, 1.03], 300)
    est[3:5] = 0.0
    out = M.tempo_scores(ref, est)

    def hit(r: float, e: float) -> bool:
        return mir_eval.tempo.detection(np.array([r, r]), 1.0, np.array([e, e]), 0.04)[1]

    acc1 = [hit(float(r), float(e)) for r, e in zip(ref, est, strict=True)]
    acc2 = [
        any(hit(float(r) * f, float(e)) for f in M.ACC2_FACTORS)
        for r, e in zip(ref, est, strict=True)
    ]
    assert out["acc1"].astype(bool).tolist() == acc1
    assert out["acc2"].astype(bool).tolist() == acc2
    assert 0 < sum(acc1) < len(acc1) and sum(acc2) > sum(acc1)
    with pytest.raises(ValueError, match="reference tempi must be positive"):
        M.tempo_scores([0.0], [120.0])


def test_tempo_matches_an_independent_definition() -> None:
    rng = np.random.default_rng(1)
    ref = rng.uniform(50, 200, 400)
    est = ref * rng.choice([1, 2, 3, 0.5, 1 / 3, 1.5], 400) * rng.uniform(0.93, 1.07, 400)
    out = M.tempo_scores(ref, est)

    def within(e: np.ndarray, target: np.ndarray) -> np.ndarray:
        return np.abs(e - target) <= 0.04 * target

    acc1 = within(est, ref)
    acc2 = np.any([within(est, ref * f) for f in (1, 2, 3, 0.5, 1 / 3)], axis=0)
    assert np.array_equal(out["acc1"].astype(bool), acc1)
    assert np.array_equal(out["acc2"].astype(bool), acc2)
    assert 0.05 < acc1.mean() < acc2.mean() < 0.95  # the case is not degenerate


# ---------------------------------------------------------------------------- chords


@pytest.mark.parametrize(
    ("label", "cls"),
    [
        ("C:maj", 0),
        ("A:min", 12 + 9),
        ("Bb:maj", 10),
        ("C:maj7", 0),
        ("A:min7", 21),
        ("G:7", 7),
        ("C:dim", -1),
        ("C:sus4", -1),
        ("N", 24),
        ("X", -1),
    ],
)
def test_chord_classes(label: str, cls: int) -> None:
    assert M.chord_class(label) == cls
    if cls >= 0:
        assert M.chord_class(M.CHORD_CLASSES[cls]) == cls


def test_chord_frames_round_trip_through_mir_eval_io(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    runs = rng.integers(3, 40, size=12)
    labels = [M.CHORD_CLASSES[k] for k in rng.integers(0, 25, size=12)]
    frames = [lab for lab, n in zip(labels, runs, strict=True) for _ in range(n)]
    duration = (len(frames) - 1) / FRAME_RATE + 0.01
    intervals, segs = M.frames_to_intervals(frames, FRAME_RATE, duration)
    assert intervals[0, 0] == 0.0 and intervals[-1, 1] == pytest.approx(duration)
    assert np.allclose(intervals[1:, 0], intervals[:-1, 1])  # the intervals tile the clip
    M.write_lab(tmp_path / "est.lab", intervals, segs)
    loaded, loaded_labels = mir_eval.io.load_labeled_intervals(str(tmp_path / "est.lab"))
    back = M.intervals_to_frames(loaded, loaded_labels, len(frames), FRAME_RATE)
    assert back == frames


def _random_reference(rng: np.random.Generator, span: tuple[float, float]):
    """Reference chords over ``span``: maj/min triads, sevenths, no-chord and labels that
    majmin leaves out (X, sus4, dim), at boundaries off the frame grid."""
    vocab = [*M.CHORD_CLASSES, "X", "C:sus4", "F#:dim", "A:min7", "Bb:maj7", "G:7", "E:min/5"]
    n = int(rng.integers(1, 12))
    cuts = np.sort(rng.uniform(*span, size=n - 1))
    bounds = np.concatenate([[span[0]], cuts, [span[1]]])
    labels = [vocab[k] for k in rng.integers(0, len(vocab), size=n)]
    return np.stack([bounds[:-1], bounds[1:]], axis=1), labels


@pytest.mark.parametrize("seed", range(40))
def test_chord_reference_scores_equal_mir_eval_path(seed: int) -> None:
    """ChordReference (comparison table, vectorised merge) against chord_scores, which runs
    mir_eval's adjust, merge, majmin/root and weighted accuracy on labels."""
    rng = np.random.default_rng(seed)
    n_frames = int(rng.integers(1, 400))
    duration = (n_frames - 1) / FRAME_RATE + 0.5 / FRAME_RATE
    # reference spans: the clip, shorter than it, longer than it, or starting late
    span = [
        (0.0, duration),
        (0.0, duration * 0.7),
        (0.0, duration + 1.3),
        (duration / 3, duration),
    ][seed % 4]
    ref_int, ref_lab = _random_reference(rng, span)
    runs = rng.integers(1, 30, size=n_frames)
    classes = np.repeat(rng.integers(0, 25, size=n_frames), runs)[:n_frames]
    est_int, est_lab = M.frames_to_intervals(
        [M.CHORD_CLASSES[c] for c in classes], FRAME_RATE, duration
    )
    expected = M.chord_scores(ref_int, ref_lab, est_int, est_lab)
    got = M.ChordReference(ref_int, ref_lab).scores(classes, FRAME_RATE, duration)
    for name in ("majmin", "root"):
        assert got[name][0] == pytest.approx(expected[name][0], abs=1e-12)
        assert got[name][1] == pytest.approx(expected[name][1], abs=1e-12)


def test_class_runs_cut_where_frames_to_intervals_cuts() -> None:
    rng = np.random.default_rng(5)
    classes = np.repeat(rng.integers(0, 25, size=30), rng.integers(1, 9, size=30))
    intervals, runs = M.class_runs(classes, FRAME_RATE, 3.0)
    ref_int, ref_lab = M.frames_to_intervals([M.CHORD_CLASSES[c] for c in classes], FRAME_RATE, 3.0)
    np.testing.assert_array_equal(intervals, ref_int)
    assert [M.CHORD_CLASSES[c] for c in runs] == ref_lab


def test_chord_reference_out_of_order_reference_goes_through_mir_eval() -> None:
    """A reference whose intervals are not sorted is scored by mir_eval's own merge."""
    ref_int = np.array([[2.0, 4.0], [0.0, 2.0]])
    ref_lab = ["A:min", "C:maj"]
    classes = np.array([0] * 60 + [21] * 65)
    with pytest.raises(ValueError, match="align"):
        M.chord_scores(
            ref_int,
            ref_lab,
            *M.frames_to_intervals([M.CHORD_CLASSES[c] for c in classes], FRAME_RATE, 4.0),
        )
    with pytest.raises(ValueError, match="align"):
        M.ChordReference(ref_int, ref_lab).scores(classes, FRAME_RATE, 4.0)


def test_chord_scores_perfect_half_and_root_only() -> None:
    ref_int = np.array([[0.0, 2.0], [2.0, 4.0]])
    ref_lab = ["C:maj", "A:min"]
    perfect = M.chord_scores(ref_int, ref_lab, ref_int, ref_lab)
    assert perfect["majmin"] == (1.0, 4.0) and perfect["root"] == (1.0, 4.0)
    half = M.chord_scores(ref_int, ref_lab, np.array([[0.0, 4.0]]), ["C:maj"])
    assert half["majmin"][0] == pytest.approx(0.5) and half["root"][0] == pytest.approx(0.5)
    minor = M.chord_scores(ref_int, ref_lab, ref_int, ["C:min", "A:min"])
    assert minor["majmin"][0] == pytest.approx(0.5)  # the quality of the first chord is wrong
    assert minor["root"][0] == pytest.approx(1.0)  # its root is right
    # reference chords outside maj/min are left out of majmin's weight
    dim = M.chord_scores(ref_int, ["C:dim", "A:min"], ref_int, ["C:dim", "A:min"])
    assert dim["majmin"] == (1.0, 2.0)


def test_frame_predictions_to_intervals_score_like_the_reference() -> None:
    ref_int = np.array([[0.0, 1.5], [1.5, 3.0], [3.0, 4.0]])
    ref_lab = ["G:maj", "E:min", "N"]
    n = 126
    frames = M.intervals_to_frames(ref_int, ref_lab, n, FRAME_RATE)
    est_int, est_lab = M.frames_to_intervals(frames, FRAME_RATE, 4.0)
    score, weight = M.chord_scores(ref_int, ref_lab, est_int, est_lab)["majmin"]
    # boundaries move by at most half a frame (16 ms) at each of the 2 changes
    assert score > 1 - 2 * 0.5 / FRAME_RATE / 4.0 - 1e-9 and weight == pytest.approx(4.0)


# ---------------------------------------------------------------------------- beats, onsets


def test_beat_f_measure_70ms_window() -> None:
    ref = np.arange(1.0, 10.0, 0.5)
    assert M.beat_scores(ref, ref) == {"f_measure": 1.0, "cmlt": 1.0, "amlt": 1.0}
    assert M.beat_scores(ref, ref + 0.05)["f_measure"] == 1.0  # inside 70 ms
    assert M.beat_scores(ref, ref + 0.1)["f_measure"] == 0.0  # 100 ms: outside
    assert M.beat_scores(ref, np.zeros(0))["f_measure"] == 0.0


def test_beat_continuity_forgives_double_tempo_only_in_amlt() -> None:
    ref = np.arange(1.0, 12.0, 0.5)
    double = np.arange(1.0, 12.0, 0.25)
    out = M.beat_scores(ref, double)
    assert out["amlt"] > 0.95  # mir_eval's double-tempo variant misses the last half beat
    assert out["cmlt"] == pytest.approx(0.0)
    # F: all 22 references hit, 22 of 44 estimates right -> P = 1/2, R = 1, F = 2/3
    assert out["f_measure"] == pytest.approx(2 / 3, abs=0.02)


def test_beat_tracker_recovers_beats_from_a_clean_activation() -> None:
    beats = np.arange(0.5, 12.0, 0.5)  # 120 BPM
    act = M.events_to_targets(beats, int(12.5 * FRAME_RATE), FRAME_RATE)
    est = M.activation_to_beats(act, FRAME_RATE)
    assert M.beat_scores(beats, est)["f_measure"] > 0.9
    assert M.activation_to_beats(np.zeros(100)).size == 0


def test_onsets_peak_picking_and_50ms_window() -> None:
    onsets = np.array([0.3, 0.71, 1.2, 2.05, 2.4])
    act = M.events_to_targets(onsets, 100, FRAME_RATE, widen=0.0)
    est = M.activation_to_onsets(act, FRAME_RATE)
    assert np.all(np.abs(est - onsets) <= 0.5 / FRAME_RATE + 1e-9)
    assert M.onset_scores(onsets, est)["f_measure"] == 1.0
    assert M.onset_scores(onsets, onsets + 0.06)["f_measure"] == 0.0
    assert M.activation_to_onsets(0.4 * act).size == 0  # below the 0.5 threshold


def test_events_to_targets_hand_case() -> None:
    t = M.events_to_targets(np.array([0.0, 3 / FRAME_RATE]), 6, FRAME_RATE)
    assert t.tolist() == [1.0, 0.5, 0.5, 1.0, 0.5, 0.0]


def test_load_events_reads_one_and_two_column_files(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("# beats\n0.5\n1.0\n")
    (tmp_path / "b.beats").write_text("0.5 1\n1.0 2\n")
    assert M.load_events(tmp_path / "a.txt").tolist() == [0.5, 1.0]
    assert M.load_events(tmp_path / "b.beats").tolist() == [0.5, 1.0]


# ---------------------------------------------------------------------------- bootstrap


def test_bootstrap_constant_and_weighted_means() -> None:
    mean, lo, hi = bootstrap_ci(np.full((3, 20), 0.7))
    assert (mean, lo, hi) == pytest.approx((0.7, 0.7, 0.7))
    scores = np.array([[1.0, 0.0], [1.0, 0.0]])
    mean, _, _ = bootstrap_ci(scores, weights=np.array([3.0, 1.0]))
    assert mean == pytest.approx(0.75)


def test_bootstrap_interval_has_the_binomial_width() -> None:
    rng = np.random.default_rng(3)
    n, p = 400, 0.6
    scores = (rng.random((1, n)) < p).astype(float)
    mean, lo, hi = bootstrap_ci(scores, n_boot=2000, seed=1)
    half = 1.96 * np.sqrt(mean * (1 - mean) / n)
    assert lo < mean < hi
    assert hi - lo == pytest.approx(2 * half, rel=0.15)
    # seed variation widens the interval when seeds disagree
    spread = np.stack([scores[0], np.roll(scores[0], 1) * 0.0 + 0.2])
    row = summary_row(spread, None, "clip", n_boot=500)
    assert row["std_seeds"] > 0.2 and row["ci_high"] - row["ci_low"] > hi - lo


def test_resampled_tag_scores_equal_sklearn_on_the_resampled_data() -> None:
    from vit1d.probing.results import resampled_tag_scores

    rng = np.random.default_rng(4)
    y = (rng.random((50, 4)) < 0.3).astype(int)
    y[0, 3], y[1, 3] = 1, 0
    s = rng.standard_normal((50, 4)) + y
    idx = rng.integers(0, 50, size=(6, 50))
    counts = np.zeros((6, 50))
    np.add.at(counts, (np.arange(6)[:, None], idx), 1.0)
    auc, ap = resampled_tag_scores(y, s, counts)
    for b in range(6):
        yb, sb = y[idx[b]], s[idx[b]]
        for k in range(4):
            if 0 < yb[:, k].sum() < 50:
                assert auc[b, k] == pytest.approx(roc_auc_score(yb[:, k], sb[:, k]))
                assert ap[b, k] == pytest.approx(average_precision_score(yb[:, k], sb[:, k]))
            else:
                assert np.isnan(auc[b, k]) and np.isnan(ap[b, k])


def test_bootstrap_tagging_point_is_sklearn_macro() -> None:
    from vit1d.probing.results import bootstrap_tagging

    rng = np.random.default_rng(5)
    y = (rng.random((80, 3)) < 0.4).astype(int)
    scores = [rng.standard_normal((80, 3)) + k * y for k in (1.0, 2.0)]
    out = bootstrap_tagging(y, scores, n_boot=300)
    for name, fn in (("roc_auc", roc_auc_score), ("map", average_precision_score)):
        mean, lo, hi = out[name]
        assert mean == pytest.approx(np.mean([fn(y, s) for s in scores]))
        assert lo < mean < hi and hi - lo < 0.3
    # the probing chapter hands over the per-tag scores it has already computed
    from vit1d.probing.metrics import tagging_scores

    points = [tagging_scores(y, s) for s in scores]
    assert bootstrap_tagging(y, scores, n_boot=300, points=points) == out
    shifted = [{m: p[m] + 0.1 for m in ("roc_auc", "map")} for p in points]
    moved = bootstrap_tagging(y, scores, n_boot=300, points=shifted)
    assert moved["roc_auc"][0] == pytest.approx(out["roc_auc"][0] + 0.1)
    assert moved["roc_auc"][1:] == out["roc_auc"][1:]  # the interval is the resamples'
    with pytest.raises(ValueError, match="1 seeds' point scores for 2"):
        bootstrap_tagging(y, scores, n_boot=10, points=points[:1])
