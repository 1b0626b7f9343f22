"""The committed reference checkpoint and its export."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from vit1d import load_pretrained
from vit1d.core.errors import UserError
from vit1d.pretrain.train import pretrain
from vit1d.probing.settings import probe_config, probe_settings
from vit1d.studies.reference import (
    CHECK_RTOL,
    MAX_BYTES,
    MAX_RESULTS_BYTES,
    REFERENCE_DIR,
    check_deviation,
    export_reference,
    own_bytes,
    verify_reference,
)

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
    assert verify_reference(out) <= 1e-5  # same machine, same kernels: float32 round-off only


def test_verify_catches_changed_weights(tiny_run: Path, tmp_path: Path) -> None:
    out = export_reference(tiny_run, _corpus(tmp_path), tmp_path / "ref", root=ROOT)
    weights = load_file(str(out / "model.safetensors"))
    key = next(k for k in weights if k.endswith("weight") and weights[k].ndim == 2)
    weights[key] = weights[key] * 1.5
    save_file(weights, str(out / "model.safetensors"))
    with pytest.raises(UserError, match="re-export"):
        verify_reference(out)


def _copy_reference(tmp_path: Path) -> Path:
    folder = ROOT / REFERENCE_DIR
    if not (folder / "model.safetensors").is_file():
        pytest.skip("no reference checkpoint committed yet (make reference)")
    out = tmp_path / "ref"
    out.mkdir()
    for name in ("model.safetensors", "config.json", "check.json", "provenance.json"):
        shutil.copy(folder / name, out / name)
    return out


def test_one_reference_weight_changed_by_1e_3_fails_the_check(tmp_path: Path) -> None:
    """A single weight of a late block moved by 1e-3 changes the check embeddings by about
    1e-7 of their scale, below float32 noise across CPUs: the weights' hash catches it."""
    out = _copy_reference(tmp_path)
    weights = load_file(str(out / "model.safetensors"))
    key = "blocks.11.attn.qkv.weight"
    flat = weights[key].view(-1)
    flat[0] = (flat[0].float() + 1e-3).to(flat.dtype)
    save_file(weights, str(out / "model.safetensors"))
    with pytest.raises(UserError, match="not the exported ones"):
        verify_reference(out)


def test_a_changed_computation_fails_the_embedding_check(tmp_path: Path) -> None:
    """Same weights (hash intact), other numbers in check.json: the scale-relative check
    flags a deviation of 1 % of a layer's RMS, and accepts one of 1e-4 (float32 noise across
    CPU kernels is about 2e-4)."""
    out = _copy_reference(tmp_path)
    check = json.loads((out / "check.json").read_text())
    rng = np.random.default_rng(0)
    for scale, fails in ((1e-2, True), (1e-4, False)):
        shifted = {}
        for k, v in check.items():
            e = np.asarray(v)
            rms = np.sqrt(np.mean(e**2))
            shifted[k] = (e + scale * rms * rng.choice([-1.0, 1.0], size=e.shape)).tolist()
        (out / "check.json").write_text(json.dumps(shifted))
        if fails:
            with pytest.raises(UserError, match="relative"):
                verify_reference(out)
        else:
            assert 5e-5 < verify_reference(out) < CHECK_RTOL


def test_check_deviation_is_relative_to_each_layers_scale() -> None:
    expected = {"0": [[0.5, -0.5]], "12": [[30.0, -30.0]]}
    got = {"0": [[0.5005, -0.5]], "12": [[30.003, -30.0]]}
    dev = check_deviation(expected, got)
    assert dev["0"] == pytest.approx(1e-3) and dev["12"] == pytest.approx(1e-4)


def test_the_committed_reference_loads_and_computes_its_check() -> None:
    folder = ROOT / REFERENCE_DIR
    if not (folder / "model.safetensors").is_file():
        pytest.skip("no reference checkpoint committed yet (make reference)")
    for part in (folder, folder / "foil"):
        if not (part / "model.safetensors").is_file():
            continue
        assert own_bytes(part) <= MAX_BYTES  # weights, logs and checks
        results = sum(p.stat().st_size for p in (part / "results").rglob("*") if p.is_file())
        assert results <= MAX_RESULTS_BYTES
        assert verify_reference(part) <= CHECK_RTOL
    prov = json.loads((folder / "provenance.json").read_text())
    for key in ("steps", "corpus", "code", "training", "weights_sha256"):
        assert prov[key], key


def test_code_revision_of_a_copy_without_git(tmp_path, monkeypatch) -> None:
    from vit1d.studies.reference import code_revision

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
@pytest.mark.timeout(1800)  # probes the default corpus, extracting it if its cache is gone
def test_rerunning_the_reference_probes_reproduces_the_book(tmp_path: Path) -> None:
    """Probing the committed reference again on the default corpus (the key task at its best
    layer and pooling, the book's probe settings and seeds) gives the numbers the default
    book printed for it. Needs a default build in this checkout (``make book``)."""
    import pandas as pd

    from vit1d.book import chapters
    from vit1d.book.layout import notebook_paths
    from vit1d.features.sources import ModelSpec, checkpoint_step
    from vit1d.probing.runner import ExtractOptions, run_probes

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
    settings = probe_settings("default")
    run_probes(
        chapters.load_tasks(paths, ["key"]),
        [[spec]],
        tmp_path,
        seeds=settings.seeds,
        layers=[layer],
        poolings=[pooling],
        config=probe_config("default"),
        extract=ExtractOptions(cache_dir=str(Path(paths.runs) / chapters.EMBED_CACHE)),
        progress=False,
        say=lambda m: None,
    )
    again = pd.read_csv(tmp_path / "probes_summary.csv")
    again = again[(again["split"] == "test") & (again["metric"] == "weighted")].iloc[0]
    for column in ("mean", "ci_low", "ci_high", "n"):
        assert again[column] == pytest.approx(best[column], rel=1e-6, abs=1e-9), column


@pytest.mark.parametrize("model", ["reference", "masked", "random-init"])
def test_the_committed_probes_match_the_default_books_settings(model: str) -> None:
    """The probe results committed beside the reference, the foil and for the random-init
    baseline are what the default book would compute (these weights, its probe seeds and
    settings, this code): otherwise every default build probes them again
    (`make reference-probes` refreshes them)."""
    from vit1d.probing.committed import KEY_FILE, RESULTS_DIR, code_fingerprint, weights_id
    from vit1d.probing.tasks import GLOBAL_TASKS, LOCAL_TASKS
    from vit1d.studies.reference import committed_sources

    sources = committed_sources(ROOT / REFERENCE_DIR)
    if model not in sources:
        pytest.skip(f"no {model} checkpoint committed yet (make reference, make foil)")
    group, folder = sources[model]
    key_file = folder / RESULTS_DIR / KEY_FILE
    assert key_file.is_file(), "no committed probe results: make reference-probes"
    key = json.loads(key_file.read_text())
    settings = probe_settings("default")
    assert key["seeds"] == list(settings.seeds)
    assert key["config"] == json.loads(json.dumps(asdict(probe_config("default"))))
    assert key["weights_sha256"] == weights_id(group)
    if model != "random-init":
        prov = json.loads((folder / "provenance.json").read_text())
        assert key["weights_sha256"] == prov["weights_sha256"]
    assert key["code"] == code_fingerprint(), "the probing code changed: make reference-probes"
    assert set(key["tasks"]) == set(GLOBAL_TASKS + LOCAL_TASKS)
