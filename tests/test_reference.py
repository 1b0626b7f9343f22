"""The committed reference checkpoint and its export (issue 7)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from vit1d import load_pretrained
from vit1d.errors import UserError
from vit1d.reference import MAX_BYTES, REFERENCE_DIR, export_reference, verify_reference
from vit1d.train import pretrain

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, audio_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("run") / "run"
    sets = [
        "model.dim=32",
        "model.depth=2",
        "model.heads=2",
        "model.head_dims=[64,32]",
        "train.steps=3",
        "train.batch_size=4",
        "train.num_threads=1",
    ]
    return pretrain("smoke", audio_dir, out, overrides=sets, progress=False)


def _corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    (root / "pretrain").mkdir(parents=True)
    (root / "corpus.json").write_text(json.dumps({"config": {"name": "tiny", "seed": 7}}))
    (root / "pretrain" / "manifest.csv").write_text("audio\nx.wav\n")
    return root


def test_export_writes_a_small_loadable_fp16_backbone(tiny_run: Path, tmp_path: Path) -> None:
    out = export_reference(tiny_run, _corpus(tmp_path), tmp_path / "ref", root=ROOT)
    weights = load_file(str(out / "model.safetensors"))
    assert all(v.dtype == torch.float16 for v in weights.values())
    assert not any(k.startswith("head.") for k in weights)
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["steps"] == 3 and prov["corpus"]["seed"] == 7
    assert len(prov["corpus"]["pretrain_manifest_sha256"]) == 64
    assert (out / "training_log.csv").is_file()
    # the fp16 backbone computes what the fp32 run computes, to fp16 precision
    a, b = load_pretrained(out), load_pretrained(tiny_run, head=False)
    x = torch.randn(2, 50, 128) * 20 - 40
    torch.testing.assert_close(a(x).cls, b(x).cls, atol=2e-2, rtol=2e-2)
    assert verify_reference(out) <= 1e-4


def test_verify_catches_changed_weights(tiny_run: Path, tmp_path: Path) -> None:
    out = export_reference(tiny_run, _corpus(tmp_path), tmp_path / "ref", root=ROOT)
    weights = load_file(str(out / "model.safetensors"))
    key = next(k for k in weights if k.endswith("weight") and weights[k].ndim == 2)
    weights[key] = weights[key] * 1.5
    save_file(weights, str(out / "model.safetensors"))
    with pytest.raises(UserError, match="re-export"):
        verify_reference(out)


def test_the_committed_reference_loads_and_computes_its_check() -> None:
    folder = ROOT / REFERENCE_DIR
    if not (folder / "model.safetensors").is_file():
        pytest.skip("no reference checkpoint committed yet (make reference)")
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert size <= MAX_BYTES
    assert verify_reference(folder) <= 1e-4
    prov = json.loads((folder / "provenance.json").read_text())
    for key in ("steps", "corpus", "code", "training", "weights_sha256"):
        assert prov[key], key


def test_code_revision_of_a_copy_without_git(tmp_path, monkeypatch) -> None:
    from vit1d.reference import code_revision

    monkeypatch.delenv("VIT1D_REVISION", raising=False)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # no repository above it
    assert code_revision(tmp_path) == {"commit": None, "dirty": None}
    monkeypatch.setenv("VIT1D_REVISION", "0123abc")
    assert code_revision(tmp_path) == {"commit": "0123abc", "dirty": None, "from": "VIT1D_REVISION"}
    # a real checkout ignores the variable
    root = Path(__file__).resolve().parents[1]
    if (root / ".git").exists():
        assert code_revision(root)["commit"] != "0123abc"


@pytest.mark.slow
def test_rerunning_the_reference_probes_reproduces_the_book(tmp_path: Path) -> None:
    """Probing the committed reference again on the default corpus (the key task at its best
    layer and pooling, the book's probe settings and seeds) gives the numbers the default
    book printed for it. Needs a default build in this checkout (``make book``)."""
    import pandas as pd

    from vit1d import chapters
    from vit1d.embed import ModelSpec, checkpoint_step
    from vit1d.pipeline import notebook_paths
    from vit1d.probe import ExtractOptions, run_probes

    paths = notebook_paths("default", "", "", "", "")
    summary = Path(paths.results) / "probes_summary.csv"
    if not summary.is_file():
        pytest.skip("no default book built in this checkout (make book)")
    book = pd.read_csv(summary)
    ref = book[(book["model"] == "reference") & (book["task"] == "key")]
    ref = ref[(ref["split"] == "test") & (ref["metric"] == "weighted")]
    if ref.empty:
        pytest.skip("the default book did not probe the reference checkpoint")
    best = ref.loc[ref["mean"].idxmax()]
    layer, pooling = int(best["layer"]), str(best["pooling"])

    folder = ROOT / REFERENCE_DIR
    spec = ModelSpec("checkpoint", str(folder), label="reference", step=checkpoint_step(folder))
    settings = chapters.probe_settings("default")
    run_probes(
        chapters.load_tasks(paths, ["key"]),
        [[spec]],
        tmp_path,
        seeds=settings.seeds,
        layers=[layer],
        poolings=[pooling],
        config=chapters.probe_config("default"),
        extract=ExtractOptions(cache_dir=str(Path(paths.runs) / chapters.EMBED_CACHE)),
        progress=False,
        say=lambda m: None,
    )
    again = pd.read_csv(tmp_path / "probes_summary.csv")
    again = again[(again["split"] == "test") & (again["metric"] == "weighted")].iloc[0]
    for column in ("mean", "ci_low", "ci_high", "n"):
        assert again[column] == pytest.approx(best[column], rel=1e-6, abs=1e-9), column
