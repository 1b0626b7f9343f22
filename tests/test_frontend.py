"""LogMel against librosa, and the audio loader's checks."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import music_like

from vit1d import LogMel, UserError, load_audio
from vit1d.audio.frontend import AMIN, n_frames


def _signals(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(n)
    t = np.arange(n) / 16000
    return {
        "noise": (0.1 * rng.standard_normal(n)).astype(np.float32),
        "chirp": librosa.chirp(fmin=60, fmax=7000, sr=16000, length=n).astype(np.float32) * 0.5,
        "music": music_like(n / 16000, seed=3)[:n] if n >= 16000 else 0.3 * np.sin(440 * t),
    }


@pytest.mark.parametrize("n", [64000, 50001, 16000, 4000])
def test_mel_power_matches_librosa(n: int) -> None:
    logmel = LogMel()
    for name, y in _signals(n).items():
        y = np.asarray(y, dtype=np.float32)
        ref = librosa.feature.melspectrogram(y=y, sr=16000, n_fft=1024, hop_length=512, n_mels=128)
        ours = logmel.mel_power(torch.from_numpy(y)[None])[0].double().numpy()
        assert ours.shape == ref.shape == (128, n_frames(n))
        rel = np.max(np.abs(ours - ref)) / np.max(np.abs(ref))
        assert rel < 1e-3, f"{name}, {n} samples: relative error {rel:.2e}"
        big = ref > 1e-4 * ref.max()  # elementwise on bins that carry energy
        assert np.max(np.abs(ours[big] - ref[big]) / ref[big]) < 1e-3, name


def test_log_and_layout() -> None:
    y = _signals(64000)["music"]
    out = LogMel()(torch.from_numpy(np.stack([y, 0.5 * y])))
    assert out.shape == (2, 126, 128)
    ref = librosa.power_to_db(
        librosa.feature.melspectrogram(y=y, sr=16000, n_fft=1024, hop_length=512, n_mels=128),
        ref=1.0,
        amin=AMIN,
        top_db=None,
    ).T
    np.testing.assert_allclose(out[0].numpy(), ref, atol=5e-3)
    # halving the amplitude lowers every unfloored band by 20 log10(2) dB
    np.testing.assert_allclose((out[0] - out[1]).median().item(), 20 * np.log10(2), atol=1e-3)
    silence = LogMel()(torch.zeros(1, 16000))
    assert torch.all(silence == 10 * np.log10(AMIN))


def test_batched_equals_single() -> None:
    x = torch.from_numpy(np.stack([_signals(32000)[k] for k in ("noise", "chirp", "music")]))
    logmel = LogMel()
    batched = logmel(x)
    for i in range(3):
        torch.testing.assert_close(batched[i], logmel(x[i : i + 1])[0])


def test_load_audio_mono_resampled(tmp_path) -> None:
    t = np.arange(44100) / 44100
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 440 * t)], axis=1) * 0.5
    path = tmp_path / "a.flac"
    sf.write(path, stereo, 44100)
    y = load_audio(path)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) - 16000) <= 1
    spectrum = np.abs(np.fft.rfft(y))
    assert abs(np.argmax(spectrum) * 16000 / len(y) - 440) < 2


@pytest.mark.parametrize("problem", ["missing", "corrupt", "empty", "nan"])
def test_load_audio_bad_input(tmp_path, problem: str) -> None:
    path = tmp_path / f"{problem}.wav"
    if problem == "corrupt":
        path.write_bytes(b"RIFF....not really a wave file")
    elif problem == "empty":
        sf.write(path, np.zeros(0, dtype=np.float32), 16000)
    elif problem == "nan":
        sf.write(path, np.array([0.0, np.nan, 0.1], dtype=np.float32), 16000, subtype="FLOAT")
    with pytest.raises(UserError, match=str(path.name)):
        load_audio(path)
