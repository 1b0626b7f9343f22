"""Self-similarity matrices, their scores and novelty.

References: scikit-learn's cosine similarity, SciPy's Spearman rho and 2-D correlation,
hand-built block matrices, and audio whose chords and loudness are set by construction.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import correlate2d
from scipy.stats import spearmanr
from sklearn.metrics.pairwise import cosine_similarity

from vit1d.analysis import ssm

SR = 16_000
FR = SR / 512


def block_ssm(bounds: list[int], t: int) -> np.ndarray:
    seg = np.searchsorted(np.asarray(bounds), np.arange(t), side="right")
    return ssm.label_ssm(seg)


# ---- matrices ---------------------------------------------------------------------------------


def test_cosine_ssm_matches_sklearn():
    x = np.random.default_rng(0).normal(size=(40, 9))
    np.testing.assert_allclose(ssm.cosine_ssm(x), cosine_similarity(x), atol=1e-12)


def test_scalar_label_position_ssms():
    np.testing.assert_array_equal(ssm.scalar_ssm([0.0, 2.0, 5.0])[0], [0.0, -2.0, -5.0])
    np.testing.assert_array_equal(ssm.label_ssm(["C", "C", "G"]), [[1, 1, 0], [1, 1, 0], [0, 0, 1]])
    np.testing.assert_array_equal(ssm.position_ssm(3)[2], [-2, -1, 0])


def test_frame_labels_and_change_points():
    ints = np.array([[0.0, 1.0], [1.0, 2.0], [2.0, 3.0], [3.0, 4.0]])
    labs = ["C:maj", "C:maj", "G:maj", "N"]
    out = ssm.frame_labels(ints, labs, np.array([0.5, 1.5, 2.0, 3.99, 4.5]))
    assert list(out) == ["C:maj", "C:maj", "G:maj", "N", "N"]
    # a repeated label is no change
    np.testing.assert_array_equal(ssm.change_points(ints, labs), [2.0, 3.0])


# ---- scores and chance ----------------------------------------------------------------------


def test_rank_score_equals_scipy_spearman():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(30, 30))
    a = a + a.T
    b = np.round(rng.normal(size=(30, 30)), 1)  # ties
    b = b + b.T
    iu = np.triu_indices(30, 1)
    assert ssm.rank_score(a, b) == pytest.approx(spearmanr(a[iu], b[iu])[0], abs=1e-12)


def test_reference_scores_maximum_and_shuffled_scores_chance():
    rng = np.random.default_rng(2)
    ref = block_ssm([20, 45, 70, 100], 126)
    assert ssm.rank_score(ref, ref) == pytest.approx(1.0)
    # a monotone transform of the reference scores the maximum too (rank based)
    assert ssm.rank_score(np.exp(3 * ref), ref) == pytest.approx(1.0)
    shuffled = [ssm.rank_score(ssm.shuffle_ssm(ref, rng, "permute"), ref) for _ in range(20)]
    assert abs(np.mean(shuffled)) < 0.05
    assert ssm.chance_score(ref, ref, rng, n=20, mode="permute") == pytest.approx(0.0, abs=0.05)


def test_roll_chance_keeps_the_temporal_smoothness():
    """Two unrelated smooth SSMs agree through time proximity alone; the roll chance level
    contains that share, the permutation chance does not."""
    rng = np.random.default_rng(3)
    t = 100
    a = ssm.cosine_ssm(np.cumsum(rng.normal(size=(t, 8)), axis=0))
    b = ssm.cosine_ssm(np.cumsum(rng.normal(size=(t, 8)), axis=0))
    roll = ssm.chance_score(a, b, rng, n=30, mode="roll")
    perm = ssm.chance_score(a, b, rng, n=30, mode="permute")
    assert roll > perm + 0.1
    assert ssm.rank_score(a, b) - roll < ssm.rank_score(a, b) - perm


def test_rank_scores_stack_matches_single_scores():
    rng = np.random.default_rng(4)
    stack = np.stack([ssm.cosine_ssm(rng.normal(size=(25, 4))) for _ in range(3)])
    ref = ssm.cosine_ssm(rng.normal(size=(25, 4)))
    scores, chance = ssm.rank_scores(stack, ref, np.random.default_rng(0), n=5)
    np.testing.assert_allclose(scores, [ssm.rank_score(s, ref) for s in stack])
    single = ssm.chance_score(stack[1], ref, np.random.default_rng(0), n=5)
    assert chance[1] == pytest.approx(single)
    assert np.isnan(ssm.rank_score(np.ones((5, 5)), ref[:5, :5]))


def test_a_ranked_stack_serves_every_reference():
    # ranking a window's layers once (as the corpus analysis does) must give each reference's
    # Spearman rho (scipy) and the chance levels of ranking them again for it
    rng = np.random.default_rng(5)
    stack = np.stack([ssm.cosine_ssm(rng.normal(size=(30, 4))) for _ in range(4)])
    refs = [ssm.cosine_ssm(rng.normal(size=(30, 3))) for _ in range(3)]
    ranked = ssm.rank_stack(stack)
    iu = np.triu_indices(30, k=1)
    for ref in refs:
        scores, chance = ssm.rank_scores(ranked, ref, np.random.default_rng(1), n=4)
        again, chance_again = ssm.rank_scores(stack, ref, np.random.default_rng(1), n=4)
        rho = [spearmanr(s[iu], ref[iu]).statistic for s in stack]
        np.testing.assert_allclose(scores, rho, atol=1e-12)
        np.testing.assert_array_equal(scores, again)
        np.testing.assert_array_equal(chance, chance_again)
    with pytest.raises(ValueError, match="frames"):
        ssm.rank_scores(ranked, refs[0][:20, :20], rng)


# ---- novelty --------------------------------------------------------------------------------


def test_novelty_matches_scipy_correlate_on_the_diagonal():
    rng = np.random.default_rng(5)
    s = rng.normal(size=(40, 40))
    L = 5
    k = ssm.checkerboard_kernel(L)
    assert k.shape == (2 * L, 2 * L)
    assert np.abs(k).sum() == pytest.approx(1.0)
    for padding in ("constant", "symmetric"):
        padded = np.pad(s, L, mode=padding)
        full = correlate2d(padded, k, mode="valid")  # full[i, j] = sum K * padded[i:, j:]
        ref = np.diag(full)[:40]
        np.testing.assert_allclose(ssm.novelty_curve(s, L, padding=padding), ref, atol=1e-12)


def test_novelty_peaks_at_block_boundaries():
    bounds = [20, 45, 70, 100]
    nov = ssm.novelty_curve(block_ssm(bounds, 126), 8)
    peaks = [n for n in range(1, 125) if nov[n] > nov[n - 1] and nov[n] >= nov[n + 1]]
    assert peaks == bounds
    assert abs(nov[0]) < 1e-12  # a mirrored edge is no change


def test_boundary_f_measure_exact_and_shifted():
    ref = np.array([1.0, 2.5, 4.0])
    assert ssm.boundary_f_measure(ref, ref, 6.0)[0] == 1.0
    assert ssm.boundary_f_measure(ref, ref + 0.4, 6.0)[0] == 1.0  # inside 0.5 s
    assert ssm.boundary_f_measure(ref, ref + 0.7, 6.0)[0] == 0.0
    f, p, r = ssm.boundary_f_measure(ref, np.array([1.0, 3.3]), 6.0)
    assert (p, r) == (0.5, pytest.approx(1 / 3))


# ---- reference features on audio built with known content -------------------------------------

CHORDS = [
    (0.0, 1.0, "C:maj", (60, 64, 67)),
    (1.0, 2.0, "A:min", (57, 60, 64)),
    (2.0, 3.0, "F:maj", (53, 57, 60)),
    (3.0, 4.0, "G:maj", (55, 59, 62)),
]


def chord_audio(chords=CHORDS, seconds: float = 4.0, gains=None) -> np.ndarray:
    n = int(seconds * SR)
    y = np.zeros(n)
    t = np.arange(n) / SR
    for i, (start, end, _, notes) in enumerate(chords):
        seg = (t >= start) & (t < end)
        g = 1.0 if gains is None else gains[i]
        for m in notes:
            f0 = 440.0 * 2 ** ((m - 69) / 12)
            y[seg] += g * 0.1 * np.sin(2 * np.pi * f0 * t[seg])
    return y.astype(np.float32)


def test_chroma_names_the_triads():
    y = chord_audio()
    c = ssm.chroma(y)
    assert c.shape == (1 + y.size // 512, 12)
    for start, end, _, notes in CHORDS:
        mid = int((start + end) / 2 * FR)
        assert set(np.argsort(c[mid])[-3:]) == {m % 12 for m in notes}


def test_chroma_novelty_finds_the_chord_changes():
    y = chord_audio()
    nov = ssm.novelty_curve(ssm.cosine_ssm(ssm.chroma(y)), 8)
    from vit1d.analysis.attention import pick_peaks

    peaks = pick_peaks(nov, FR, delta=0.1, pre_max=0.2, post_max=0.2, pre_avg=0.5, post_avg=0.5)
    assert ssm.boundary_f_measure(np.array([1.0, 2.0, 3.0]), peaks, 4.0)[0] == 1.0


def test_rms_db_follows_the_level():
    y = chord_audio(gains=[1.0, 0.1, 1.0, 0.1])
    r = ssm.rms_db(y)
    mid = [int(s * FR) for s in (0.5, 1.5)]
    assert r[mid[0]] - r[mid[1]] == pytest.approx(20.0, abs=0.5)
    # loudness SSM against the loudness pattern itself scores the maximum
    assert ssm.rank_score(ssm.reference_ssm("rms", r), ssm.scalar_ssm(r)) == pytest.approx(1.0)


def test_reference_features_share_the_frame_grid():
    y = chord_audio(seconds=3.0)
    feats = ssm.reference_features(y)
    t = 1 + y.size // 512
    assert feats["chroma"].shape == (t, 12)
    assert feats["mfcc"].shape == (t, 19)
    assert feats["rms"].shape == (t,)
    assert feats["tempogram"].shape == (t, ssm.TEMPOGRAM_WIN - 1)


def test_tempogram_ssm_separates_two_tempi():
    """Clicks every 0.5 s, then every 0.32 s: the rhythm reference groups each half."""
    seconds = 12.0
    y = np.zeros(int(seconds * SR))
    burst = np.sin(2 * np.pi * 1000 * np.arange(400) / SR) * np.exp(-np.arange(400) / 80)
    for o in np.concatenate([np.arange(0.0, 6.0, 0.5), np.arange(6.0, seconds - 0.1, 0.32)]):
        y[int(o * SR) : int(o * SR) + 400] += burst
    tg = ssm.tempogram(y.astype(np.float32))
    s = ssm.reference_ssm("tempogram", tg)
    t = s.shape[0]
    half = (np.arange(t) >= t // 2).astype(int)
    # away from the change (the tempogram window straddles it), frames group by tempo
    keep = np.abs(np.arange(t) - t // 2) > ssm.TEMPOGRAM_WIN // 2 + 2
    assert ssm.rank_score(s[np.ix_(keep, keep)], ssm.label_ssm(half[keep])) > 0.5
