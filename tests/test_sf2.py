"""The NumPy SoundFont renderer (vit1d.corpus.sf2) against independent references.

Pitch is checked with librosa's YIN against equal temperament, levels and envelopes against
TinySoundFont rendering the same notes, preset names against TinySoundFont's reader, loops
against silence gaps and clicks; then the choice of renderer (``VIT1D_RENDERER``, and the
fallback when TinySoundFont cannot be imported) and a smoke corpus rendered with NumPy.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pretty_midi")  # ships TimGM6mb.sf2

from vit1d.core.errors import UserError  # noqa: E402
from vit1d.corpus import render  # noqa: E402
from vit1d.corpus.render import Note, NumpySynth, Program, resolve_soundfont  # noqa: E402

SR = 16000
FRAME = 320  # 20 ms


@pytest.fixture(scope="module")
def soundfont() -> Path:
    return resolve_soundfont(None)


@pytest.fixture(scope="module")
def numpy_synth(soundfont: Path) -> NumpySynth:
    return NumpySynth(soundfont)


@pytest.fixture(scope="module")
def tsf_synth(soundfont: Path) -> render.Synth:
    pytest.importorskip("tinysoundfont")
    return render.Synth(soundfont)


@pytest.fixture(params=["numpy", "tinysoundfont"])
def synth(request, numpy_synth, soundfont):
    if request.param == "numpy":
        return numpy_synth
    return request.getfixturevalue("tsf_synth")


def _note(synth, program: int, key: int, start: float, end: float, duration: float, vel=0.8):
    return synth.render(
        {0: Program(program, 0, False, 0.8)}, [Note(start, end, key, vel, 0)], duration
    )


def _frames_db(y: np.ndarray) -> np.ndarray:
    """RMS level of 20 ms frames, dB (floor -200 dB for digital silence)."""
    fr = y[: len(y) // FRAME * FRAME].reshape(-1, FRAME).astype(np.float64)
    return 10 * np.log10(np.mean(fr**2, axis=1) + 1e-20)


@pytest.mark.parametrize("program", [0, 40, 73])  # piano, violin, flute
def test_pitch_is_equal_tempered(synth, program: int):
    import librosa

    for key in (48, 60, 72):
        y = _note(synth, program, key, 0.05, 1.0, 1.1)
        f_ref = 440.0 * 2 ** ((key - 69) / 12)
        part = y[int(0.15 * SR) : int(0.95 * SR)]
        f0 = librosa.yin(part, fmin=f_ref / 1.5, fmax=f_ref * 1.5, sr=SR, frame_length=2048)
        cents = 1200 * np.log2(np.median(f0) / f_ref)
        assert abs(cents) < 20, (program, key, cents)


def test_preset_names_match_tinysoundfont(numpy_synth, tsf_synth):
    for program, bank in [(0, 0), (40, 0), (73, 0), (19, 0), (127, 0), (0, 128), (5, 77)]:
        assert numpy_synth.preset_name(program, bank) == tsf_synth.preset_name(program, bank)
    assert numpy_synth.preset_name(0) == "Piano 1"
    assert numpy_synth.preset_name(5, 77) is None


@pytest.mark.parametrize("program,key", [(73, 72), (19, 60), (40, 55), (56, 60)])
def test_envelope_and_level_agree_with_tinysoundfont(numpy_synth, tsf_synth, program, key):
    """Onset rise, held level, release decay and final silence of one held note."""
    on, off, dur = 0.2, 1.2, 3.0
    ours = _frames_db(_note(numpy_synth, program, key, on, off, dur))
    ref = _frames_db(_note(tsf_synth, program, key, on, off, dur))
    t = (np.arange(len(ours)) + 0.5) * FRAME / SR
    held = (t > on + 0.1) & (t < off)
    peak = ref[held].max()
    assert np.all(ours[t < on - 0.02] < -150)  # silence before the note
    assert ours[np.argmax(t > on)] < ours[held].mean() + 1  # rises from the onset
    audible = (ref > peak - 50) & (t > on + 0.02)
    assert np.max(np.abs(ours[audible] - ref[audible])) < 3.0
    assert abs(np.median(ours[held]) - np.median(ref[held])) < 1.0
    rel = ours[(t > off + 0.02) & (ours > -150)]
    assert np.all(np.diff(rel) < 1.5) and rel[-1] < rel[0] - 30  # the release decays
    last = [t[np.flatnonzero(db > -150)[-1]] for db in (ours, ref)]
    assert abs(last[0] - last[1]) < 0.05  # both silent from the end of the release on
    assert last[0] < dur - 0.3


def test_velocity_scales_the_level_as_tinysoundfont(numpy_synth, tsf_synth):
    levels = {}
    for name, s in (("numpy", numpy_synth), ("tsf", tsf_synth)):
        loud, soft = (
            _frames_db(_note(s, 73, 72, 0.1, 1.0, 1.2, vel))[10:45] for vel in (1.0, 0.25)
        )
        levels[name] = np.median(loud - soft)
    assert levels["numpy"] == pytest.approx(levels["tsf"], abs=0.5)
    assert levels["numpy"] == pytest.approx(20 * np.log10(4), abs=1.0)


def _click_score(y: np.ndarray) -> float:
    """Peak over RMS of the second difference: a loop-point discontinuity is an outlier."""
    d2 = np.diff(y.astype(np.float64), 2)[SR // 10 : -SR // 10]
    return float(np.max(np.abs(d2)) / np.sqrt(np.mean(d2**2)))


@pytest.mark.parametrize("program", [19, 48, 52])  # organ, strings, choir: looped samples
def test_looped_note_sounds_without_gaps_or_clicks(numpy_synth, tsf_synth, program: int):
    sf = numpy_synth._sf
    zones = sf.zones(sf.find_preset(0, program), 60, 101)
    assert zones and all(z.loop_mode == 1 for z in zones)
    assert max((z.end - z.start) / z.rate for z in zones) < 3.0  # the note outlasts the samples
    y = _note(numpy_synth, program, 60, 0.0, 6.0, 6.0)
    ref = _note(tsf_synth, program, 60, 0.0, 6.0, 6.0)
    db = _frames_db(y)[5:-2]
    assert db.min() > np.median(db) - 12  # sounds all along: no gap
    assert np.max(np.abs(np.diff(y))) < 0.6 * np.max(np.abs(y))
    assert _click_score(y) < 8.0  # no clicks at the loop points
    assert _click_score(y) < 1.25 * _click_score(ref)


@pytest.mark.parametrize("key", [36, 38])  # bass drum, snare
def test_drums_are_short_and_match_tinysoundfont(numpy_synth, tsf_synth, key: int):
    drums = {9: Program(0, 128, True, 0.7)}
    notes = [Note(0.1, 0.2, key, 0.8, 9)]
    y = numpy_synth.render(drums, notes, 1.5)
    ref = tsf_synth.render(drums, notes, 1.5)
    assert np.max(np.abs(y)) > 0.05
    assert np.max(np.abs(y[int(1.0 * SR) :])) < 1e-4  # short
    assert np.corrcoef(y, ref)[0, 1] > 0.99


def test_exclusive_class_cuts_the_open_hihat(numpy_synth, tsf_synth):
    drums = {9: Program(0, 128, True, 0.7)}
    open_only = [Note(0.1, 1.0, 46, 0.8, 9)]
    cut = [*open_only, Note(0.3, 0.4, 42, 0.8, 9)]  # closed hi-hat, same exclusive class
    a, b = (numpy_synth.render(drums, n, 1.5) for n in (open_only, cut))
    late = slice(int(0.5 * SR), int(0.9 * SR))
    assert np.max(np.abs(b[late])) < 0.1 * np.max(np.abs(a[late]))
    assert np.corrcoef(b, tsf_synth.render(drums, cut, 1.5))[0, 1] > 0.99


def test_repeated_key_ends_the_previous_note(numpy_synth, tsf_synth):
    notes = [Note(0.1, 2.0, 60, 0.8, 0), Note(0.6, 1.0, 60, 0.8, 0)]
    progs = {0: Program(19, 0, False, 0.8)}
    y, ref = numpy_synth.render(progs, notes, 2.5), tsf_synth.render(progs, notes, 2.5)
    assert np.max(np.abs(y[int(1.8 * SR) :])) < 1e-4  # the first note ended at 0.6 s
    assert np.corrcoef(y, ref)[0, 1] > 0.99


def test_invalid_soundfonts_are_clear_user_errors(tmp_path: Path, soundfont: Path):
    bad = tmp_path / "bad.sf2"
    bad.write_bytes(b"RIFF\x04\x00\x00\x00WAVE")
    with pytest.raises(UserError, match="cannot load SoundFont.*sfbk"):
        NumpySynth(bad)
    cut = tmp_path / "cut.sf2"
    cut.write_bytes(soundfont.read_bytes()[:100_000])
    with pytest.raises(UserError, match="cannot load SoundFont.*no"):
        NumpySynth(cut)


@pytest.fixture
def no_tinysoundfont(monkeypatch):
    monkeypatch.setitem(sys.modules, "tinysoundfont", None)
    monkeypatch.setitem(sys.modules, "tinysoundfont._tinysoundfont", None)
    monkeypatch.delenv("VIT1D_RENDERER", raising=False)


def test_renderer_forced_by_environment(monkeypatch, soundfont: Path):
    monkeypatch.setenv("VIT1D_RENDERER", "numpy")
    assert isinstance(render.get_synth(soundfont, 32000), NumpySynth)
    assert "NumPy" in render.renderer_version()
    monkeypatch.setenv("VIT1D_RENDERER", "fluidsynth")
    with pytest.raises(UserError, match="numpy.*tinysoundfont|tinysoundfont.*numpy"):
        render.get_synth(soundfont, 32000)
    with pytest.raises(UserError, match="VIT1D_RENDERER"):
        render.renderer_version()


def test_tinysoundfont_when_installed(monkeypatch, soundfont: Path):
    pytest.importorskip("tinysoundfont")
    monkeypatch.delenv("VIT1D_RENDERER", raising=False)
    assert isinstance(render.get_synth(soundfont, 32000), render.Synth)
    assert render.renderer_version().startswith("tinysoundfont ")


def test_numpy_fallback_without_tinysoundfont(no_tinysoundfont, monkeypatch, soundfont: Path):
    assert isinstance(render.get_synth(soundfont, 32000), NumpySynth)
    assert render.renderer_version().startswith("vit1d NumPy SoundFont renderer")
    with pytest.raises(UserError, match="tinysoundfont is not installed"):
        render.Synth(soundfont)
    monkeypatch.setenv("VIT1D_RENDERER", "tinysoundfont")
    with pytest.raises(UserError, match="pip install --no-deps tinysoundfont"):
        render.get_synth(soundfont, 32000)


def test_a_corpus_is_never_finished_with_the_other_renderer(monkeypatch, tmp_path: Path):
    from vit1d.corpus.build import build_corpus
    from vit1d.corpus.config import load_preset, preset_digest

    cfg = load_preset("smoke")
    out = tmp_path / "corpus"
    out.mkdir()
    stamp = {"digest": preset_digest(cfg), "preset": "smoke", "seed": 0, "renderer": "numpy"}
    (out / "build.json").write_text(json.dumps(stamp))
    monkeypatch.setenv("VIT1D_RENDERER", "tinysoundfont")
    pytest.importorskip("tinysoundfont")
    with pytest.raises(UserError, match="VIT1D_RENDERER=numpy to finish it"):
        build_corpus(cfg, out, cache_dir=tmp_path / "cache", log=lambda m: None)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_smoke_corpus_renders_with_numpy(monkeypatch, tmp_path: Path):
    pytest.importorskip("music21")
    import soundfile as sf
    import yaml

    from vit1d.corpus.build import build_corpus
    from vit1d.corpus.config import load_preset

    monkeypatch.setenv("VIT1D_RENDERER", "numpy")
    preset = {
        "seed": 3,
        "workers": 1,
        "splits": {"valid": 0.25, "test": 0.25},
        "collections": {"bach": {"works": 2}, "essenFolksong": {"works": 2}},
        "pretrain": {"clip_s": 6.0},
        "music": {"clip_s": 6.0, "renders_per_polyphonic_work": 1},
        "notes": {"dynamics": ["mf"], "pitch_step": 24, "clip_s": 1.0, "hold_s": [0.4, 0.6]},
    }
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(preset))
    out = tmp_path / "corpus"
    build_corpus(load_preset(tmp_path / "tiny.yaml"), out, cache_dir=tmp_path / "cache", log=print)
    prov = json.loads((out / "corpus.json").read_text())
    assert prov["renderer"].startswith("vit1d NumPy SoundFont renderer")
    assert prov["failed_renders"] == {} and prov["missing_renders"] == 0
    files = sorted((out / "audio").rglob("*.flac"))  # music and single notes
    assert len(files) >= 10 and any("notes" in f.parts for f in files)
    for f in files:
        y, rate = sf.read(f, dtype="float32")
        assert rate == SR and np.sqrt(np.mean(y**2)) > 1e-3, f.name
