"""The audio grid (``vit1d.audio.grid``): declared once, torch-free, the front end's own."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import librosa
import numpy as np
import torch

from vit1d.audio import frontend, grid

SRC = Path(__file__).resolve().parents[1] / "src" / "vit1d"


def test_the_front_end_computes_on_the_grid() -> None:
    """A second of audio gives 1 + sr // hop frames of N_MELS bands, as librosa frames it."""
    mel = frontend.LogMel()(torch.zeros(1, grid.SAMPLE_RATE))
    n = librosa.feature.melspectrogram(
        y=np.zeros(grid.SAMPLE_RATE),
        sr=grid.SAMPLE_RATE,
        n_fft=grid.N_FFT,
        hop_length=grid.HOP_LENGTH,
        n_mels=grid.N_MELS,
    ).shape
    assert tuple(mel.shape[1:]) == (n[1], n[0])
    assert grid.FRAME_RATE == grid.SAMPLE_RATE / grid.HOP_LENGTH == 31.25


def test_metrics_analyses_and_corpus_read_the_grid_without_torch() -> None:
    code = (
        "import sys, vit1d.audio.grid, vit1d.probing.metrics, vit1d.analysis.ssm, vit1d.analysis.attention\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _grid_literals(tree: ast.AST) -> list[int]:
    """Module-level assignments of 16 kHz or of 16 kHz / 512 (the grid written out again)."""
    lines = []
    for node in tree.body:  # type: ignore[attr-defined]
        if not isinstance(node, (ast.Assign, ast.AnnAssign)) or node.value is None:
            continue
        for sub in ast.walk(node.value):
            if isinstance(sub, ast.Constant) and sub.value in (16_000, 16_000.0, 31.25):
                lines.append(node.lineno)
    return lines


def test_the_grid_is_declared_once() -> None:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel != "audio/grid.py":
            found += [f"{rel}:{n}" for n in _grid_literals(ast.parse(path.read_text()))]
    assert not found, f"import these from vit1d.audio.grid instead: {found}"
