"""Probes: they succeed when the label is linearly in the features and fall to chance when it
is not; manifests are read with clear errors; the CLI writes the results
files for a checkpoint, its baselines and its snapshots on a tiny corpus made here."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import mir_eval
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from vit1d.audio.frontend import FRAME_RATE, SAMPLE_RATE
from vit1d.core.errors import UserError
from vit1d.probing import metrics as M
from vit1d.probing.items import read_items
from vit1d.probing.linear import LinearProbes, ProbeConfig
from vit1d.probing.probe import chance_summary, probe_task
from vit1d.probing.results import COLUMNS, SUMMARY_COLUMNS
from vit1d.probing.tasks import SPECS, Example, Task, global_targets, load_task, tempo_classes

FAST = ProbeConfig(max_epochs=12, steps_per_epoch=20, patience=3, n_boot=200)
LONGER = ProbeConfig(max_epochs=20, steps_per_epoch=50, patience=4, n_boot=100)


class FakeEmbeddings:
    """The interface of :class:`vit1d.features.cache.Embeddings` over features made in the test:
    layer 0 carries no information, layer 1 carries ``signal`` (pooled or per frame)."""

    def __init__(self, paths: list[Path], signal: list[np.ndarray], local: bool, seed: int):
        rng = np.random.default_rng(seed)
        self.paths = paths
        self.layers = [0, 1]
        self.poolings = ["cls"]
        dim = signal[0].shape[-1] if local else signal[0].shape[0]
        self.dim = self.frame_dim = dim
        self.n_frames = np.array([len(s) if local else 1 for s in signal])
        if local:
            self._frames = {
                0: [rng.standard_normal(s.shape).astype(np.float16) for s in signal],
                1: [(s + 0.3 * rng.standard_normal(s.shape)).astype(np.float16) for s in signal],
            }
        else:
            sig = np.stack(signal)
            self._pooled = {
                0: rng.standard_normal(sig.shape).astype(np.float32),
                1: (sig + 0.3 * rng.standard_normal(sig.shape)).astype(np.float32),
            }

    def pooled(self, layer: int, pooling: str, indices=None) -> np.ndarray:
        x = self._pooled[layer]
        return x if indices is None else x[np.asarray(indices)]

    def frames(self, layer: int, indices=None) -> list[np.ndarray]:
        idx = range(len(self.paths)) if indices is None else indices
        return [self._frames[layer][i] for i in idx]


def _splits(n: int) -> list[str]:
    return ["train"] * (n * 6 // 10) + ["valid"] * (n * 2 // 10) + ["test"] * (n - n * 8 // 10)


def _value(result: dict, layer: int, metric: str) -> float:
    rows = [
        r
        for r in result["summary"]
        if r["layer"] == layer and r["metric"] == metric and r["split"] == "test"
    ]
    assert len(rows) == 1
    return rows[0]["mean"]


def _global_task(name: str, labels: list, classes: list) -> Task:
    exs = [
        Example(Path(f"/fake/{name}{i}.wav"), split, lab)
        for i, (split, lab) in enumerate(zip(_splits(len(labels)), labels, strict=True))
    ]
    return Task(name, SPECS[name], Path(f"/fake/{name}/manifest.csv"), exs, classes)


def _encode(codes: np.ndarray, dim: int, seed: int) -> list[np.ndarray]:
    """Rows ``onehot(code) @ A`` (A random, scaled): a linear code of each label."""
    a = 3.0 * np.random.default_rng(seed).standard_normal((codes.max() + 1, dim))
    return list(a[codes])


# ---------------------------------------------------------------------------- global tasks


@pytest.mark.parametrize("shuffle", [False, True])
def test_key_probe_succeeds_on_linear_code_and_fails_on_shuffled(shuffle: bool) -> None:
    keys = ["C major", "G major", "A minor", "E minor"]
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 4, 200)
    task = _global_task("key", [keys[c] for c in codes], sorted(keys))
    feature_codes = rng.permutation(codes) if shuffle else codes
    emb = FakeEmbeddings([e.audio for e in task.examples], _encode(feature_codes, 16, 1), False, 2)
    result = probe_task(task, [emb], seeds=(0, 1), config=FAST)
    assert _value(result, 0, "accuracy") < 0.45  # noise layer: chance is 0.25
    if shuffle:
        assert _value(result, 1, "accuracy") < 0.45
    else:
        assert _value(result, 1, "accuracy") > 0.95
        assert _value(result, 1, "weighted") > 0.95
    rows = pd.DataFrame(result["rows"])
    # the exact solver (the default) fits one seed per view: its solution has no seed
    assert set(rows["seed"]) == {0} and set(rows["split"]) == {"valid", "test"}
    assert (rows[rows["split"] == "test"]["n"] == 40).all()
    # per-item test scores: one row per clip, averaging to the probe's value
    items = pd.concat(result["items"])
    assert set(items["split"]) == {"test"} and items["item"].nunique() == 40
    means = items.groupby(["layer", "seed", "metric"])["value"].mean()
    test_rows = rows[rows["split"] == "test"].set_index(["layer", "seed", "metric"])["value"]
    np.testing.assert_allclose(means.sort_index(), test_rows.sort_index(), atol=1e-6)


@pytest.mark.parametrize("shuffle", [False, True])
def test_tagging_probe_auc(shuffle: bool) -> None:
    rng = np.random.default_rng(3)
    y = (rng.random((200, 5)) < 0.4).astype(int)
    tags = ["a", "b", "c", "d", "e"]
    labels = [[t for t, on in zip(tags, row, strict=True) if on] for row in y]
    task = _global_task("tagging", labels, tags)
    source = y[rng.permutation(200)] if shuffle else y
    a = 3.0 * rng.standard_normal((5, 12))
    paths = [e.audio for e in task.examples]
    # two feature sources paired with two seeds, as the random-init baseline is probed
    sources = [FakeEmbeddings(paths, list(source @ a), False, k) for k in (4, 5)]
    result = probe_task(task, sources, seeds=(0, 1), config=FAST)
    assert {r["n_seeds"] for r in result["summary"]} == {2}
    assert {r["n"] for r in result["summary"] if r["split"] == "test"} == {40}  # test clips
    assert {(r["seed"], r["layer"]) for r in result["rows"]} == {(0, 0), (1, 0), (0, 1), (1, 1)}
    auc = _value(result, 1, "roc_auc")
    assert (0.35 < auc < 0.65) if shuffle else auc > 0.97
    assert 0.35 < _value(result, 0, "roc_auc") < 0.65


def test_tempo_probe_decodes_bpm_classes() -> None:
    rng = np.random.default_rng(5)
    bpm = rng.uniform(60, 180, 300)
    split = _splits(300)
    classes = tempo_classes([b for b, s in zip(bpm, split, strict=True) if s == "train"])
    task = _global_task("tempo", list(bpm), classes)
    codes = np.array([int(np.argmin(np.abs(np.log(classes) - np.log(b)))) for b in bpm])
    emb = FakeEmbeddings([e.audio for e in task.examples], _encode(codes, 48, 6), False, 7)
    result = probe_task(task, [emb], seeds=(0,), config=LONGER)
    assert _value(result, 1, "acc1") > 0.85
    assert _value(result, 1, "acc2") >= _value(result, 1, "acc1")
    assert _value(result, 0, "acc1") < 0.2


def test_the_right_tempo_class_always_passes_acc1() -> None:
    centres = np.array(tempo_classes([60.0, 200.0]))
    assert centres[0] < 60 and centres[-1] > 200
    assert np.allclose(centres[1:] / centres[:-1], 1.08)
    bpm = np.geomspace(60, 200, 997)
    nearest = centres[np.argmin(np.abs(np.log(centres[None, :] / bpm[:, None])), axis=1)]
    assert (M.tempo_scores(bpm, nearest)["acc1"] == 1).all()  # mir_eval, 4 % tolerance
    assert np.max(np.abs(nearest - bpm) / bpm) > 0.035  # as coarse as Acc1 allows


def test_chance_is_the_training_prior_predicted_for_every_item() -> None:
    labels = ["C major"] * 50 + ["A minor"] * 30 + ["G major"] * 20
    split = ["train"] * 60 + ["valid"] * 10 + ["test"] * 30
    rng = np.random.default_rng(0)
    order = rng.permutation(100)
    task = _global_task("key", [labels[i] for i in order], ["A minor", "C major", "G major"])
    for ex, s in zip(task.examples, split, strict=True):
        ex.split = s
    rows = {(r["split"], r["metric"]): r["mean"] for r in chance_summary(task)}
    train = [ex.label for ex in task.examples if ex.split == "train"]
    top = max(set(train), key=train.count)
    test = [ex.label for ex in task.examples if ex.split == "test"]
    assert rows[("test", "accuracy")] == pytest.approx(np.mean([t == top for t in test]))
    weighted = np.mean([mir_eval.key.weighted_score(t, top) for t in test])
    assert rows[("test", "weighted")] == pytest.approx(weighted)
    # tagging: constant scores give ROC-AUC 0.5 and AP each tag's prevalence
    tags = [("a",), ("a", "b"), ("b",), ("a",)] * 10
    ttask = _global_task("tagging", tags, ["a", "b"])
    ttask.examples[-1].label = ("b",)
    trows = {(r["split"], r["metric"]): r["mean"] for r in chance_summary(ttask)}
    y = global_targets(ttask, ttask.indices("test"))
    assert trows[("test", "roc_auc")] == pytest.approx(0.5)
    assert trows[("test", "map")] == pytest.approx(y.mean(axis=0).mean())


# ---------------------------------------------------------------------------- local tasks


def _local_task(name: str, folder: Path, annotations: list[Path]) -> Task:
    exs = [
        Example(Path(f"/fake/{name}{i}.wav"), split, path)
        for i, (split, path) in enumerate(zip(_splits(len(annotations)), annotations, strict=True))
    ]
    classes = list(M.CHORD_CLASSES) if name == "chords" else ["event"]
    return Task(name, SPECS[name], folder / "manifest.csv", exs, classes)


@pytest.mark.parametrize("shuffle", [False, True])
def test_chord_probe_per_frame(tmp_path: Path, shuffle: bool) -> None:
    rng = np.random.default_rng(8)
    vocab = ["C:maj", "A:min", "F:maj", "G:maj", "E:min", "N"]
    n_files, n = 20, 250
    paths, codes = [], []
    for i in range(n_files):
        bounds = np.sort(rng.choice(np.arange(10, n - 10), 5, replace=False))
        edges = np.concatenate([[0], bounds, [n]]) / FRAME_RATE
        labels = [vocab[k] for k in rng.integers(0, len(vocab), len(edges) - 1)]
        paths.append(tmp_path / f"c{i}.lab")
        M.write_lab(paths[-1], np.stack([edges[:-1], edges[1:]], 1), labels)
        frame_labels = M.intervals_to_frames(np.stack([edges[:-1], edges[1:]], 1), labels, n)
        codes.append(np.array([M.chord_class(lab) for lab in frame_labels]))
    task = _local_task("chords", tmp_path, paths)
    a = 3.0 * rng.standard_normal((25, 16))
    source = [codes[(i + 1) % n_files] for i in range(n_files)] if shuffle else codes
    emb = FakeEmbeddings([e.audio for e in task.examples], [a[c] for c in source], True, 9)
    result = probe_task(task, [emb], seeds=(0,), config=FAST)
    majmin = _value(result, 1, "majmin")
    assert majmin < 0.4 if shuffle else majmin > 0.93
    assert _value(result, 0, "majmin") < 0.4
    assert {r["pooling"] for r in result["summary"]} == {"frame"}


@pytest.mark.parametrize("shuffle", [False, True])
def test_beat_probe_with_beat_tracker(tmp_path: Path, shuffle: bool) -> None:
    rng = np.random.default_rng(10)
    n_files, seconds = 20, 10.0
    n = int(seconds * FRAME_RATE)
    paths, acts = [], []
    for i in range(n_files):
        period = 60.0 / rng.uniform(70, 160)
        beats = np.arange(rng.uniform(0, period), seconds, period)
        paths.append(tmp_path / f"b{i}.txt")
        paths[-1].write_text("".join(f"{b:.4f}\n" for b in beats))
        acts.append(M.events_to_targets(beats, n, FRAME_RATE))
    task = _local_task("beats", tmp_path, paths)
    source = [acts[(i + 1) % n_files] for i in range(n_files)] if shuffle else acts
    feats = [np.stack([a, np.roll(a, 1), np.roll(a, -1)], axis=1) * 3 for a in source]
    emb = FakeEmbeddings([e.audio for e in task.examples], feats, True, 11)
    result = probe_task(task, [emb], seeds=(0,), config=LONGER)
    f = _value(result, 1, "f_measure")
    assert f < 0.5 if shuffle else f > 0.9
    assert _value(result, 0, "f_measure") < 0.5


# ---------------------------------------------------------------------------- the probe stack


def test_probes_in_a_stack_are_independent() -> None:
    """A probe trained beside others ends exactly as when trained alone."""
    rng = np.random.default_rng(12)
    x = torch.from_numpy(rng.standard_normal((2, 300, 8)).astype(np.float32))
    y = torch.from_numpy((x[1, :, 0] > 0).long().numpy())
    xv = x[:, :100]
    cfg = ProbeConfig(solver="adam", max_epochs=8, steps_per_epoch=5, patience=2, batch_size=32)
    alone = LinearProbes([0], [5], 8, 2, "softmax")
    alone.fit(x, y, xv, y[:100], cfg)
    stack = LinearProbes([1, 0, 0], [6, 5, 7], 8, 2, "softmax")
    stack.fit(x, y, xv, y[:100], cfg)
    assert torch.allclose(alone.weight[0], stack.weight[1], atol=1e-5)
    assert alone.best_epoch[0] == stack.best_epoch[1]
    assert not torch.allclose(stack.weight[1], stack.weight[2])  # another seed differs
    # and each probe reads its own view's rows: the first, on view 1, ends as a probe given
    # only that view's features
    alone_on_1 = LinearProbes([0], [6], 8, 2, "softmax")
    alone_on_1.fit(x[1:], y, xv[1:], y[:100], cfg)
    assert torch.allclose(alone_on_1.weight[0], stack.weight[0], atol=1e-5)
    assert not torch.allclose(stack.weight[0], alone.weight[0], atol=1e-3)


# ---------------------------------------------------------------------------- manifests


def _manifest(folder: Path, header: str, rows: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "manifest.csv"
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def test_load_task_errors_name_the_problem(tmp_path: Path) -> None:
    sf.write(tmp_path / "a.wav", np.zeros(1600, dtype=np.float32), SAMPLE_RATE)
    m = _manifest(tmp_path / "key", "audio,split", ["../a.wav,train"])
    with pytest.raises(UserError, match="no 'key' column"):
        load_task(m)
    m = _manifest(tmp_path / "key", "audio,split,key", ["../a.wav,train,H major"])
    with pytest.raises(UserError, match="row 2: key 'H major'"):
        load_task(m)
    m = _manifest(tmp_path / "key", "audio,split,key", ["../missing.wav,train,C major"])
    with pytest.raises(UserError, match="missing audio"):
        load_task(m)
    m = _manifest(tmp_path / "key", "audio,split,key", ["../a.wav,dev,C major"])
    with pytest.raises(UserError, match="split 'dev'"):
        load_task(m)
    m = _manifest(tmp_path / "chords", "audio,split,annotation", ["../a.wav,train,x.lab"])
    with pytest.raises(UserError, match="annotation file"):
        load_task(m)
    m = _manifest(tmp_path / "nope", "audio,split", ["../a.wav,train"])
    with pytest.raises(UserError, match="unknown task"):
        load_task(m)


def test_missing_valid_split_is_carved_from_train_by_work(tmp_path: Path) -> None:
    sf.write(tmp_path / "a.wav", np.zeros(1600, dtype=np.float32), SAMPLE_RATE)
    rows = [f"../a.wav,train,{60 + i % 3},w{i // 2}" for i in range(60)]
    rows += ["../a.wav,test,60,t0"]
    task = load_task(_manifest(tmp_path / "pitch", "audio,split,pitch,work", rows))
    valid = [e for e in task.examples if e.split == "valid"]
    assert valid and task.notes
    works_valid = {e.work for e in valid}
    assert not works_valid & {e.work for e in task.examples if e.split == "train"}
    assert task.classes == [60, 61, 62]


# ---------------------------------------------------------------------------- end to end


def _tone(f0: float, seconds: float, odd: bool, amp: float) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    harmonics = (1, 3, 5, 7) if odd else (1,)
    y = sum(np.sin(2 * np.pi * h * f0 * t) / h for h in harmonics)
    return (amp * y * np.minimum(1, t / 0.02)).astype(np.float32)


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Notes (pitch, instrument) and 6 s clips with chords and beats, labels known."""
    root = tmp_path_factory.mktemp("corpus")
    (root / "audio").mkdir()
    (root / "ann").mkdir()
    note_rows = []
    split_of = ["train", "train", "train", "valid", "test"]
    for midi in (48, 55, 60, 67):
        for inst in ("sine", "odd"):
            for v in range(5):
                name = f"audio/{inst}{midi}_{v}.wav"
                f0 = 440 * 2 ** ((midi - 69) / 12) * (1 + 0.003 * (v - 2))
                sf.write(root / name, _tone(f0, 1.0, inst == "odd", 0.1 + 0.1 * v), SAMPLE_RATE)
                note_rows.append(f"../{name},{split_of[v]},{midi},{inst},{inst}{midi}")
    _manifest(root / "pitch", "audio,split,pitch,instrument,work", note_rows)
    _manifest(
        root / "instrument",
        "audio,split,instrument,pitch,work",
        [",".join([r.split(",")[i] for i in (0, 1, 3, 2, 4)]) for r in note_rows],
    )
    chord_rows, beat_rows = [], []
    for i in range(6):
        seconds, period = 6.0, 60 / (90 + 10 * i)
        wave = np.zeros(int(seconds * SAMPLE_RATE), dtype=np.float32)
        labels, edges = [], np.arange(0, seconds + 1e-9, 1.5)
        for k, (a, b) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
            chord = ("C:maj", [60, 64, 67]) if (k + i) % 2 == 0 else ("A:min", [57, 60, 64])
            labels.append(chord[0])
            seg = slice(int(a * SAMPLE_RATE), int(b * SAMPLE_RATE))
            for m in chord[1]:
                wave[seg] += _tone(440 * 2 ** ((m - 69) / 12), b - a, True, 0.1)[
                    : seg.stop - seg.start
                ]
        beats = np.arange(0.1, seconds, period)
        for b in beats:
            s = int(b * SAMPLE_RATE)
            wave[s : s + 400] += (
                0.5 * np.random.default_rng(i).standard_normal(400) * np.exp(-np.arange(400) / 60)
            )
        name = f"audio/clip{i}.wav"
        sf.write(root / name, wave, SAMPLE_RATE)
        M.write_lab(root / f"ann/clip{i}.lab", np.stack([edges[:-1], edges[1:]], 1), labels)
        (root / f"ann/clip{i}.txt").write_text("".join(f"{b:.4f}\n" for b in beats))
        split = ["train", "train", "train", "valid", "test", "test"][i]
        chord_rows.append(f"../{name},{split},../ann/clip{i}.lab,clip{i}")
        beat_rows.append(f"../{name},{split},../ann/clip{i}.txt,clip{i}")
    _manifest(root / "chords", "audio,split,annotation,work", chord_rows)
    _manifest(root / "beats", "audio,split,annotation,work", beat_rows)
    (root / "corpus.json").write_text(json.dumps({"config": {"name": "tiny"}}))
    return root


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny "pretraining run": final model plus two snapshots (random weights)."""
    from vit1d.models.checkpoint import save_checkpoint_folder, save_pretrained
    from vit1d.models.model import ViT1D

    run = tmp_path_factory.mktemp("run")
    cfg = {"dim": 32, "depth": 2, "heads": 2, "head": "none"}
    for step in (5, 10):
        torch.manual_seed(step)
        save_checkpoint_folder(ViT1D(**cfg), run / "snapshots" / f"step-{step:08d}", {"step": step})
    torch.manual_seed(10)
    save_pretrained(ViT1D(**cfg), run)
    (run / "run.json").write_text(json.dumps({"steps": 10}))
    return run


def test_cli_probe_writes_results_for_model_baselines_and_snapshots(
    tiny_corpus: Path, tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from vit1d.cli import main

    out, cache = tmp_path / "results", tmp_path / "cache"
    common = [
        "--data",
        str(tiny_corpus),
        "--out",
        str(out),
        "--cache",
        str(cache),
        "--seeds",
        "0,1",
        "--max-epochs",
        "6",
        "--steps-per-epoch",
        "15",
        "--n-boot",
        "50",
        "--precision",
        "fp32",
        "--no-progress",
    ]
    assert main(["probe", "--checkpoint", str(tiny_run), "--baselines", *common]) == 0
    probes = pd.read_csv(out / "probes.csv")
    assert list(probes.columns) == COLUMNS
    assert set(probes["model"]) == {"contrastive", "random-init", "logmel"}
    assert set(probes["task"]) == {"pitch", "instrument", "chords", "beats"}
    vit = probes[probes["model"] != "logmel"]
    assert set(vit["layer"]) == {0, 1, 2}
    assert set(vit[vit["task"] == "pitch"]["pooling"]) == {"cls", "seq", "avg"}
    assert set(probes[probes["model"] == "logmel"]["pooling"]) == {"meanstd", "frame"}
    # one exact fit per view of a model; random init has an init seed per probe seed
    # global tasks: one exact fit per view of a model (random init: an init seed per probe
    # seed); local tasks: Adam's protocol, one fit per seed (ProbeConfig.local_solver)
    local = probes["task"].isin(["chords", "beats"])
    seeds = probes[~local].groupby("model")["seed"].agg(set).to_dict()
    assert seeds == {"contrastive": {0}, "random-init": {0, 1}, "logmel": {0}}
    assert probes[local].groupby("model")["seed"].agg(set).map(sorted).tolist() == [[0, 1]] * 3
    assert set(probes["corpus"]) == {"tiny"}
    assert probes["value"].notna().all()
    assert set(probes[probes["model"] == "contrastive"]["step"]) == {10}
    summary = pd.read_csv(out / "probes_summary.csv")
    assert list(summary.columns) == SUMMARY_COLUMNS
    # the prior-only predictor beside the models, once per global task and split
    chance = summary[summary["model"] == "chance"]
    assert set(chance["task"]) == {"pitch", "instrument"} and set(chance["split"]) == {
        "valid",
        "test",
    }
    assert chance["ci_low"].isna().all() and len(chance) == 4
    summary = summary[summary["model"] != "chance"]
    assert (summary["ci_low"] <= summary["mean"] + 1e-9).all()
    assert (summary["mean"] <= summary["ci_high"] + 1e-9).all()
    # pitch of steady tones is linear in the log-mel mean: the pipeline can succeed on audio
    logmel_pitch = summary.query("model == 'logmel' and task == 'pitch' and split == 'test'")
    logmel_pitch = logmel_pitch["mean"].item()
    assert logmel_pitch >= 0.75
    # the per-item table: every test probe's items, weighted means equal to probes.csv
    items = read_items(out)
    assert set(items["split"]) == {"test"}
    assert set(items["model"]) == {"contrastive", "random-init", "logmel"}
    keys = ["model", "task", "layer", "pooling", "seed", "metric"]
    items["wv"] = items["value"] * items["weight"]
    sums = items.groupby(keys)[["wv", "weight"]].sum()
    from_items = (sums["wv"] / sums["weight"]).rename("value")
    test = probes[probes["split"] == "test"].set_index(keys)["value"]
    joined = test.to_frame().join(from_items.to_frame("items"), how="outer")
    assert joined.notna().all().all(), joined[joined.isna().any(axis=1)]
    np.testing.assert_allclose(joined["value"], joined["items"], rtol=1e-5, atol=1e-6)
    chords = items[items["task"] == "chords"]
    assert (chords["weight"] > 1).all()  # tracks weighted by their duration in seconds
    runs = json.loads((out / "probes_runs.json").read_text())
    assert len(runs) == 3
    prov = next(r for r in runs.values() if r["model"] == "contrastive")
    assert prov["models"][0]["weights_sha256"] and prov["hardware"]["cpu"]
    assert prov["models"][0]["precision"] == "fp32" and prov["seeds"] == [0, 1]
    assert prov["tasks"]["pitch"]["seeds"] == [0] and prov["tasks"]["chords"]["seeds"] == [0, 1]
    assert (
        prov["tasks"]["pitch"]["solver"] == "lbfgs" and prov["tasks"]["beats"]["solver"] == "adam"
    )
    assert prov["tasks"]["pitch"]["manifest_sha256"]

    # fitting the tasks one at a time instead of in parallel threads changes no number
    serial = tmp_path / "serial"
    at = common.index("--out") + 1
    one_by_one = [*common[:at], str(serial), *common[at + 1 :], "--workers", "1"]
    assert main(["probe", "--checkpoint", str(tiny_run), *one_by_one]) == 0
    a = pd.read_csv(out / "probes.csv", dtype=str, keep_default_na=False)
    a = a[a["model"] == "contrastive"].drop(columns="run_id").reset_index(drop=True)
    b = pd.read_csv(serial / "probes.csv", dtype=str, keep_default_na=False)
    pd.testing.assert_frame_equal(a, b.drop(columns="run_id"))

    # again, log-mel only: cached features, rows replaced rather than duplicated
    n_rows = len(probes)
    assert main(["probe", "--logmel", "--tasks", "pitch,chords", *common]) == 0
    again = pd.read_csv(out / "probes.csv")
    assert len(again) == n_rows
    runs = json.loads((out / "probes_runs.json").read_text())
    assert [r["model"] for r in runs.values()].count("logmel") == 2

    # emergence: the snapshots, with their steps
    assert (
        main(
            [
                "probe",
                "--checkpoint",
                str(tiny_run),
                "--emergence",
                "--no-final",
                "--tasks",
                "pitch",
                "--layers",
                "2",
                *common,
            ]
        )
        == 0
    )
    steps = pd.read_csv(out / "probes.csv").query("task == 'pitch' and model == 'contrastive'")
    assert set(steps["step"]) == {5, 10}
    capsys.readouterr()


def test_cli_errors_and_help(tiny_corpus: Path, capsys: pytest.CaptureFixture) -> None:
    from vit1d.cli import main

    assert main(["probe", "--data", str(tiny_corpus), "--tasks", "pitch"]) == 2
    assert "nothing to probe" in capsys.readouterr().err
    assert main(["probe", "--data", str(tiny_corpus), "--tasks", "tempo", "--logmel"]) == 2
    assert "no manifest for task 'tempo'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["probe", "--help"])
    assert "--baselines" in capsys.readouterr().out


def test_limit_files_keeps_the_same_files_across_local_tasks(tiny_corpus: Path) -> None:
    from vit1d.probing.tasks import limit_files

    chords = load_task(tiny_corpus / "chords" / "manifest.csv")
    beats = load_task(tiny_corpus / "beats" / "manifest.csv")
    a, b = limit_files(chords, (2, 1, 1)), limit_files(beats, (2, 1, 1))
    assert [len(a.indices(s)) for s in ("train", "valid", "test")] == [2, 1, 1]
    assert [e.audio for e in a.examples] == [e.audio for e in b.examples]
    assert any("of 3 files" in n for n in a.notes)
    assert limit_files(chords, (0, 0, 0)) is chords


def test_benchmark_reports_speed_and_precision_difference(
    tiny_corpus: Path, tiny_run: Path, tmp_path: Path
) -> None:
    from vit1d.probing.speed import benchmark

    report = benchmark(
        tiny_run,
        tiny_corpus,
        tasks=("pitch",),
        seeds=(0, 1),
        max_files=8,
        out=tmp_path / "bench.json",
        config=FAST,
    )
    assert set(report["speed"]) == {"fp32", "bf16"}
    assert all(s["x_realtime"] > 0 for s in report["speed"].values())
    assert report["speed_task"] == "pitch" and report["files"] == 8
    assert report["max_abs_diff"] >= 0 and "within_noise" in report
    assert json.loads((tmp_path / "bench.json").read_text())["speed"]


def _summary_frame() -> pd.DataFrame:
    rows = []
    for model, ck, step in (
        ("contrastive", "run", 100),
        ("contrastive", "run/snapshots/s50", 50),
        ("random-init", "random-init", 0),
    ):
        for layer in range(4):
            for pooling in ("cls", "avg"):
                m = 0.5 + 0.1 * layer * (model == "contrastive") * step / 100
                rows.append(
                    {
                        "model": model,
                        "checkpoint": ck,
                        "step": step,
                        "corpus": "c",
                        "task": "key",
                        "layer": layer,
                        "pooling": pooling,
                        "split": "test",
                        "metric": "weighted",
                        "mean": m,
                        "ci_low": m - 0.05,
                        "ci_high": m + 0.05,
                    }
                )
    rows.append(
        {
            "model": "logmel",
            "checkpoint": "-",
            "step": None,
            "corpus": "c",
            "task": "key",
            "layer": 0,
            "pooling": "meanstd",
            "split": "test",
            "metric": "weighted",
            "mean": 0.6,
            "ci_low": 0.55,
            "ci_high": 0.65,
        }
    )
    return pd.DataFrame(rows)


def test_probing_figures_draw_model_baselines_and_steps() -> None:
    import matplotlib

    matplotlib.use("Agg")
    from vit1d.viz import probing_plots

    s = _summary_frame()
    fig = probing_plots.layer_curves(s, "key", "weighted")
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert {"cls", "avg", "cls (random-init)", "avg (random-init)", "log-mel"} <= set(lines)
    # the final model (step 100), not its snapshot, is drawn
    assert np.allclose(lines["avg"].get_ydata(), [0.5, 0.6, 0.7, 0.8])
    fig = probing_plots.emergence_curve(s, "key", "weighted", layer=3, pooling="avg")
    steps = [c for c in fig.axes[0].containers]
    assert steps and list(steps[0].lines[0].get_xdata()) == [50, 100]
    grid = probing_plots.layer_curves_grid(s, [("key", "weighted"), ("tempo", "acc1")])
    assert len([a for a in grid.axes if a.get_visible() and a.has_data()]) == 1


def test_results_upsert_and_best_layers(tmp_path: Path) -> None:
    from vit1d.probing.results import best_layers, read_results, upsert_csv

    s = _summary_frame()
    best = best_layers(s).query("model == 'contrastive' and checkpoint == 'run'")
    assert set(best["layer"]) == {3}
    rows = [
        {
            "model": "m",
            "checkpoint": "c",
            "corpus": "x",
            "task": "key",
            "layer": 1,
            "pooling": "cls",
            "seed": k,
            "split": "test",
            "metric": "accuracy",
            "value": 0.5,
        }
        for k in range(3)
    ]
    upsert_csv(tmp_path / "probes.csv", rows, COLUMNS)
    upsert_csv(tmp_path / "probes.csv", [{**rows[0], "task": "tempo"}], COLUMNS)
    merged = upsert_csv(tmp_path / "probes.csv", [{**rows[0], "value": 0.9}], COLUMNS)
    assert len(merged) == 2  # the key rows were replaced, the tempo row kept
    probes, summary = read_results(tmp_path)
    assert sorted(probes["value"]) == [0.5, 0.9] and summary.empty


@pytest.mark.slow  # three probe runs in subprocesses
def test_sigkill_mid_extraction_then_rerun_gives_identical_results(
    tiny_corpus: Path, tiny_run: Path, tmp_path: Path, fault_point
) -> None:
    """Fault test: ``vit1d probe`` killed with SIGKILL while it extracts features,
    then run again, ends with the results CSVs of an uninterrupted run, byte for byte but for
    ``run_id`` (a run's own timestamped identifier)."""

    def args(out: Path) -> list[str]:
        return [
            sys.executable, "-m", "vit1d", "probe", "--checkpoint", str(tiny_run), "--baselines",
            "--data", str(tiny_corpus), "--out", str(out / "results"), "--cache",
            str(out / "cache"), "--seeds", "0,1", "--max-epochs", "4", "--steps-per-epoch",
            "10", "--n-boot", "30", "--precision", "fp32", "--no-progress",
        ]  # fmt: skip

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    straight = tmp_path / "straight"
    subprocess.run(args(straight), check=True, env=env, capture_output=True, timeout=600)

    killed = tmp_path / "killed"
    point = fault_point("shard@1")  # stands still once the first shard is complete
    proc = subprocess.Popen(
        args(killed), env={**point.env, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    point.wait(proc)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert len(list((killed / "cache").rglob("shard-*/index.json"))) == 1
    assert not (killed / "results" / "probes_summary.csv").exists()

    subprocess.run(args(killed), check=True, env=env, capture_output=True, timeout=600)
    for name in ("probes.csv", "probes_summary.csv"):
        a = pd.read_csv(straight / "results" / name, dtype=str, keep_default_na=False)
        b = pd.read_csv(killed / "results" / name, dtype=str, keep_default_na=False)
        fitted = a[a["model"] != "chance"]  # the chance rows come from the labels, no run
        assert fitted["run_id"].nunique() == 3  # one per model: real ids, not constants
        assert (fitted["run_id"] != "").all()
        assert a.drop(columns="run_id").to_csv() == b.drop(columns="run_id").to_csv(), name


def test_chapter_emergence_probes_each_snapshot_once(
    tiny_corpus: Path, tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The book's probing chapter probes the final model at every view, then the snapshots at
    its best view; the last snapshot holds the final model's weights, so it is not extracted
    and fitted again: its point on the emergence curve is the final model's row."""
    from vit1d.book import chapters
    from vit1d.book.layout import NotebookPaths
    from vit1d.probing.settings import ProbeSettings

    settings = ProbeSettings(
        seeds=(0,),
        random_init_seeds=1,
        config={"max_epochs": 2, "steps_per_epoch": 4, "n_boot": 20},
        emergence_tasks=("pitch",),
    )
    monkeypatch.setattr(chapters, "probe_settings", lambda preset: settings)
    results = tmp_path / "results"
    results.mkdir()
    paths = NotebookPaths("smoke", tiny_corpus, tmp_path / "runs", results, tiny_run)
    ran = chapters.run_chapter_probes(paths, ["pitch"], "smoke", masked=False, emergence=True)
    assert ran["emergence_tasks"] == ["pitch"]
    runs = json.loads((results / "probes_runs.json").read_text())
    probed = [m["path"] for r in runs.values() for m in r["models"] if m["kind"] == "checkpoint"]
    assert sum("step-00000005" in c for c in probed) == 1
    assert not any("step-00000010" in c for c in probed)  # the final model's snapshot
    summary = pd.read_csv(results / "probes_summary.csv")
    mine = summary[(summary["model"] == "contrastive") & (summary["task"] == "pitch")]
    layer, pooling = chapters.best_view(summary, "pitch")
    at_view = mine[(mine["layer"] == layer) & (mine["pooling"] == pooling)]
    assert sorted(set(at_view["step"].dropna().astype(int))) == [5, 10]


def test_code_fingerprint_ignores_prose_and_sees_code(tmp_path: Path) -> None:
    from vit1d.probing.committed import code_fingerprint

    pkg = tmp_path / "probing"
    pkg.mkdir()
    module = pkg / "m.py"
    module.write_text('"""Doc."""\n\n\ndef f(x):\n    """Square."""\n    return x * x  # why\n')
    before = code_fingerprint(["probing"], tmp_path)
    module.write_text('"""Other doc."""\n\n\ndef f(x):\n    """Squared."""\n    return x * x\n')
    assert code_fingerprint(["probing"], tmp_path) == before
    module.write_text('"""Doc."""\n\n\ndef f(x):\n    """Square."""\n    return x * x * 1.0\n')
    assert code_fingerprint(["probing"], tmp_path) != before


def test_committed_probes_are_what_probing_the_model_gives(
    tiny_corpus: Path, tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A build whose inputs match the committed key merges the committed rows of the reference
    checkpoint and of the random-init baseline instead of probing them, and those are the
    rows probing them in the build gives (per-item scores kept at the claims' views); another
    key, and the build probes them itself."""
    import shutil

    from vit1d.book import chapters
    from vit1d.book.layout import NotebookPaths
    from vit1d.features.sources import ModelSpec, architecture_config
    from vit1d.probing import committed
    from vit1d.probing.runner import baseline_sources
    from vit1d.probing.settings import ProbeSettings
    from vit1d.studies import reference

    settings = ProbeSettings(
        seeds=(0, 1),
        random_init_seeds=1,
        config={"max_epochs": 2, "steps_per_epoch": 4, "n_boot": 20, "max_local_files": [4, 1, 1]},
    )
    for module in (chapters, reference):
        monkeypatch.setattr(module, "probe_settings", lambda preset: settings)
    monkeypatch.setattr(reference, "probe_config", lambda preset: ProbeConfig(**settings.config))
    ref = tmp_path / "reference"
    shutil.copytree(tiny_run, ref, ignore=shutil.ignore_patterns("snapshots"))
    monkeypatch.setattr(chapters, "reference_checkpoint", lambda: ref)
    random_group = baseline_sources(architecture_config(str(tiny_run)), 1, False)[0]
    say = lambda m: None  # noqa: E731
    outs = {
        "reference": reference.probe_committed(
            [ModelSpec("checkpoint", str(ref), label="reference")],
            ref,
            tiny_corpus,
            progress=False,
            say=say,
        ),
        "random-init": reference.probe_committed(
            random_group, tmp_path / "random", tiny_corpus, progress=False, say=say
        ),
    }
    monkeypatch.setattr(chapters, "committed_results", lambda: outs)
    for out in outs.values():
        key = json.loads((out / committed.KEY_FILE).read_text())
        assert set(key["tasks"]) == {"pitch", "instrument", "chords", "beats"}
    assert "+" not in key["weights_sha256"] and len(key["weights_sha256"]) == 64

    def build(name: str) -> tuple[pd.DataFrame, pd.DataFrame, dict, list[str]]:
        results = tmp_path / name / "results"
        results.mkdir(parents=True)
        paths = NotebookPaths("smoke", tiny_corpus, tmp_path / name, results, tiny_run)
        ran = chapters.run_chapter_probes(paths, ["pitch", "chords"], "smoke", masked=False)
        summary = pd.read_csv(results / "probes_summary.csv")
        items = pd.read_parquet(results / "probe_items")
        runs = json.loads((results / "probes_runs.json").read_text())
        return summary, items, runs, ran["notes"]

    reused, reused_items, runs, notes = build("reuse")
    for model, out in outs.items():
        assert any(f"the {model} model's probes are the ones committed" in n for n in notes)
        assert sum(r.get("reused_from") == str(out) for r in runs.values()) == 1
    probed = [m["path"] for r in runs.values() for m in r["models"] if m["kind"] == "checkpoint"]
    assert probed.count(str(ref)) == 1  # the committed run's record, no run of this build
    assert set(reused[reused["model"] == "reference"]["task"]) == {"pitch", "chords"}

    for out in outs.values():
        key = json.loads((out / committed.KEY_FILE).read_text())
        key["code"] = "changed"
        (out / committed.KEY_FILE).write_text(json.dumps(key))
    fresh, fresh_items, runs, notes = build("probe")
    for model in outs:
        assert any(
            "code changed" in n and f"the {model} model is probed in this build" in n for n in notes
        )
    assert not any("reused_from" in r for r in runs.values())
    cols = ["task", "layer", "pooling", "split", "metric", "mean", "ci_low", "ci_high", "n"]
    item_cols = ["task", "layer", "pooling", "seed", "metric", "item", "value"]
    for model in outs:
        a = reused[reused["model"] == model][cols].sort_values(cols[:5]).reset_index(drop=True)
        b = fresh[fresh["model"] == model][cols].sort_values(cols[:5]).reset_index(drop=True)
        pd.testing.assert_frame_equal(a, b)
        mine = reused_items[reused_items["model"] == model][item_cols]
        theirs = fresh_items[fresh_items["model"] == model][item_cols]
        views = set(zip(mine["task"], mine["layer"], mine["pooling"], strict=True))
        assert views == committed.claim_views(fresh[fresh["model"] == model]) and len(views) < len(
            set(zip(theirs["task"], theirs["layer"], theirs["pooling"], strict=True))
        )
        kept = theirs.merge(mine[["task", "layer", "pooling"]].drop_duplicates())
        pd.testing.assert_frame_equal(
            mine.sort_values(item_cols[:6]).reset_index(drop=True),
            kept.sort_values(item_cols[:6]).reset_index(drop=True),
        )


def test_the_worked_example_probe_is_the_chapters_probe(
    tiny_corpus: Path, tiny_run: Path, tmp_path: Path
) -> None:
    """The local chapter's worked example trains its probe as the chapter's probes are
    trained (the local solver, the same frames and seed): its per-track test scores are the
    chapter's probe's, item by item."""
    from vit1d.features.embed import embed
    from vit1d.probing.probe import fit_frame_probe
    from vit1d.probing.scoring import score_tracks
    from vit1d.probing.tasks import load_task
    from vit1d.probing.views import frame_matrix

    task = load_task(tiny_corpus / "chords" / "manifest.csv", "chords")
    files = [ex.audio for ex in task.examples]
    emb = embed(tiny_run, files, cache_dir=tmp_path, frames=True, progress=False)
    cfg = ProbeConfig(max_epochs=3, steps_per_epoch=4, n_boot=20, max_train_frames=300)
    assert cfg.solver == "lbfgs" and cfg.local_solver == "adam"
    res = probe_task(task, [emb], [0], [1], ["frame"], cfg, splits=("test",))
    assert res["info"]["solver"] == "adam"
    probe, mean, std = fit_frame_probe(task, emb, 1, 0, cfg)
    assert probe.epochs_run <= cfg.max_epochs  # Adam's epochs, not L-BFGS iterations
    te = task.indices("test")
    with torch.no_grad():
        out = probe.logits((frame_matrix(emb, 1, te, None) - mean) / std, [0])[0].numpy()
    mine = score_tracks(task, emb, te, out)
    rows = [r for r in res["rows"] if r["split"] == "test"]
    for metric, (values, weights) in mine.items():
        chapter = next(r["value"] for r in rows if r["metric"] == metric)
        assert M.weighted_mean(values, weights) == pytest.approx(chapter, abs=1e-9), metric
