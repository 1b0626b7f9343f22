"""Extraction: windows, pooling and stitching against a direct computation; the cache is
float16, memory-mapped, reused and robust to interruption; the baselines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from vit1d.audio.frontend import FRAME_RATE, SAMPLE_RATE, LogMel, load_audio, n_frames
from vit1d.core.errors import UserError
from vit1d.features import hear
from vit1d.features.embed import embed, model_fingerprint
from vit1d.features.sources import ModelSpec, random_model
from vit1d.features.windows import frame_spans, window_starts
from vit1d.models.checkpoint import load_pretrained, save_pretrained
from vit1d.models.model import ViT1D

TINY = {"dim": 32, "depth": 2, "heads": 2, "head": "none"}


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return save_pretrained(ViT1D(**TINY), tmp_path_factory.mktemp("ckpt"))


def test_window_starts_hand_cases() -> None:
    assert window_starts(126, 126, 125) == [0]
    assert window_starts(50, 126, 125) == [0]
    assert window_starts(313, 126, 125) == [0, 125, 187]  # last window aligned to the end
    assert window_starts(251, 126, 125) == [0, 125]
    assert window_starts(300, 126, 63) == [0, 63, 126, 174]
    with pytest.raises(UserError):
        window_starts(300, 0, 1)


def _direct(model: ViT1D, mel: torch.Tensor, window: int, hop: int) -> tuple:
    """Reference: run every window separately and combine with explicit loops; a frame
    keeps the tokens of the first window that reaches it."""
    t = mel.shape[0]
    frames = np.zeros((model.depth + 1, t, model.dim))
    filled = np.zeros(t, dtype=bool)
    cls, seq = [], []
    for s in window_starts(t, window, hop):
        with torch.no_grad():
            hidden = model(mel[None, s : s + window], output_hidden_states=True).hidden_states
        h = torch.stack(hidden)[:, 0].numpy()  # (L, 1 + w, D)
        cls.append(h[:, 0])
        seq.append(h[:, 1:].mean(axis=1))
        for k in range(h.shape[1] - 1):
            if not filled[s + k]:
                frames[:, s + k] = h[:, 1 + k]
                filled[s + k] = True
    assert filled.all()
    cls_m, seq_m = np.mean(cls, axis=0), np.mean(seq, axis=0)
    return cls_m, seq_m, (cls_m + seq_m) / 2, frames


def test_frame_spans_hand_cases() -> None:
    assert frame_spans([0], 50) == [(0, 50)]
    assert frame_spans([0, 125, 187], 126) == [(0, 126), (126, 251), (251, 313)]
    assert frame_spans([0, 63, 126, 174], 126) == [(0, 126), (126, 189), (189, 252), (252, 300)]


def test_feature_cache_and_hear_give_the_same_frame_tokens(tmp_path: Path) -> None:
    """One windowing rule: a 60 s clip (fifteen 4 s windows and an end-aligned one) gives the
    same per-frame tokens through the feature cache and through the HEAR API."""
    torch.manual_seed(4)
    ckpt = save_pretrained(ViT1D(**TINY), tmp_path / "ckpt")
    rng = np.random.default_rng(4)
    seconds = 60.3  # not a whole number of windows: the last one overlaps
    wave = (0.1 * rng.standard_normal(int(seconds * SAMPLE_RATE))).astype(np.float32)
    sf.write(tmp_path / "long.wav", wave, SAMPLE_RATE, subtype="FLOAT")
    emb = embed(
        ckpt,
        [tmp_path / "long.wav"],
        cache_dir=tmp_path / "cache",
        frames=True,
        precision="fp32",
        progress=False,
    )
    model = hear.load_model(str(ckpt))
    tokens, _ = hear.get_timestamp_embeddings(torch.from_numpy(wave)[None], model)
    stored = emb.frames(model.layer)[0].astype(np.float32)
    assert stored.shape == tuple(tokens.shape[1:]) == (n_frames(len(wave)), 32)
    scale = float(np.abs(stored).max())
    np.testing.assert_allclose(stored, tokens[0].numpy(), atol=2e-3 * scale)


@pytest.mark.parametrize("hop_s", [4.0, 2.0])
def test_pooling_and_stitching_match_a_direct_computation(
    audio_dir: Path, tiny_checkpoint: Path, tmp_path: Path, hop_s: float
) -> None:
    path = audio_dir / "track0.wav"
    emb = embed(
        tiny_checkpoint,
        [path],
        cache_dir=tmp_path,
        frames=True,
        hop_s=hop_s,
        precision="fp32",
        progress=False,
    )
    wave = load_audio(path)
    mel = LogMel()(torch.from_numpy(wave)[None])[0]
    assert emb.n_frames[0] == n_frames(len(wave)) == mel.shape[0] == 313
    assert emb.frame_times(0)[5] == pytest.approx(5 / FRAME_RATE)
    model = load_pretrained(tiny_checkpoint, head=False)
    cls, seq, avg, frames = _direct(model, mel, 126, int(round(hop_s * FRAME_RATE)))
    assert emb.layers == [0, 1, 2] and emb.poolings == ["cls", "seq", "avg"]
    for layer in emb.layers:
        scale = np.abs(frames[layer]).max()
        for name, ref in (("cls", cls), ("seq", seq), ("avg", avg)):
            got = emb.pooled(layer, name)[0]
            assert np.allclose(got, ref[layer], atol=2e-3 * scale), (layer, name)
        stored = emb.frames(layer)[0]
        assert stored.dtype == np.float16 and stored.shape == (313, 32)
        assert np.allclose(stored, frames[layer], atol=2e-3 * scale)


def test_cache_is_reused_and_tracks_file_changes(
    audio_dir: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    src = sorted(audio_dir.glob("*.wav"))[:3]
    files = []
    for p in src:  # copies we may modify
        files.append(tmp_path / p.name)
        files[-1].write_bytes(p.read_bytes())
    cache = tmp_path / "cache"
    first = embed(tiny_checkpoint, files, cache_dir=cache, precision="fp32", progress=False)
    assert first.provenance["computed_files"] == 3
    assert isinstance(first._store.shards[0].pooled, np.memmap)
    again = embed(
        tiny_checkpoint, files + files[:1], cache_dir=cache, precision="fp32", progress=False
    )
    assert again.provenance["computed_files"] == 0 and len(again) == 4
    assert np.array_equal(again.pooled(2, "avg")[:3], first.pooled(2, "avg"))
    assert np.array_equal(again.pooled(2, "avg")[3], first.pooled(2, "avg")[0])
    # frames were not stored: asking for them computes them
    with_frames = embed(
        tiny_checkpoint, files[:1], cache_dir=cache, frames=True, precision="fp32", progress=False
    )
    assert with_frames.provenance["computed_files"] == 1
    # a changed file is recomputed, the others are not
    sf.write(files[1], 0.5 * load_audio(files[1]), SAMPLE_RATE)
    changed = embed(tiny_checkpoint, files, cache_dir=cache, precision="fp32", progress=False)
    assert changed.provenance["computed_files"] == 1
    assert not np.allclose(changed.pooled(0, "seq")[1], first.pooled(0, "seq")[1])
    # a half-written shard (a killed run) is ignored
    store = changed._store.folder
    (store / ".tmp-shard-x").mkdir()
    (store / "shard-00000000-broken").mkdir()
    (store / "shard-00000000-broken" / "pooled.npy").write_bytes(b"garbage")
    after = embed(tiny_checkpoint, files, cache_dir=cache, precision="fp32", progress=False)
    assert after.provenance["computed_files"] == 0


def test_log_mel_is_computed_once_per_file_for_every_model(
    audio_dir: Path, tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first model's extraction stores each file's log-mel, equal to the front end's
    output on the decoded audio; the next models (random init, the log-mel baseline) read it
    back without decoding, and their features equal those computed from the audio."""
    import vit1d.audio.frontend

    files = sorted(audio_dir.glob("*.wav"))[:2]
    cache = tmp_path / "cache"
    embed(tiny_checkpoint, files, cache_dir=cache, precision="fp32", progress=False)
    stored = sorted(cache.glob("mel-*/*.npz"))
    assert len(stored) == 2
    for f in files:
        direct = LogMel()(torch.from_numpy(load_audio(f))[None])[0].numpy()
        from_store = [np.load(p)["mel"] for p in stored if np.load(p)["mel"].shape == direct.shape]
        assert any(np.array_equal(m, direct) for m in from_store)
    spec = ModelSpec("random", config=TINY, seed=3)
    fresh = embed(spec, files, cache_dir=tmp_path / "fresh", precision="fp32", progress=False)

    def no_decoding(path):
        raise AssertionError(f"{path} decoded again")

    monkeypatch.setattr(vit1d.audio.frontend, "load_audio", no_decoding)
    reused = embed(spec, files, cache_dir=cache, precision="fp32", progress=False)
    assert reused.provenance["computed_files"] == 2  # features new, log-mel read back
    assert np.array_equal(reused.pooled(1, "avg"), fresh.pooled(1, "avg"))
    assert [r["seconds"] for r in reused._store.shards[0].index["files"]] == [10.0, 10.0]
    logmel = embed(ModelSpec("logmel"), files, cache_dir=cache, progress=False)
    assert logmel.provenance["computed_files"] == 2


