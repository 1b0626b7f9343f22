"""The log-mel cache of a pretraining pool: worker processes, unreadable files, reuse."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from vit1d.audio.frontend import LogMel
from vit1d.core.errors import UserError
from vit1d.pretrain.data import build_mel_cache, read_manifest


def _pool(audio_dir: Path, folder: Path) -> list[Path]:
    """Three good tracks in nested folders, one garbage file between them (position 2)."""
    (folder / "a" / "b").mkdir(parents=True)
    good = sorted(audio_dir.glob("*.wav"))[:3]
    (folder / "a" / "0.wav").write_bytes(good[0].read_bytes())
    (folder / "a" / "1.wav").write_bytes(good[1].read_bytes())
    (folder / "a" / "2.wav").write_bytes(b"RIFF not really a wave file")
    (folder / "a" / "b" / "3.flac").write_bytes(b"")
    sf.write(folder / "a" / "b" / "4.flac", sf.read(good[2])[0], 16_000)
    (folder / "notes.txt").write_text("not audio, not picked up")
    return read_manifest(folder)


def test_folder_pool_is_recursive_and_skips_unreadable_files(audio_dir, tmp_path):
    files = _pool(audio_dir, tmp_path / "pool")
    assert [f.name for f in files] == ["0.wav", "1.wav", "2.wav", "3.flac", "4.flac"]
    cache = build_mel_cache(files, tmp_path / "c", progress=False, skip_unreadable=True)
    assert list(cache.kept) == [0, 1, 4]
    assert [Path(s["file"]).name for s in cache.skipped] == ["2.wav", "3.flac"]
    assert all(s["reason"] for s in cache.skipped)
    # each kept track holds the log-mel of its own file (independent recomputation)
    logmel = LogMel()
    for i, f in zip(cache.kept, cache.files, strict=True):
        assert Path(f) == files[i]
        wave, _ = sf.read(files[i], dtype="float32")
        expect = logmel(torch.from_numpy(wave)[None])[0].numpy()
        k = list(cache.kept).index(i)
        got = np.asarray(cache.mels[cache.offsets[k] : cache.offsets[k] + cache.lengths[k]])
        np.testing.assert_allclose(got, expect, atol=0.05, rtol=1e-3)  # float16 storage
    # reopening reuses the cache and its list of skipped files
    again = build_mel_cache(files, tmp_path / "c", progress=False, skip_unreadable=True)
    assert list(again.kept) == [0, 1, 4] and len(again.skipped) == 2
    with pytest.raises(UserError, match="2.wav"):
        build_mel_cache(files, tmp_path / "c", progress=False, skip_unreadable=False)


def test_strict_build_names_the_file_and_leaves_no_partial_cache(audio_dir, tmp_path):
    files = _pool(audio_dir, tmp_path / "pool")
    with pytest.raises(UserError, match=r"2\.wav.*data\.skip_unreadable"):
        build_mel_cache(files, tmp_path / "c", progress=False)
    assert not list((tmp_path / "c").glob("*"))


def test_nothing_readable_is_an_error(tmp_path):
    (tmp_path / "x.wav").write_bytes(b"nope")
    with pytest.raises(UserError, match="none of the 1 audio files"):
        build_mel_cache([tmp_path / "x.wav"], tmp_path / "c", progress=False, skip_unreadable=True)


@pytest.mark.slow  # spawns decoding processes, each importing the library
def test_worker_processes_give_the_same_cache(audio_dir, tmp_path):
    files = _pool(audio_dir, tmp_path / "pool")
    inline = build_mel_cache(files, tmp_path / "c1", progress=False, skip_unreadable=True)
    spawned = build_mel_cache(
        files, tmp_path / "c2", progress=False, skip_unreadable=True, workers=2
    )
    assert list(spawned.kept) == list(inline.kept)
    assert [s["file"] for s in spawned.skipped] == [s["file"] for s in inline.skipped]
    np.testing.assert_array_equal(spawned.lengths, inline.lengths)
    np.testing.assert_allclose(
        np.asarray(spawned.mels, dtype=np.float32),
        np.asarray(inline.mels, dtype=np.float32),
        atol=0.02,  # one thread against two: float16 rounding may differ by a step
    )
