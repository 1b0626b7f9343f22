"""Recipe switches: view augmentations and hard-negative batches."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from vit1d.core.errors import UserError
from vit1d.pretrain.augment import augment_views, eq_curves
from vit1d.pretrain.config import AugmentConfig, Config, TrainConfig, load_config
from vit1d.pretrain.data import FLOOR_DB, PairSampler, read_manifest_column


def _views(n: int = 8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(-80, -10, size=(n, 50, 32)).astype(np.float32)


def test_gain_is_one_offset_per_view() -> None:
    x = _views()
    y = augment_views(x.copy(), AugmentConfig(gain_db=6.0), seed=0, step=3)
    d = y - x
    per_view = d.reshape(len(d), -1)
    np.testing.assert_allclose(per_view.std(axis=1), 0, atol=1e-4)
    assert np.all(np.abs(per_view[:, 0]) <= 6.0) and np.ptp(per_view[:, 0]) > 0.5


def test_eq_is_a_smooth_curve_over_bands_bounded_by_eq_db() -> None:
    rng = np.random.default_rng(0)
    curves = eq_curves(200, 128, 10.0, rng)
    assert np.abs(curves).max() <= 10.0 + 1e-9
    # smooth: neighbouring bands differ far less than the curve's range
    assert np.abs(np.diff(curves, axis=1)).max() < 0.1 * 2 * 10.0 * 4
    x = _views()
    y = augment_views(x.copy(), AugmentConfig(eq_db=10.0), seed=0, step=0)
    d = y - x
    np.testing.assert_allclose(
        d, np.broadcast_to(d[:, :1, :], d.shape), atol=1e-4
    )  # time-invariant


def test_noise_follows_the_power_domain_sum_and_keeps_the_signal_below() -> None:
    x = _views()
    y = augment_views(x.copy(), AugmentConfig(noise_snr_db=20.0, noise_prob=1.0), seed=1, step=0)
    assert np.all(y >= x - 1e-4)  # adding power never lowers a bin
    # average added power is about 20 dB (+-5, +-tilt) below the mean power
    added = (10 ** (y / 10) - 10 ** (x / 10)).mean(axis=(1, 2))
    ratio = 10 * np.log10((10 ** (x / 10)).mean(axis=(1, 2)) / added)
    assert np.all((ratio > 10) & (ratio < 30))


def test_augmentation_is_a_function_of_seed_and_step_and_keeps_silence() -> None:
    cfg = AugmentConfig(gain_db=6.0, eq_db=10.0)
    x = _views()
    x[0, 30:] = FLOOR_DB
    a = augment_views(x.copy(), cfg, seed=0, step=5)
    b = augment_views(x.copy(), cfg, seed=0, step=5)
    c = augment_views(x.copy(), cfg, seed=0, step=6)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert np.all(a[0, 30:] == FLOOR_DB) and a.min() >= FLOOR_DB
    assert augment_views(x.copy(), AugmentConfig(), 0, 0) is not None
    np.testing.assert_array_equal(augment_views(x.copy(), AugmentConfig(), 0, 0), x)


def test_augment_config_is_validated() -> None:
    with pytest.raises(UserError, match="augment.gain_db"):
        load_config("smoke", ["augment.gain_db=-1"])
    with pytest.raises(UserError, match="unknown config key 'augment.pitch_shift'"):
        load_config("smoke", ["augment.pitch_shift=2"])


def test_an_empty_override_is_the_empty_string() -> None:
    hard = {"data": {"group_by": "instrumentation"}}
    assert load_config(hard, ["data.group_by="]).data.group_by == ""
    # YAML's null (`group_by:` with nothing after it, or ~) means the same for a text key
    assert load_config({"data": {"group_by": None}}).data.group_by == ""
    assert load_config(hard, ["data.group_by=~"]).data.group_by == ""
    with pytest.raises(UserError, match=r"expects a number.*empty string"):
        load_config("smoke", ["data.max_distance_s="])
    with pytest.raises(UserError, match=r"expects an int, got None"):
        load_config("smoke", ["train.steps=~"])


def test_a_wrong_value_says_how_to_write_it() -> None:
    smoke = load_config("smoke")  # the example is the value the key had before the bad one
    cases = {
        "train.batch_size=": "expects an int, got '' (str) (an empty value is the empty "
        f"string, which only text keys take); fix the value, e.g. --set "
        f"train.batch_size={smoke.train.batch_size}",
        "train.batch_size=ten": "expects an int, got 'ten' (str); fix the value, e.g. --set "
        f"train.batch_size={smoke.train.batch_size}",
        "optim.lr=fast": f"expects a number, got 'fast' (str); fix the value, e.g. --set "
        f"optim.lr={smoke.optim.lr}",
        "train.compile=maybe": "expects true or false, got 'maybe' (str); fix the value, e.g. "
        f"--set train.compile={str(smoke.train.compile).lower()}",
        "model.head_dims=256": "expects a list of ints, got 256; write it as [a,b,...], e.g. "
        f"--set model.head_dims=[{','.join(map(str, smoke.model.head_dims))}]",
        "optim.betas=[0.9,x]": "expects a list of numbers, got 'x' (str) at position 1; fix "
        f"the value, e.g. --set optim.betas=[{','.join(map(str, smoke.optim.betas))}]",
        "data.group_by=3": "expects text, got 3 (int); fix the value, e.g. --set "
        "data.group_by=<text> (--set data.group_by= for none)",
    }
    assert smoke.data.group_by == ""  # the case above shows the way to write "none"
    for override, expected in cases.items():
        with pytest.raises(UserError) as err:
            load_config("smoke", [override])
        key = override.split("=")[0]
        assert str(err.value) == f"config key '{key}' in the overrides {expected}", override


def test_a_wrong_value_in_a_preset_file_says_how_to_write_it(tmp_path: Path) -> None:
    preset = tmp_path / "mine.yaml"
    preset.write_text("seed: one\ntrain:\n  steps: ten\n")
    with pytest.raises(
        UserError, match=rf"'seed' in .*mine.yaml expects an int.*'seed: {Config().seed}'"
    ):
        load_config(preset)
    preset.write_text("train:\n  steps: ten\n")
    steps = TrainConfig().steps
    with pytest.raises(UserError, match=rf"expects an int.*e.g. 'steps: {steps}' under 'train:'"):
        load_config(preset)


def test_grouped_batches_fill_from_as_few_groups_as_possible() -> None:
    groups = [f"g{i % 5}" for i in range(100)]  # 5 groups of 20 tracks
    sampler = PairSampler(np.full(100, 500), 16, 126, 10, seed=0, groups=groups)
    seen = set()
    for step in range(20):
        tracks = sampler.batch(step).tracks
        assert len(set(tracks)) == 16  # distinct tracks
        assert len({groups[t] for t in tracks}) == 1  # 16 <= 20: one group fills the batch
        seen.add(groups[tracks[0]])
    assert len(seen) > 2  # different steps visit different groups
    big = PairSampler(np.full(100, 500), 30, 126, 10, seed=0, groups=groups)
    tracks = big.batch(0).tracks
    assert len(set(tracks)) == 30 and len({groups[t] for t in tracks}) == 2
    np.testing.assert_array_equal(big.batch(4)[0], big.batch(4)[0])  # stateless


def test_group_column_errors(tmp_path: Path) -> None:
    path = tmp_path / "manifest.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["audio", "split", "instrumentation"])
        w.writerows([["a.wav", "train", "flute"], ["b.wav", "valid", "oboe"]])
    assert read_manifest_column(path, "instrumentation", "train") == ["flute"]
    with pytest.raises(UserError, match="no such column"):
        read_manifest_column(path, "timbre")
    with pytest.raises(UserError, match="group_by=''"):
        read_manifest_column(tmp_path / "nowhere", "instrumentation")
    with pytest.raises(UserError, match="disagree"):
        PairSampler(np.full(3, 500), 2, 126, 10, seed=0, groups=["a", "b"])


def test_reverb_tail_matches_an_explicit_exponential_convolution() -> None:
    from vit1d.audio.frontend import FRAME_RATE
    from vit1d.pretrain.augment import reverb_tails

    rng = np.random.default_rng(3)
    power = rng.exponential(1.0, size=(3, 50, 4))
    rt60 = np.array([0.5, 1.2, 0.0])
    wet = np.array([0.3, 0.8, 0.5])
    out = reverb_tails(power, rt60, wet)
    for i in range(2):
        r = 10.0 ** (-60.0 / 10.0 / (rt60[i] * FRAME_RATE))  # 60 dB of power in rt60 seconds
        k = np.arange(50)
        kernel = np.where(k >= 1, wet[i] * (1 - r) / r * r**k, 0.0)
        kernel[0] = 1.0  # the dry sound
        for b in range(4):
            want = np.convolve(power[i, :, b], kernel)[:50]
            np.testing.assert_allclose(out[i, :, b], want, rtol=1e-10)
    np.testing.assert_array_equal(out[2], power[2])  # RT60 0: dry


def test_reverb_of_an_impulse_holds_wet_times_its_energy_and_decays_60_db_in_rt60() -> None:
    from vit1d.audio.frontend import FRAME_RATE
    from vit1d.pretrain.augment import reverb_tails

    frames = 400
    power = np.zeros((1, frames, 2))
    power[0, 0, 0] = 1.0  # one impulse, in band 0 only
    out = reverb_tails(power, np.array([2.0]), np.array([0.4]))
    assert out[0, 1:, 0].sum() == pytest.approx(0.4, rel=1e-3)
    m = int(round(2.0 * FRAME_RATE))  # about one RT60 in frames: 60 dB x m / 62.5
    drop_db = 10 * np.log10(out[0, 1, 0] / out[0, 1 + m, 0])
    assert drop_db == pytest.approx(60.0 * m / (2.0 * FRAME_RATE), abs=1e-6)
    assert np.all(out[0, :, 1] == 0)  # no energy moves between bands


def test_reverb_augmentation_keeps_partials_in_their_bands() -> None:
    x = np.full((4, 60, 16), FLOOR_DB, dtype=np.float32)
    x[:, 10:20, 5] = -10.0  # a note in band 5, then silence
    cfg = AugmentConfig(reverb_s=1.5, reverb_wet=1.0)
    y = augment_views(x.copy(), cfg, seed=0, step=1)
    others = np.delete(y, 5, axis=2)
    assert np.all(others == FLOOR_DB)
    # the note rings on after it stops in the views whose room drew a tail; the floor is kept
    assert (y[:, 20:, 5] > FLOOR_DB).any() and y.min() >= FLOOR_DB
    np.testing.assert_array_equal(y, augment_views(x.copy(), cfg, seed=0, step=1))


def test_reverb_config_is_validated() -> None:
    with pytest.raises(UserError, match="augment.reverb_s"):
        load_config("smoke", ["augment.reverb_s=-1"])
