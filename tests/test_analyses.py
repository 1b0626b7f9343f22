"""The analyses driver on a tiny corpus built here: manifests in the corpus format
(docs/design.md, "Public API"), synthetic audio with onsets and chords placed by construction, a tiny
checkpoint; never the corpus builder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from vit1d.analysis import analyses, clips, ssm_scores
from vit1d.core.errors import UserError
from vit1d.core.provenance import weights_fingerprint
from vit1d.models.checkpoint import load_pretrained

SR = 16_000
ROOTS = [(60, 64, 67), (57, 60, 64), (53, 57, 60), (55, 59, 62)]
NAMES = ["C:maj", "A:min", "F:maj", "G:maj"]


def render(seed: int, seconds: float = 5.0) -> tuple[np.ndarray, list, list]:
    """Chords every second (melody notes every 0.5 s on top): audio, chord segments,
    onsets."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    y = 0.002 * rng.standard_normal(n)
    chords, onsets = [], []
    for k, start in enumerate(np.arange(0.0, seconds, 1.0)):
        c = int(rng.integers(0, 4)) if k else k
        end = min(start + 1.0, seconds)
        chords.append((start, end, NAMES[c]))
        seg = (t >= start) & (t < end)
        for m in ROOTS[c]:
            y[seg] += 0.05 * np.sin(2 * np.pi * 440 * 2 ** ((m - 69) / 12) * (t[seg] - start))
        for o in (start + 0.05, start + 0.55):
            if o >= seconds:
                continue
            onsets.append(o)
            tt = t[(t >= o) & (t < o + 0.4)] - o
            f0 = 440 * 2 ** ((ROOTS[c][0] + 12 - 69) / 12)
            y[(t >= o) & (t < o + 0.4)] += 0.3 * np.sin(2 * np.pi * f0 * tt) * np.exp(-tt / 0.1)
    return (0.5 * y / np.abs(y).max()).astype(np.float32), chords, onsets


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    for d in ("audio", "annotations", "onsets", "chords"):
        (root / d).mkdir()
    rows = []
    for i, split in enumerate(["valid", "valid", "test", "test", "train"]):
        y, chords, onsets = render(i)
        sf.write(root / "audio" / f"c{i}.wav", y, SR)
        (root / "annotations" / f"c{i}.lab").write_text(
            "".join(f"{s:.4f}\t{e:.4f}\t{lab}\n" for s, e, lab in chords)
        )
        (root / "annotations" / f"c{i}.txt").write_text(
            "# onsets\n" + "".join(f"{o:.4f}\n" for o in onsets)
        )
        rows.append((i, split))
    for task, ext in (("onsets", "txt"), ("chords", "lab")):
        lines = ["audio,split,annotation,work,render_id,instrumentation"]
        lines += [
            f"../audio/c{i}.wav,{s},../annotations/c{i}.{ext},w{i},music/{i:05d},piano"
            for i, s in rows
        ]
        (root / task / "manifest.csv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from vit1d.models.checkpoint import save_pretrained
    from vit1d.models.model import ViT1D

    torch.manual_seed(1)
    model = ViT1D(dim=16, depth=2, heads=2, head="none")
    return save_pretrained(model, tmp_path_factory.mktemp("ckpt") / "model")


@pytest.fixture(scope="module")
def results(corpus: Path, checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("results")
    analyses.run_analyses(checkpoint, corpus, out, n_shuffles=3, progress=False, log=lambda s: None)
    return out


def test_onset_results(results: Path):
    df = pd.read_csv(results / "onsets.csv")
    assert set(df["split"]) == {"test"}
    assert set(df["clip"]) == {"music/00002", "music/00003"}
    assert set(df["model"]) == {"trained", "random", "spectral_flux", "chance"}
    att = df[df["model"] == "trained"]
    assert set(att["layer"]) == {1, 2}
    assert set(att["head"].astype(str)) == {"0", "1", "mean", "rollout"}
    assert df["f"].between(0, 1).all()
    assert df["run_id"].nunique() == 1
    # spectral flux on this clean synthetic audio finds its onsets: the labels were read
    # and aligned (a broken path or time base would give F near 0)
    summary = pd.read_csv(results / "onsets_summary.csv")
    flux = summary[summary["model"] == "spectral_flux"]
    assert flux["f"].iloc[0] > 0.8
    assert summary[summary["model"] == "chance"]["f"].iloc[0] < 0.5
    tuning = pd.read_csv(results / "onsets_tuning.csv")
    assert set(tuning["n_clips"]) == {2}


def test_ssm_results(results: Path):
    df = pd.read_csv(results / "ssm.csv")
    assert set(df["model"]) == {"trained", "random", "logmel"}
    assert set(df[df["model"] == "trained"]["layer"]) == {0, 1, 2}
    assert set(df["dimension"]) == {"chroma", "chords", "mfcc", "rms", "tempogram", "position"}
    assert set(df["window"]) == {0, 1}  # 5 s = 157 frames: windows of 126 and 31 frames
    s = pd.read_csv(results / "ssm_summary.csv")
    np.testing.assert_allclose(s["above_chance"], s["score"] - s["chance"], atol=2e-6)
    nov = pd.read_csv(results / "novelty_summary.csv")
    assert set(nov["model"]) == {"trained", "random", "logmel", "chroma", "chance"}
    # chroma novelty finds the chord changes of clean synthetic chords
    assert nov[nov["model"] == "chroma"]["f"].iloc[0] > 0.7


def test_provenance(results: Path, checkpoint: Path, corpus: Path):
    prov = json.loads((results / "provenance.json").read_text())
    assert prov["seed"] == 0
    model = load_pretrained(checkpoint, head=False)
    assert prov["checkpoint"]["weights_sha256"] == weights_fingerprint(model)
    assert set(prov["corpus"]["manifests_sha256"]) == {"onsets", "chords"}
    assert "hardware" in prov and "versions" in prov
    assert prov["run_id"] == pd.read_csv(results / "ssm.csv", dtype=str)["run_id"].iloc[0]
    assert "onsets.csv" in prov["files"]


def test_random_twin_is_seeded_and_differs(checkpoint: Path):
    import torch

    from vit1d.models.checkpoint import load_pretrained

    model = load_pretrained(checkpoint, head=False)
    a, b = clips.random_twin(model, 3), clips.random_twin(model, 3)
    for (_, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert not torch.equal(a.frame_proj.weight, model.frame_proj.weight)


def test_cli_help_and_user_errors(tmp_path: Path, checkpoint: Path, capsys):
    from vit1d.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["analyses", "--help"])
    assert exc.value.code == 0
    assert "--checkpoint" in capsys.readouterr().out
    (tmp_path / "empty").mkdir()
    code = main(
        [
            "analyses",
            "--checkpoint",
            str(checkpoint),
            "--corpus",
            str(tmp_path / "empty"),
            "--out",
            str(tmp_path / "o"),
            "--no-progress",
        ]
    )
    assert code == 2
    assert "manifest" in capsys.readouterr().err
    with pytest.raises(UserError, match="no manifest"):
        clips.read_manifest(tmp_path, "onsets")


def test_read_results_and_examples(results: Path, corpus: Path, checkpoint: Path):
    res = analyses.read_results(results)
    assert {"onsets", "onsets_summary", "ssm_summary", "novelty_summary"} <= set(res)
    assert set(res["onsets"]["head"]) >= {"0", "mean", "rollout"}  # heads stay strings
    with pytest.raises(UserError, match="no analyses results"):
        analyses.read_results(corpus)
    from vit1d.audio.frontend import LogMel
    from vit1d.models.checkpoint import load_pretrained

    model = load_pretrained(checkpoint, head=False)
    row = clips.read_manifest(corpus, "chords").iloc[2].to_dict()
    clip = clips.load_clip(row, LogMel())
    mats = ssm_scores.example_ssms(clip, {"trained": model, "random": model}, layers=[1, 2])
    assert list(mats)[:3] == ["trained layer 1", "trained layer 2", "random layer 2"]
    assert all(m.shape == (126, 126) for m in mats.values())
    # the chord-label panel is the exact labels: C major for the first second
    chords = mats["chords (harmony)"]
    assert chords[:31, :31].min() == 1.0


def test_select_clips_is_seeded_and_ordered(corpus: Path):
    df = clips.read_manifest(corpus, "onsets")
    a = clips.select_clips(df, "valid", 1, seed=0)
    assert len(a) == 1 and a.equals(clips.select_clips(df, "valid", 1, seed=0))
    assert len(clips.select_clips(df, "valid", 0, seed=0)) == 2


def test_instrument_labels_become_a_dimension(corpus: Path, tmp_path: Path):
    """A manifest may name time-resolved instrument labels (``instruments`` column, a file
    ``mir_eval.io.load_labeled_intervals`` reads); the clip then gets that reference."""
    from vit1d.audio.frontend import LogMel

    row = clips.read_manifest(corpus, "chords").iloc[2].to_dict()
    lab = tmp_path / "inst.lab"
    lab.write_text("0.0\t2.0\tpiano\n2.0\t5.0\tviolin\n")
    row["instruments"] = str(lab)
    clip = clips.load_clip(row, LogMel())
    refs = ssm_scores.clip_references(clip)
    frames = np.arange(len(refs["instrument"])) / (16_000 / 512)
    np.testing.assert_array_equal(refs["instrument"] == "piano", frames < 2.0)


def test_library_never_switches_the_matplotlib_backend() -> None:
    """``matplotlib.use`` in library code changes the backend of the whole process: a notebook
    that called such a function (the corpus statistics, the analyses' figures, the benchmark's
    corpus) lost its inline figures afterwards."""
    import re

    root = Path(__file__).resolve().parents[1] / "src"
    pattern = re.compile(r"\b(matplotlib|mpl)\.use\(")
    offenders = [
        str(p.relative_to(root)) for p in root.rglob("*.py") if pattern.search(p.read_text())
    ]
    assert offenders == []
