"""scripts/gpu_check.py: its synthetic pool, and (slow) the whole check on a CPU."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_synthetic_pool_is_audible_music_like_audio(tmp_path: Path) -> None:
    folder = _script().write_synthetic_pool(tmp_path / "pool", tracks=3, seconds=5.0)
    files = sorted(folder.glob("*.wav"))
    assert len(files) == 3
    waves = []
    for f in files:
        y, sr = sf.read(f)
        assert sr == 16_000 and len(y) == 80_000
        assert 0.4 < np.max(np.abs(y)) <= 0.5 + 1e-4  # normalised, not clipped
        waves.append(y)
    assert not np.allclose(waves[0], waves[1])  # each track its own notes
    # harmonic notes: most energy below 4 kHz, and more than one note per track
    spectrum = np.abs(np.fft.rfft(waves[0])) ** 2
    freqs = np.fft.rfftfreq(len(waves[0]), 1 / 16_000)
    assert spectrum[freqs < 4000].sum() > 0.9 * spectrum.sum()
    again = _script().write_synthetic_pool(tmp_path / "pool", tracks=3, seconds=5.0)
    np.testing.assert_array_equal(sf.read(sorted(again.glob("*.wav"))[0])[0], waves[0])


@pytest.mark.slow
@pytest.mark.timeout(900)  # it compiles the model (torch.compile), minutes on a small CPU
def test_gpu_check_runs_on_a_cpu(tmp_path: Path) -> None:
    code = _script().main(
        [
            "--device",
            "cpu",
            "--out",
            str(tmp_path),
            "--tracks",
            "4",
            "--seconds",
            "6",
            "--steps",
            "2",
            "--fp16-steps",
            "0",
            "--eager-steps",
            "1",
            "--compile-modes",
            "default",
            "--scaling-pairs",
            "1,2",
            "--square",
            "64",
            "--copy-mib",
            "1",
            "--pairs",
            "2",
            "--bench-steps",
            "1",
        ]
    )
    assert code == 0
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["paper"]["steps"] == 2 and report["paper"]["views_per_s_median"] > 0
    assert report["paper_eager"]["config"]["train"]["compile"] is False
    assert report["paper"]["config"]["train"]["compile"] is True
    assert "bf16 compiled, fused AdamW" in report["variants"]["views_per_s"]
    assert [r["pairs"] for r in report["scaling"]] == [1, 2]
    s = report["summary"]
    assert s["paper_views_per_s"] == report["paper"]["views_per_s_median"]
    flops = report["paper"]["train_flops_per_step"] / report["paper"]["views_per_step"]
    assert s["paper_tflops"] == pytest.approx(s["paper_views_per_s"] * flops / 1e12, abs=0.06)
