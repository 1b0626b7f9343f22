"""Where a build's masked foil comes from (vit1d.book.foil): the committed foil is taken only
with the build's training settings and pretraining pool, and placed as a trained run would be."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vit1d import load_pretrained
from vit1d.book import chapters
from vit1d.book.foil import FILES, choose_foil, place_foil, training_differences
from vit1d.core.provenance import file_sha256
from vit1d.pretrain.config import load_config
from vit1d.pretrain.train import pretrain
from vit1d.studies.reference import export_reference

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def committed(tmp_path_factory: pytest.TempPathFactory, audio_dir: Path) -> Path:
    """A tiny masked run exported as ``make foil`` exports the default preset's foil."""
    tmp = tmp_path_factory.mktemp("foil")
    sets = [
        "model.dim=32",
        "model.depth=2",
        "model.heads=2",
        "train.steps=3",
        "train.batch_size=4",
        "train.num_threads=1",
        "loss.objective=masked",
    ]
    run = pretrain("smoke", audio_dir, tmp / "run", overrides=sets, progress=False)
    corpus = tmp / "corpus"
    (corpus / "pretrain").mkdir(parents=True)
    (corpus / "corpus.json").write_text(json.dumps({"config": {"name": "tiny", "seed": 7}}))
    (corpus / "pretrain" / "manifest.csv").write_text("audio\nx.wav\n")
    return export_reference(run, corpus, tmp / "committed", root=ROOT)


def _as_if_trained_with(folder: Path, config, manifest: Path) -> None:
    """Record in the committed foil's provenance that it was trained with ``config`` on
    ``manifest`` (what choose_foil compares)."""
    prov = json.loads((folder / "provenance.json").read_text())
    prov["training"] = config.to_dict()
    prov["corpus"]["pretrain_manifest_sha256"] = file_sha256(manifest)
    (folder / "provenance.json").write_text(json.dumps(prov))


def test_training_differences_leave_run_time_settings_aside() -> None:
    a = load_config("default", ["loss.objective=masked"]).to_dict()
    same = load_config(
        "default",
        [
            "loss.objective=masked",
            "train.precision=fp32",
            "train.num_threads=1",
            "data.cache_dir=x",
        ],
    ).to_dict()
    assert training_differences(a, same) == []
    other = load_config("default", ["loss.objective=masked", "train.steps=300", "seed=3"])
    assert training_differences(a, other.to_dict()) == ["seed", "train.steps"]
    assert training_differences(a, load_config("default").to_dict()) == ["loss.objective"]


def test_the_committed_foil_is_taken_only_with_the_builds_inputs(
    committed: Path, tmp_path: Path
) -> None:
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("audio\na.wav\n")
    config = load_config("default", ["loss.objective=masked", "train.precision=fp32"])
    _as_if_trained_with(committed, config, manifest)
    taken = choose_foil("default", config, manifest, committed)
    assert taken.folder == committed and "trained with these settings" in taken.reason

    longer = load_config("default", ["loss.objective=masked", "train.steps=1200"])
    why = choose_foil("default", longer, manifest, committed)
    assert why.folder is None and "train.steps" in why.reason
    other_pool = tmp_path / "other.csv"
    other_pool.write_text("audio\nb.wav\n")
    why = choose_foil("default", config, other_pool, committed)
    assert why.folder is None and "another pretraining pool" in why.reason
    why = choose_foil("smoke", config, manifest, committed)
    assert why.folder is None and "foil: train" in why.reason
    why = choose_foil("default", config, manifest, tmp_path / "nothing")
    assert why.folder is None and "make foil" in why.reason


def test_placing_the_foil_gives_a_run_folder_the_chapters_read(
    committed: Path, tmp_path: Path
) -> None:
    out = tmp_path / "runs" / "pretrain-masked"
    out.mkdir(parents=True)
    (out / "model.safetensors").write_bytes(b"a foil trained before")
    assert place_foil(committed, out) == out
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES.values())
    assert (out.with_name("pretrain-masked.previous") / "model.safetensors").read_bytes() == (
        b"a foil trained before"
    )
    model = load_pretrained(out, head=False)
    assert model.config["mask_token"] is True
    meta = chapters.run_metadata(out)
    assert meta["objective"] == "masked" and meta["steps"] == 3
    assert (out / "log.csv").read_text() == (committed / "training_log.csv").read_text()

    # placed again: the same weights are kept where they are, nothing moved aside
    before = (out / "model.safetensors").stat().st_mtime_ns
    (out.with_name("pretrain-masked.previous") / "model.safetensors").unlink()
    assert place_foil(committed, out) == out
    assert (out / "model.safetensors").stat().st_mtime_ns == before
    assert not (out.with_name("pretrain-masked.previous") / "model.safetensors").exists()


def test_exporting_the_reference_keeps_the_committed_foil(committed: Path, tmp_path: Path) -> None:
    """The reference folder's parts are artefacts of their own: exporting the reference again
    keeps its foil and random-init results, and the size limit counts its own files only."""
    import shutil

    ref = tmp_path / "reference"
    shutil.copytree(committed, ref)
    shutil.copytree(committed, ref / "foil")
    (ref / "random-init" / "results").mkdir(parents=True)
    (ref / "random-init" / "results" / "reuse.json").write_text("{}")
    run = committed.parent / "run"
    corpus = committed.parent / "corpus"
    export_reference(run, corpus, ref, root=ROOT)
    assert file_sha256(ref / "foil" / "model.safetensors") == file_sha256(
        committed / "model.safetensors"
    )
    assert (ref / "random-init" / "results" / "reuse.json").read_text() == "{}"
