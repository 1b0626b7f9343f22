"""Scoring local probes' frame outputs: in worker processes as in process, references read once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from vit1d.audio.grid import FRAME_RATE
from vit1d.probing import metrics as M
from vit1d.probing import scoring
from vit1d.probing.scoring import TrackJob, score_local, score_tracks
from vit1d.probing.tasks import SPECS, Example, Task, event_reference


def _task(name: str, folder: Path, n_tracks: int, rng: np.random.Generator) -> tuple[Task, list]:
    """A local task of ``n_tracks`` test tracks with annotations on disk, and their lengths."""
    examples, lengths = [], []
    for i in range(n_tracks):
        seconds = rng.uniform(6, 12)
        lengths.append(int(seconds * FRAME_RATE))
        path = folder / f"{name}{i}.txt"
        if name == "chords":
            edges = np.concatenate([[0], np.sort(rng.uniform(0, seconds, 4)), [seconds]])
            labels = [str(rng.choice(["C:maj", "A:min", "G:maj", "N"])) for _ in edges[1:]]
            M.write_lab(path, np.stack([edges[:-1], edges[1:]], 1), labels)
        else:
            period = 60 / rng.uniform(70, 160)
            beats = np.arange(rng.uniform(0, period), seconds, period)
            path.write_text("".join(f"{b:.4f}\n" for b in beats))
        examples.append(Example(folder / f"{name}{i}.wav", "test", path))
    classes = list(M.CHORD_CLASSES) if name == "chords" else ["event"]
    return Task(name, SPECS[name], folder / "manifest.csv", examples, classes), lengths


def test_worker_processes_score_as_the_process_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The probes' scores from spawned workers are the in-process scores, in job order, value
    for value. Chords:
    the pool is the same for every task, and the beat tracker's compilation would cost each
    worker seconds."""
    rng = np.random.default_rng(3)
    task, lengths = _task("chords", tmp_path, 8, rng)
    emb = SimpleNamespace(n_frames=np.array(lengths))
    idx = task.indices("test")
    n_out = task.n_outputs
    jobs = [
        TrackJob.of(task, emb, idx, rng.standard_normal((sum(lengths), n_out)).astype(np.float32))
        for _ in range(5)
    ]
    in_process = score_local(jobs, workers=1)
    # the probes' outputs differ, so a job scored from another's or out of order would show
    assert len({tuple(r["majmin"][0]) for r in in_process}) == len(jobs)

    started = []

    class Spy(scoring.ProcessPoolExecutor):
        def __init__(self, *args, **kwargs) -> None:
            started.append(args[0] if args else kwargs["max_workers"])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(scoring, "ProcessPoolExecutor", Spy)
    monkeypatch.setattr(scoring, "MIN_PARALLEL_TRACKS", 1)
    pooled = score_local(jobs, workers=2)
    assert started == [2]  # the pool ran, with two workers
    assert len(pooled) == len(jobs)
    for a, b in zip(in_process, pooled, strict=True):
        assert set(a) == set(b) == set(task.spec.metrics)
        for metric, (values, weights) in a.items():
            np.testing.assert_array_equal(values, b[metric][0])
            np.testing.assert_array_equal(weights, b[metric][1])


def test_a_job_scores_each_track_from_its_own_frames(tmp_path: Path) -> None:
    """:func:`score_tracks` decodes track ``j`` from its own slice of the concatenated outputs:
    the beats of a track's own reference, as activation, score F = 1 on that track."""
    rng = np.random.default_rng(5)
    task, lengths = _task("beats", tmp_path, 4, rng)
    logits = []
    for ex, n in zip(task.examples, lengths, strict=True):
        target = M.events_to_targets(M.load_events(ex.label), n, FRAME_RATE, widen=0.0)
        logits.append(np.where(target > 0, 8.0, -8.0)[:, None].astype(np.float32))
    emb = SimpleNamespace(n_frames=np.array(lengths))
    idx = task.indices("test")
    own = score_tracks(task, emb, idx, np.concatenate(logits))
    assert own["f_measure"][1] is None
    np.testing.assert_array_less(0.9, own["f_measure"][0])
    swapped = score_tracks(task, emb, idx, np.concatenate(logits[1:] + logits[:1]))
    assert swapped["f_measure"][0].mean() < 0.9  # but lengths differ: slices must follow them


def test_event_references_are_read_again_when_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "beats.txt"
    path.write_text("0.5\n1.0\n")
    first = event_reference(path)
    np.testing.assert_array_equal(first, [0.5, 1.0])
    assert event_reference(path) is first  # read once for all the track's probes
    with pytest.raises(ValueError):
        first[0] = 0.0  # shared: nobody may change it
    path.write_text("0.5\n1.0\n1.5\n")
    os.utime(path, ns=(10**18, 10**18))
    np.testing.assert_array_equal(event_reference(path), [0.5, 1.0, 1.5])


SCRIPT_WITHOUT_GUARD = """
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, {tests!r})
from test_scoring import _task  # noqa: E402

from vit1d.probing import scoring  # noqa: E402

rng = np.random.default_rng(1)
task, lengths = _task("chords", Path({folder!r}), 4, rng)
emb = SimpleNamespace(n_frames=np.array(lengths))
out = rng.standard_normal((sum(lengths), task.n_outputs)).astype(np.float32)
jobs = [scoring.TrackJob.of(task, emb, task.indices("test"), out)] * 2
scoring.MIN_PARALLEL_TRACKS = 1
got = scoring.score_local(jobs, workers=2)
want = [job.score() for job in jobs]
assert all(np.array_equal(g["majmin"][0], w["majmin"][0]) for g, w in zip(got, want))
print("scored", len(got))
"""


def test_a_script_without_a_main_guard_is_scored_in_process_with_a_warning(
    tmp_path: Path,
) -> None:
    """Spawned workers import the script that started them; one that probes at its top level
    makes them fail. Its tracks are then scored in process, and the warning says the fix."""
    script = tmp_path / "probe_script.py"
    tests = str(Path(__file__).resolve().parent)
    script.write_text(SCRIPT_WITHOUT_GUARD.format(tests=tests, folder=str(tmp_path)))
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "scored 2" in run.stdout
    assert "worker processes failed" in run.stderr
    assert "if __name__ == '__main__':" in run.stderr
