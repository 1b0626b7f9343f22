"""Attention maps, rollout and onset curves.

References are independent of the code under test: explicit loops and NumPy formulas for
the curves, ``np.linalg.matrix_power`` for the rollout, hand-counted hits for mir_eval, and
audio with onsets placed by construction.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vit1d.analysis import attention as att

FR = 16_000 / 512
SR = 16_000


def onset_frames(onsets: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(onsets) * FR).astype(int)


def block_attention(onsets: np.ndarray, t: int, cls_share: float = 0.1) -> np.ndarray:
    """A (1+T, 1+T) attention map in which each frame attends uniformly to the frames of its
    own note (notes start at the onset frames) and gives ``cls_share`` to the class token."""
    idx = onset_frames(onsets)
    note = np.searchsorted(idx, np.arange(t), side="right")
    f = (note[:, None] == note[None, :]).astype(float)
    f /= f.sum(axis=1, keepdims=True)
    a = np.zeros((t + 1, t + 1))
    a[1:, 1:] = (1 - cls_share) * f
    a[1:, 0] = cls_share
    a[0] = 1.0 / (t + 1)
    return a


ONSETS = np.array([0.32, 0.96, 1.6, 2.24, 3.04, 3.52])


# ---- the scoring pipeline: curve -> peaks -> mir_eval -------------------------------------


def test_impulse_train_scores_one_and_shifted_scores_low():
    curve = np.zeros(126)
    curve[onset_frames(ONSETS)] = 1.0
    f, p, r = att.score_curve(curve, ONSETS, FR)
    assert (f, p, r) == (1.0, 1.0, 1.0)
    # 4 frames = 128 ms late: outside the 50 ms window for every onset
    f_late, _, _ = att.score_curve(np.roll(curve, 4), ONSETS, FR)
    assert f_late < 0.2
    # one frame (32 ms) late is still inside the window
    assert att.score_curve(np.roll(curve, 1), ONSETS, FR)[0] == 1.0


def test_pick_peaks_times_and_threshold():
    curve = np.zeros(100)
    curve[[10, 40, 70]] = [1.0, 0.5, 0.04]
    peaks = att.pick_peaks(curve, FR, delta=0.1)
    np.testing.assert_allclose(peaks, np.array([10, 40]) / FR)
    assert att.pick_peaks(np.ones(50), FR).size == 0  # a flat curve has no onsets


def test_onset_f_measure_counts_hits_by_hand():
    ref = np.array([1.0, 2.0, 3.0, 4.0])
    est = np.array([1.04, 2.06, 3.0, 3.01, 5.0])  # hits: 1.04, 3.0 (3.01 is a duplicate)
    f, p, r = att.onset_f_measure(ref, est)
    assert p == pytest.approx(2 / 5)
    assert r == pytest.approx(2 / 4)
    assert f == pytest.approx(2 * (2 / 5) * (2 / 4) / (2 / 5 + 2 / 4))
    assert att.onset_f_measure(ref, np.zeros(0))[0] == 0.0


def click_track(onsets: np.ndarray, seconds: float) -> np.ndarray:
    """Decaying 1 kHz tone bursts starting at ``onsets`` over faint noise."""
    rng = np.random.default_rng(0)
    n = int(seconds * SR)
    y = 0.001 * rng.standard_normal(n)
    t = np.arange(int(0.15 * SR)) / SR
    burst = np.sin(2 * np.pi * 1000 * t) * np.exp(-t / 0.03)
    for o in onsets:
        s = int(o * SR)
        y[s : s + burst.size] += burst[: n - s]
    return y.astype(np.float32)


def test_spectral_flux_on_known_onsets_is_on_the_frame_grid():
    y = click_track(ONSETS, 4.0)
    flux = att.spectral_flux(y)
    assert flux.shape == (1 + y.size // 512,)
    f, _, recall = att.score_curve(flux, ONSETS, FR)
    assert recall == 1.0 and f > 0.9  # every onset found (librosa's flux peaks <= 1 frame late)
    assert att.score_curve(flux, ONSETS + 0.2, FR)[0] < 0.2


# ---- onset curves on a hand-made attention map --------------------------------------------


def test_curves_match_loop_formulas():
    rng = np.random.default_rng(1)
    a = rng.random((21, 21))
    a /= a.sum(axis=1, keepdims=True)
    t = 20
    received = [sum(a[1 + i, 1 + j] for i in range(t)) / t for j in range(t)]
    np.testing.assert_allclose(att.received_attention(a), received)
    np.testing.assert_allclose(att.cls_attention(a), a[0, 1:])
    change = [0.0] + [
        0.5 * sum(abs(a[1 + i, 1 + j] - a[i, 1 + j]) for j in range(t)) for i in range(1, t)
    ]
    np.testing.assert_allclose(att.row_change(a), change)


@pytest.mark.parametrize("method", ["row_change", "checkerboard"])
def test_note_blocks_give_onsets(method):
    a = block_attention(ONSETS, 126)
    curve = att.onset_curve(a, method)
    assert att.score_curve(curve, ONSETS, FR)[0] == 1.0


def test_unknown_curve_is_rejected():
    with pytest.raises(ValueError, match="unknown onset curve"):
        att.onset_curve(np.eye(5), "nope")


# ---- rollout -------------------------------------------------------------------------------


def test_rollout_matches_matrix_power_for_a_repeated_layer():
    rng = np.random.default_rng(2)
    a = rng.random((2, 9, 9))
    a /= a.sum(axis=-1, keepdims=True)
    layers = np.stack([a] * 5)  # (L=5, H=2, 9, 9), the same map in every layer
    mixed = 0.5 * a.mean(axis=0) + 0.5 * np.eye(9)
    roll = att.attention_rollout(layers)
    for layer in range(5):
        np.testing.assert_allclose(roll[layer], np.linalg.matrix_power(mixed, layer + 1))
    np.testing.assert_allclose(roll.sum(axis=-1), 1.0)


def test_rollout_of_identity_attention_is_identity():
    layers = np.broadcast_to(np.eye(6), (3, 2, 6, 6))
    np.testing.assert_allclose(att.attention_rollout(layers), np.broadcast_to(np.eye(6), (3, 6, 6)))


# ---- a real (tiny) model, window by window ---------------------------------------------------


def test_windows_cover_the_clip():
    assert att.frame_windows(300, 126) == [(0, 126), (126, 252), (252, 300)]
    assert att.frame_windows(126, 126) == [(0, 126)]


def test_run_windows_and_clip_curves_with_a_tiny_model():
    from vit1d.models.model import ViT1D

    torch.manual_seed(0)
    model = ViT1D(dim=16, depth=2, heads=2, max_frames=20, head="none").eval()
    mel = np.random.default_rng(0).normal(-40, 20, size=(45, 128)).astype(np.float32)
    wins = att.run_windows(model, mel)
    assert [w.start for w in wins] == [0, 20, 40]
    assert wins[0].attentions.shape == (2, 2, 21, 21)
    assert wins[2].attentions.shape == (2, 2, 6, 6)
    assert wins[0].hidden.shape == (3, 20, 16)
    np.testing.assert_allclose(wins[1].attentions.sum(-1), 1.0, atol=1e-5)
    # the maps are the model's own: compare one window with a direct forward pass
    with torch.no_grad():
        ref = model(torch.from_numpy(mel[20:40])[None], output_attentions=True).attentions[1]
    np.testing.assert_allclose(wins[1].attentions[1], ref[0].numpy(), atol=1e-6)
    curves = att.clip_onset_curves(wins)
    assert len(curves) == len(att.CURVES) * 2 * (2 + 2)  # methods x layers x (heads+mean+rollout)
    assert all(c.shape == (45,) for c in curves.values())
    # each window's curve is computed on its own map
    np.testing.assert_allclose(
        curves[("cls", 2, "1")][20:40], wins[1].attentions[1, 1, 0, 1:], rtol=1e-6
    )
