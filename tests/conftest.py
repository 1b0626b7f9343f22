"""Shared fixtures: small audio made here, never downloaded."""

from __future__ import annotations

import csv
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from vit1d.core import faults

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


def tone_pool_with_twins(root: Path, n: int, with_twins: list[int], seconds: float = 2.0) -> Path:
    """A pretraining pool of ``n`` tones (``pretrain/manifest.csv``) with a ``twins.csv`` giving
    the tracks ``with_twins`` a twin, the same tone an octave up; returns the manifest."""
    (root / "audio").mkdir(parents=True)
    (root / "pretrain").mkdir()
    t = np.arange(int(seconds * SR)) / SR
    rows, twin_rows = [], []
    for i in range(n):
        f0 = 220.0 * 2 ** (i / 12)
        sf.write(root / f"audio/p{i}.wav", 0.2 * np.sin(2 * np.pi * f0 * t), SR)
        rows.append([f"../audio/p{i}.wav", "train", f"pretrain/{i:05d}"])
        if i in with_twins:
            sf.write(root / f"audio/t{i}.wav", 0.2 * np.sin(4 * np.pi * f0 * t), SR)
            twin_rows.append([f"../audio/t{i}.wav", "train", f"pretrain/{i:05d}", "both"])
    for name, head, body in (
        ("manifest.csv", ["audio", "split", "render_id"], rows),
        ("twins.csv", ["audio", "split", "twin_of", "redraw"], twin_rows),
    ):
        with open(root / "pretrain" / name, "w", newline="") as fh:
            csv.writer(fh).writerows([head, *body])
    return root / "pretrain" / "manifest.csv"


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


@dataclass
class FaultPoint:
    """A fault point armed for a subprocess (:mod:`vit1d.core.faults`): run the process with
    ``env``, then :meth:`wait` until it stands at the point."""

    marker: Path
    env: dict[str, str]

    def wait(self, proc: subprocess.Popen, timeout: float = 300.0) -> None:
        """Return once the process wrote the marker; it then waits at the point to be killed.
        No race: the process cannot get past the point before the kill."""
        deadline = time.monotonic() + timeout
        while not self.marker.exists():
            assert proc.poll() is None, f"exited ({proc.returncode}) before its fault point"
            assert time.monotonic() < deadline, f"no fault point within {timeout:.0f} s"
            time.sleep(0.05)


@pytest.fixture
def fault_point(tmp_path: Path) -> Callable[[str], FaultPoint]:
    """``fault_point("checkpoint@2")``: the environment that stops a subprocess the second
    time it reaches the point ``checkpoint``, and the marker that says it is there."""

    def arm(spec: str) -> FaultPoint:
        marker = tmp_path / f"fault-{spec.replace('@', '-')}.marker"
        return FaultPoint(marker, {**os.environ, faults.ENV: f"{spec}={marker}"})

    return arm
