"""The whole corpus build: ``vit1d corpus --preset smoke``, splits, determinism, resuming.

The smoke corpus is built once per module through the command line into pytest's
``tmp_path``; a smaller custom preset is built several more times for the determinism and
resume tests. The score cache is shared between builds so music21 parses each work once.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import mir_eval
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import yaml

pytest.importorskip("music21")
pytest.importorskip("tinysoundfont")

from vit1d.cli import main  # noqa: E402
from vit1d.core.errors import UserError  # noqa: E402
from vit1d.corpus import tasks  # noqa: E402
from vit1d.corpus.build import build_corpus  # noqa: E402
from vit1d.corpus.config import load_preset  # noqa: E402

# whole corpora rendered with the SoundFont, several times over
pytestmark = pytest.mark.slow

LOCAL = {"chords", "beats", "onsets"}


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("score-cache")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory, cache) -> Path:
    out = tmp_path_factory.mktemp("smoke") / "corpus"
    code = main(["corpus", "--preset", "smoke", "--out", str(out), "--cache", str(cache)])
    assert code == 0
    return out


def test_smoke_builds_every_task_with_every_split(smoke: Path):
    for task in tasks.TASKS:
        m = pd.read_csv(smoke / task / "manifest.csv")
        assert list(m.columns[:2]) == ["audio", "split"]
        assert {
            "work",
            "render_id",
            "collection",
            "instrumentation",
            "programs",
            "banks",
            "render_bpm",
            "transpose",
            "reverb_rt60",
            "snr_db",
        } <= set(m.columns)
        splits = set(m["split"])
        if task == "pretrain":
            assert splits == {"train", "valid"}
        else:
            assert splits == {"train", "valid", "test"}, task
        for col in tasks.LABEL_COLUMNS[task]:
            assert m[col].notna().all(), (task, col)


def test_smoke_audio_is_16k_mono_and_loudness_normalised(smoke: Path):
    m = pd.read_csv(smoke / "tagging" / "manifest.csv")
    levels = []
    for rel, dur in zip(m["audio"][:12], m["duration"][:12], strict=True):
        info = sf.info(smoke / "tagging" / rel)
        assert info.samplerate == 16000 and info.channels == 1
        assert info.frames == pytest.approx(dur * 16000, abs=2)
        y, _ = sf.read(smoke / "tagging" / rel, dtype="float32")
        assert np.max(np.abs(y)) <= 0.9
        levels.append(20 * np.log10(np.sqrt(np.mean(y**2))))
    assert np.ptp(levels) < 12  # all near the same level (gated RMS, -23 dBFS)


def test_smoke_labels_are_valid(smoke: Path):
    key = pd.read_csv(smoke / "key" / "manifest.csv")
    for k in key["key"]:
        mir_eval.key.validate_key(k)
    tempo = pd.read_csv(smoke / "tempo" / "manifest.csv")
    assert tempo["bpm"].between(45, 210).all()
    tags = pd.read_csv(smoke / "tagging" / "manifest.csv")["tags"].str.split(";")
    assert all(len(t) >= 4 for t in tags)
    pitch = pd.read_csv(smoke / "pitch" / "manifest.csv")
    assert pitch["pitch"].between(21, 108).all()
    assert pitch["instrument"].nunique() == 14
    for task in LOCAL:
        m = pd.read_csv(smoke / task / "manifest.csv")
        for rel, dur in zip(m["annotation"][:10], m["duration"][:10], strict=True):
            path = str(smoke / task / rel)
            if task == "chords":
                iv, labs = mir_eval.io.load_labeled_intervals(path)
                mir_eval.util.validate_intervals(iv)
                assert iv[0, 0] == 0 and iv[-1, 1] == pytest.approx(dur, abs=1e-3)
                for lab in labs:
                    mir_eval.chord.encode(lab)
            else:
                ev = mir_eval.io.load_events(path)
                mir_eval.util.validate_events(ev)
                assert ev.min() >= 0 and ev.max() < dur


def test_splits_are_by_work_and_test_works_never_pretrain(smoke: Path):
    frames = {t: pd.read_csv(smoke / t / "manifest.csv") for t in tasks.TASKS}
    split_of: dict[str, str] = {}
    for t, m in frames.items():
        for work, split in zip(m["work"], m["split"], strict=True):
            assert split_of.setdefault(work, split) == split, (t, work)
    groups: dict[str, set[str]] = {}
    for work, split in split_of.items():
        groups.setdefault(tasks.work_group(work), set()).add(split)
    assert all(len(s) == 1 for s in groups.values())
    test_works = {w for w, s in split_of.items() if s == "test"}
    assert test_works and not test_works & set(frames["pretrain"]["work"])


def test_corpus_json_provenance_and_stats(smoke: Path):
    prov = json.loads((smoke / "corpus.json").read_text())
    for k in ("music21", "renderer", "soundfont", "seed", "counts", "hours", "this_run"):
        assert k in prov
    assert len(prov["soundfont"]["sha256"]) == 64
    assert prov["failed_renders"] == {} and prov["missing_renders"] == 0
    assert prov["hours"]["total"] > 0.3
    assert prov["this_run"]["build_s"] < 120
    for f in ("counts.md", "counts.csv", "labels.csv", "label_distributions.png"):
        assert (smoke / "stats" / f).stat().st_size > 0


TINY = {
    "seed": 3,
    "workers": 2,
    "splits": {"valid": 0.25, "test": 0.25},
    "collections": {"bach": {"works": 4}, "essenFolksong": {"works": 4}},
    "pretrain": {"clip_s": 6.0},
    "music": {"clip_s": 6.0, "renders_per_polyphonic_work": 1},
    "notes": {"dynamics": ["mf"], "pitch_step": 12, "clip_s": 1.0, "hold_s": [0.4, 0.6]},
}


def _tiny(tmp_path: Path, **over) -> dict:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({**TINY, **over}))
    return load_preset(path)


def _digest(root: Path) -> dict[str, str]:
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            rel = str(p.relative_to(root))
            if rel in ("corpus.json",):
                continue  # holds timings
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def tiny_ref(tmp_path_factory, cache) -> tuple[Path, Path]:
    """A tiny corpus built once (2 workers), the reference of the tests below."""
    base = tmp_path_factory.mktemp("tiny")
    out = base / "ref"
    build_corpus(_tiny(base), out, cache_dir=cache, log=lambda m: None)
    return base, out


def test_same_seed_same_corpus_file_for_file(tiny_ref, tmp_path: Path, cache: Path):
    base, ref = tiny_ref
    b = tmp_path / "b"
    build_corpus(dict(_tiny(base), workers=1), b, cache_dir=cache, log=lambda m: None)
    da, db = _digest(ref), _digest(b)  # the number of workers does not change a byte
    assert any(k.endswith(".flac") for k in da)
    assert da == db
    c = tmp_path / "c"
    build_corpus(_tiny(base, seed=4), c, cache_dir=cache, log=lambda m: None)
    dc = _digest(c)
    audio = [k for k in da if k.endswith(".flac") and k in dc]
    assert sum(da[k] != dc[k] for k in audio) > 0.9 * len(audio)  # another seed differs


def test_killed_build_resumes_to_the_same_corpus(tiny_ref, tmp_path: Path, cache: Path):
    base, ref = tiny_ref
    out = tmp_path / "out"
    shutil.copytree(ref, out)
    # simulate a kill: records and audio missing, a half-written temporary file, no
    # manifests and no corpus.json yet
    recs = sorted((out / "records").rglob("*.json"))
    for r in recs[::3]:
        r.unlink()
    for a in sorted((out / "audio").rglob("*.flac"))[::5]:
        a.unlink()
        rec = out / "records" / a.relative_to(out / "audio").with_suffix(".json")
        rec.unlink(missing_ok=True)
    (out / "audio" / "music" / ".00000.flac.tmp99999").write_bytes(b"half a file")
    (out / "corpus.json").unlink()
    (out / "tagging" / "manifest.csv").unlink()
    logs: list[str] = []
    prov = build_corpus(_tiny(base), out, cache_dir=cache, log=logs.append)
    assert prov["this_run"]["resumed"]
    assert 0 < prov["this_run"]["jobs_run"] < len(recs)
    assert any("temporary" in m for m in logs)
    assert _digest(out) == _digest(ref)


def test_sigkilled_build_resumes_to_the_same_corpus(
    tiny_ref, tmp_path: Path, cache: Path, fault_point
):
    """Fault test: the build process and its workers killed with SIGKILL once a third to
    two thirds of the renders are on disk; running it again ends with the reference corpus,
    file for file."""
    base, ref = tiny_ref
    total = len(list((ref / "records").rglob("*.json")))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "vit1d", "corpus", "--preset", str(base / "tiny.yaml")]
    cmd += ["--out", str(out), "--cache", str(cache)]
    # each of the two render workers stands still after its own total // 3 renders
    assert TINY["workers"] == 2
    point = fault_point(f"render@{total // 3}")
    # its own process group, so that the kill takes the render workers too, as a real one would
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=point.env,
    )
    point.wait(proc)
    os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    done = len(list((out / "records").rglob("*.json")))
    assert total // 3 <= done <= 2 * (total // 3) < total
    assert not (out / "corpus.json").exists()  # the completion marker is written last

    prov = build_corpus(_tiny(base), out, cache_dir=cache, log=lambda m: None)
    assert prov["this_run"]["resumed"] and prov["this_run"]["jobs_run"] <= total - done
    assert _digest(out) == _digest(ref)


def test_other_settings_in_the_same_folder_are_refused(tiny_ref, tmp_path: Path, cache: Path):
    base, ref = tiny_ref
    with pytest.raises(UserError, match="other settings"):
        build_corpus(_tiny(base, seed=9), ref, cache_dir=cache, log=lambda m: None)
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty"):
        build_corpus(_tiny(base), stray, cache_dir=cache, log=lambda m: None)


def test_baseline_check_runs_and_saves_its_table(smoke: Path):
    from vit1d.corpus.baseline import run_baseline

    table = run_baseline(smoke, log=lambda m: None, max_local_train=20, max_local_test=10)
    assert (smoke / "stats" / "baseline.md").read_text().strip() == table
    rows = json.loads((smoke / "stats" / "baseline.json").read_text())
    tasks_seen = {r["task"] for r in rows}
    assert {"tagging", "key", "tempo", "chords", "beats", "onsets", "pitch", "instrument"} <= (
        tasks_seen
    )
    assert all(0.0 <= r["value"] <= 1.0 for r in rows)
