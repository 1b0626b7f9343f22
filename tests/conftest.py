"""Shared fixtures: small audio made here, never downloaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

SR = 16_000


def music_like(seconds: float, seed: int, sr: int = SR) -> np.ndarray:
    """A few harmonic notes with attack-decay envelopes over a little noise."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    y = 0.01 * rng.standard_normal(n)
    onset = 0.0
    while onset < seconds:
        dur = rng.uniform(0.2, 0.8)
        f0 = 110.0 * 2 ** (rng.integers(0, 36) / 12)
        seg = (t >= onset) & (t < onset + dur)
        tt = t[seg] - onset
        env = np.minimum(tt / 0.01, 1.0) * np.exp(-3.0 * tt)
        for h in range(1, 6):
            y[seg] += 0.2 / h * env * np.sin(2 * np.pi * h * f0 * tt)
        onset += dur
    return (0.5 * y / np.max(np.abs(y))).astype(np.float32)


@pytest.fixture(scope="session")
def audio_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight 10 s music-like tracks as WAV files at 16 kHz."""
    folder = tmp_path_factory.mktemp("audio")
    for i in range(8):
        sf.write(folder / f"track{i}.wav", music_like(10.0, seed=i), SR)
    return folder


@pytest.fixture(autouse=True)
def _grad_mode_is_restored():
    """Every test must leave autograd on: a library call that switches it off globally
    breaks whatever the user (or the next test) trains afterwards."""
    yield
    leaked = not torch.is_grad_enabled()
    torch.set_grad_enabled(True)
    assert not leaked, "this test (or the code it calls) left torch gradients disabled"
