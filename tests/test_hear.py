"""The HEAR 2021 API: shapes, timestamps against an independent formula, stitching and
pooling against a direct per-window computation, batch independence, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vit1d.audio.frontend import LogMel
from vit1d.core.errors import UserError
from vit1d.features import hear
from vit1d.models.checkpoint import load_pretrained, save_pretrained
from vit1d.models.model import ViT1D

SR = 16_000
TINY = {"dim": 32, "depth": 2, "heads": 2, "head": "none"}
WINDOW = 126  # the tiny model's max_frames (the default): 4 s
HOP = 125  # 4 s between window starts


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return save_pretrained(ViT1D(**TINY), tmp_path_factory.mktemp("hear-ckpt"))


@pytest.fixture(scope="module")
def model(checkpoint: Path) -> hear.HEARModel:
    return hear.load_model(str(checkpoint))


@pytest.fixture(scope="module")
def backbone(checkpoint: Path) -> ViT1D:
    return load_pretrained(checkpoint, head=False)


def _audio(seconds: float, n: int = 1, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(n, int(round(seconds * SR)), generator=gen)


def _expected_ms(n_samples: int) -> np.ndarray:
    """Frame centres in ms of a centred STFT with hop 512 at 16 kHz: frame i at sample 512 i."""
    return (np.arange(1 + n_samples // 512) * 512 / SR * 1000).astype(np.float32)


def _direct_windows(t: int) -> list[int]:
    """Window starts written out independently: every 4 s (125 frames: 64 000 samples / 512),
    each window 126 frames long, then one ending at t (the feature cache's defaults)."""
    if t <= WINDOW:
        return [0]
    starts = list(range(0, t - WINDOW + 1, HOP))
    return starts if starts[-1] + WINDOW == t else [*starts, t - WINDOW]


def _direct(backbone: ViT1D, wave: torch.Tensor, layer: int) -> tuple[np.ndarray, list]:
    """Per-window hidden states ``(1 + w, D)`` of one sound, each window run alone."""
    with torch.no_grad():
        mel = LogMel()(wave[None])[0]
        t = mel.shape[0]
        outs = []
        for s in _direct_windows(t):
            h = backbone(mel[None, s : s + WINDOW], output_hidden_states=True).hidden_states
            outs.append((s, h[layer][0].numpy()))
    return mel.numpy(), outs


def test_load_model_attributes(model: hear.HEARModel) -> None:
    assert isinstance(model, torch.nn.Module)
    assert model.sample_rate == 16000
    assert model.scene_embedding_size == 32
    assert model.timestamp_embedding_size == 32
    assert model.layer == hear.default_layer(2) == 1
    assert model.pooling == "avg"
    assert hear.default_layer(12) == 8
    assert not model.training


@pytest.mark.parametrize("seconds", [1.0, 4.0, 9.3])
def test_shapes(model: hear.HEARModel, seconds: float) -> None:
    audio = _audio(seconds, n=3)
    t = 1 + audio.shape[1] // 512
    scene = hear.get_scene_embeddings(audio, model)
    emb, ts = hear.get_timestamp_embeddings(audio, model)
    assert scene.shape == (3, model.scene_embedding_size)
    assert emb.shape == (3, t, model.timestamp_embedding_size)
    assert ts.shape == (3, t)
    assert scene.dtype == emb.dtype == torch.float32
    for x in (scene, emb, ts):
        assert torch.isfinite(x).all()
        assert not x.is_inference() and not x.requires_grad
    assert torch.is_grad_enabled()


@pytest.mark.parametrize("seconds", [1.0, 4.0, 9.3, 60.0])
def test_timestamps_are_frame_centres(model: hear.HEARModel, seconds: float) -> None:
    audio = _audio(seconds, n=2)
    emb, ts = hear.get_timestamp_embeddings(audio, model)
    expected = _expected_ms(audio.shape[1])
    assert ts.shape == (2, len(expected)) and emb.shape[1] == len(expected)
    for row in ts.numpy():
        np.testing.assert_array_equal(row, expected)
        assert np.all(np.diff(row) > 0)
        np.testing.assert_array_equal(np.diff(row), 32.0)
    if seconds == 60.0:
        assert ts[0, -1].item() == 60000.0  # 1876 frames, the last at exactly 60 s


def test_timestamps_do_not_drift_over_hours() -> None:
    n = 10 * 3600 * 16000 // 512 + 1  # ten hours of frames, without running the model
    ts = hear.timestamps_ms(n)[0].numpy().astype(np.float64)
    np.testing.assert_array_equal(ts, np.arange(n) * 32.0)


@pytest.mark.parametrize(
    ("seconds", "starts"),
    [(1.0, [0]), (4.0, [0]), (9.3, [0, 125, 165]), (251 * 512 / SR, [0, 125, 126]), (20.0, None)],
)
def test_stitching_matches_windows_run_alone(
    model: hear.HEARModel, backbone: ViT1D, seconds: float, starts: list[int] | None
) -> None:
    audio = _audio(seconds, n=2, seed=1)
    emb, _ = hear.get_timestamp_embeddings(audio, model)
    for j in range(2):
        mel, windows = _direct(backbone, audio[j], model.layer)
        t = mel.shape[0]
        if starts is not None:
            assert [s for s, _ in windows] == starts
        expected = np.full((t, 32), np.nan)
        for s, h in windows:  # a frame comes from the first window covering it
            for k in range(h.shape[0] - 1):
                if np.isnan(expected[s + k, 0]):
                    expected[s + k] = h[1 + k]
        assert not np.isnan(expected).any()
        np.testing.assert_allclose(emb[j].numpy(), expected, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("pooling", ["avg", "cls", "seq"])
@pytest.mark.parametrize("seconds", [1.0, 9.3])
def test_scene_is_mean_of_window_pooling(
    checkpoint: Path, backbone: ViT1D, pooling: str, seconds: float
) -> None:
    model = hear.load_model(str(checkpoint), pooling=pooling)
    audio = _audio(seconds, n=2, seed=2)
    scene = hear.get_scene_embeddings(audio, model).numpy()
    for j in range(2):
        _, windows = _direct(backbone, audio[j], model.layer)
        vectors = []
        for _, h in windows:
            cls, seq = h[0], h[1:].mean(axis=0)
            vectors.append({"cls": cls, "seq": seq, "avg": (cls + seq) / 2}[pooling])
        np.testing.assert_allclose(scene[j], np.mean(vectors, axis=0), atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("layer", [0, 2, -1])
def test_layer_choice(checkpoint: Path, backbone: ViT1D, layer: int) -> None:
    model = hear.load_model(str(checkpoint), layer=layer)
    assert model.layer == layer % 3
    audio = _audio(2.0, seed=3)
    emb, _ = hear.get_timestamp_embeddings(audio, model)
    _, [(_, h)] = _direct(backbone, audio[0], layer)
    np.testing.assert_allclose(emb[0].numpy(), h[1:], atol=2e-5, rtol=1e-5)


def test_batch_independence(model: hear.HEARModel) -> None:
    audio = torch.cat([_audio(9.3, seed=s) for s in range(3)])
    scene = hear.get_scene_embeddings(audio, model)
    emb, _ = hear.get_timestamp_embeddings(audio, model)
    perm = [2, 0, 1]
    scene_p = hear.get_scene_embeddings(audio[perm], model)
    for j in range(3):
        alone_scene = hear.get_scene_embeddings(audio[j : j + 1], model)
        alone_emb, _ = hear.get_timestamp_embeddings(audio[j : j + 1], model)
        torch.testing.assert_close(scene[j], alone_scene[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(emb[j], alone_emb[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(scene_p[perm.index(j)], scene[j], atol=1e-5, rtol=1e-5)
    # a small forward batch (windows split across passes) changes nothing either
    model.batch_size = 2
    try:
        torch.testing.assert_close(
            hear.get_timestamp_embeddings(audio, model)[0], emb, atol=1e-5, rtol=1e-5
        )
    finally:
        model.batch_size = 64


def test_grad_mode_is_restored(model: hear.HEARModel) -> None:
    audio = _audio(1.0)
    with torch.no_grad():
        hear.get_scene_embeddings(audio, model)
        assert not torch.is_grad_enabled()
    hear.get_timestamp_embeddings(audio, model)
    assert torch.is_grad_enabled()


@pytest.mark.parametrize(
    ("audio", "match"),
    [
        (torch.zeros(16000), r"audio\[None\]"),
        (torch.zeros(2, 2, 16000), "mono"),
        (torch.zeros(16000, 2), "n_samples, channels"),
        (torch.zeros(1, 16000, dtype=torch.int16), "floating point"),
        (np.zeros((1, 16000), dtype=np.float32), "torch.from_numpy"),
        (torch.zeros(1, 0), "empty"),
        (torch.full((1, 16000), float("nan")), "NaN"),
    ],
)
def test_bad_audio_is_refused(model: hear.HEARModel, audio, match: str) -> None:
    for call in (hear.get_scene_embeddings, hear.get_timestamp_embeddings):
        with pytest.raises(UserError, match=match):
            call(audio, model)


def test_wrong_sample_rate_and_model(model: hear.HEARModel, backbone: ViT1D) -> None:
    with pytest.raises(UserError, match="resample"):
        hear.get_scene_embeddings(_audio(1.0), model, sample_rate=44100)
    hear.get_scene_embeddings(_audio(1.0), model, sample_rate=16000)
    with pytest.raises(UserError, match="load_model"):
        hear.get_scene_embeddings(_audio(1.0), backbone)


def test_checkpoint_paths(checkpoint: Path, tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(UserError, match="checkpoint not found"):
        hear.load_model(str(tmp_path / "nowhere"))
    with pytest.raises(UserError, match="no config.json"):
        hear.load_model(str(tmp_path))
    monkeypatch.setenv("VIT1D_REFERENCE", str(tmp_path / "checkpoints" / "reference"))
    with pytest.raises(UserError, match="VIT1D_REFERENCE=.* holds no checkpoint"):
        hear.load_model()
    monkeypatch.setenv("VIT1D_REFERENCE", str(checkpoint))
    assert hear.load_model().scene_embedding_size == 32  # "" -> the reference checkpoint
    assert hear.load_model(str(checkpoint / "model.safetensors")).layer == 1


@pytest.mark.parametrize(
    ("kwargs", "match"), [({"layer": 3}, "layer"), ({"pooling": "max"}, "pooling")]
)
def test_bad_options(checkpoint: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(UserError, match=match):
        hear.load_model(str(checkpoint), **kwargs)


def test_embed_a_folder_from_the_command_line(
    checkpoint: Path, model: hear.HEARModel, tmp_path: Path
) -> None:
    """`vit1d embed --audio`: one row per readable file (recursive), equal to the HEAR API
    called on that file; timestamps per file; unreadable files listed; re-runs reuse files."""
    import csv
    import json

    import soundfile as sf

    from vit1d.cli import main

    folder = tmp_path / "music"
    (folder / "live").mkdir(parents=True)
    waves = {"a.wav": _audio(5.0, seed=1)[0], "live/b.flac": _audio(9.0, seed=2)[0]}
    for name, wave in waves.items():
        sf.write(folder / name, wave.numpy(), 16_000)
    (folder / "broken.mp3").write_bytes(b"<html>not audio</html>")
    out = tmp_path / "emb"
    args = ["embed", "--audio", str(folder), "--checkpoint", str(checkpoint), "--out", str(out)]
    assert main([*args, "--timestamps", "--no-progress"]) == 0

    with open(out / "files.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["file"] for r in rows] == ["a.wav", "broken.mp3", "live/b.flac"]
    assert rows[1]["skipped"] and rows[1]["row"] == ""
    scene = np.load(out / "scene.npy")
    assert scene.shape == (2, model.scene_embedding_size)
    for r in rows:
        if r["skipped"]:
            continue
        wave = torch.from_numpy(sf.read(folder / r["file"], dtype="float32")[0])[None]
        expect = hear.get_scene_embeddings(wave, model)[0].numpy()
        np.testing.assert_allclose(scene[int(r["row"])], expect, rtol=1e-4, atol=1e-5)
        saved = np.load(out / "files" / f"{r['file']}.npz")
        np.testing.assert_array_equal(saved["timestamps_ms"], _expected_ms(wave.shape[1]))
        assert saved["embeddings"].shape == (len(_expected_ms(wave.shape[1])), scene.shape[1])
        assert float(r["seconds"]) == pytest.approx(wave.shape[1] / 16_000, abs=1e-3)
    report = json.loads((out / "embed.json").read_text())
    assert report["layer"] == model.layer and report["skipped"] == ["broken.mp3"]

    stamp = (out / "files" / "a.wav.npz").stat().st_mtime_ns
    assert main([*args, "--no-progress"]) == 0  # reuses what is there
    assert (out / "files" / "a.wav.npz").stat().st_mtime_ns == stamp
    assert main(["embed", "--audio", str(folder), "--out", str(out), "--logmel"]) == 2
    assert main([*args, "--layer", "0", "--no-progress"]) == 2  # other layer, same folder