def test_logmel_baseline_is_mean_and_std_of_the_frontend(audio_dir: Path, tmp_path: Path) -> None:
    files = sorted(audio_dir.glob("*.wav"))[:2]
    emb = embed(ModelSpec("logmel"), files, cache_dir=tmp_path, frames=True, progress=False)
    assert emb.layers == [0] and emb.poolings == ["meanstd"] and emb.dim == 256
    for i, f in enumerate(files):
        mel = LogMel()(torch.from_numpy(load_audio(f))[None])[0].numpy()
        ref = np.concatenate([mel.mean(0), mel.std(0)])
        assert np.allclose(emb.pooled(0, "meanstd")[i], ref, atol=0.05)
        assert np.allclose(emb.frames(0)[i], mel, atol=0.05)


def test_random_init_is_seeded_and_keeps_global_rng(audio_dir: Path, tmp_path: Path) -> None:
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a, b, c = random_model(TINY, 0), random_model(TINY, 0), random_model(TINY, 1)
    assert torch.rand(1).item() == before.item()  # global random state untouched
    assert model_fingerprint(a) == model_fingerprint(b) != model_fingerprint(c)
    spec = ModelSpec("random", seed=1, config=TINY)
    emb = embed(
        spec, [audio_dir / "track1.wav"], cache_dir=tmp_path, precision="fp32", progress=False
    )
    assert emb.provenance["weights_sha256"] == model_fingerprint(c)
    assert spec.name == "random-init" and spec.checkpoint_name == "init-seed-1"


def test_bf16_features_are_close_to_fp32_and_cached_apart(
    audio_dir: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    files = [audio_dir / "track2.wav"]
    f32 = embed(tiny_checkpoint, files, cache_dir=tmp_path, precision="fp32", progress=False)
    b16 = embed(tiny_checkpoint, files, cache_dir=tmp_path, precision="bf16", progress=False)
    assert f32.provenance["cache_key"] != b16.provenance["cache_key"]
    x, y = f32.pooled(2, "seq")[0], b16.pooled(2, "seq")[0]
    cosine = float(x @ y / np.linalg.norm(x) / np.linalg.norm(y))
    assert cosine > 0.99 and not np.array_equal(x, y)


def test_errors_name_the_file(audio_dir: Path, tmp_path: Path, tiny_checkpoint: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        embed(tiny_checkpoint, [tmp_path / "nope.wav"], cache_dir=tmp_path, progress=False)
    with pytest.raises(UserError, match="not a checkpoint folder"):
        embed(tmp_path, [audio_dir / "track0.wav"], cache_dir=tmp_path, progress=False)


def test_cli_embed_twice(
    audio_dir: Path, tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from vit1d.cli import main

    task = tmp_path / "corpus" / "instrument"
    task.mkdir(parents=True)
    rows = [
        f"{p},{s},x"
        for p, s in zip(
            sorted(audio_dir.glob("*.wav"))[:3], ["train", "valid", "test"], strict=True
        )
    ]
    (task / "manifest.csv").write_text("audio,split,instrument\n" + "\n".join(rows) + "\n")
    args = [
        "embed",
        "--data",
        str(tmp_path / "corpus"),
        "--checkpoint",
        str(tiny_checkpoint),
        "--precision",
        "fp32",
        "--no-progress",
    ]
    assert main(args) == 0
    assert "3 computed" in capsys.readouterr().out
    assert main(args) == 0
    assert "(all cached)" in capsys.readouterr().out
    assert (tmp_path / "corpus" / ".vit1d_cache" / "embed").is_dir()
    with pytest.raises(SystemExit):
        main(["embed", "--help"])
    assert "--benchmark" in capsys.readouterr().out


def test_shallow_extraction_runs_fewer_blocks_and_gives_the_same_layers(
    audio_dir: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    """``depth=1`` stores layers 0 and 1 only, equal to those of the full extraction, in a
    store of its own; :func:`vit1d.features.embed.hidden_states` matches the model's own output."""
    from vit1d.features.embed import hidden_states

    model = load_pretrained(tiny_checkpoint)
    x = torch.randn(2, 40, 128) * 20 - 40
    with torch.inference_mode():
        full = model(x, output_hidden_states=True).hidden_states
        short = hidden_states(model, x, 1)
    assert len(short) == 2 and all(torch.equal(a, b) for a, b in zip(short, full, strict=False))
    files = sorted(audio_dir.glob("*.wav"))[:2]
    kw = dict(cache_dir=tmp_path, precision="fp32", progress=False, frames=True)
    deep = embed(tiny_checkpoint, files, **kw)
    shallow = embed(tiny_checkpoint, files, depth=1, **kw)
    assert deep.layers == [0, 1, 2] and shallow.layers == [0, 1]
    assert shallow._store.folder != deep._store.folder
    for layer in (0, 1):
        assert np.array_equal(shallow.pooled(layer, "avg"), deep.pooled(layer, "avg"))
        assert all(
            np.array_equal(a, b)
            for a, b in zip(shallow.frames(layer), deep.frames(layer), strict=True)
        )
