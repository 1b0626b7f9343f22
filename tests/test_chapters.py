"""The book chapters' helpers (vit1d.book.chapters, vit1d.book.tables) on fabricated results:
tables pick each model's final checkpoint and best layer, the run metadata of the foil is
gathered, and the reference checkpoint joins the models only with the build's architecture."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pandas as pd

from vit1d.book import chapters, tables
from vit1d.features.sources import architecture_config
from vit1d.probing.settings import ProbeSettings


def rows():
    out = []
    for model, ckpt, step, base in (
        ("contrastive", "runs/x/pretrain", 40, 0.6),
        ("contrastive", "runs/x/pretrain/snapshots/step-00000010", 10, 0.9),
        ("masked", "runs/x/pretrain-masked", 40, 0.5),
        ("random-init", "random-init", 0, 0.3),
    ):
        for layer in range(4):
            for pooling in ("cls", "avg"):
                mean = base + 0.01 * layer + (0.02 if pooling == "avg" else 0)
                out.append(
                    {
                        "model": model,
                        "checkpoint": ckpt,
                        "step": step,
                        "task": "key",
                        "layer": layer,
                        "pooling": pooling,
                        "split": "test",
                        "metric": "weighted",
                        "mean": mean,
                        "ci_low": mean - 0.05,
                        "ci_high": mean + 0.05,
                        "run_id": "r",
                    }
                )
    return pd.DataFrame(out)


def test_best_table_uses_final_checkpoint_and_best_layer():
    t = tables.best_table(rows(), [("key", "weighted"), ("tempo", "acc1")])
    assert list(t["task"]) == ["key"]  # tasks without results are left out
    assert t["contrastive"].iloc[0].startswith("0.650") and "(L3 avg)" in t["contrastive"].iloc[0]
    assert t["masked"].iloc[0].startswith("0.550")
    assert "logmel" not in t.columns  # no results, no column


def test_best_view_is_where_the_final_model_peaks():
    # the snapshot scores higher everywhere (0.9 base) but is not the final model
    assert tables.best_view(rows(), "key") == (3, "avg")
    assert tables.best_view(rows(), "key", model="masked") == (3, "avg")
    other = rows()
    other.loc[(other["model"] == "contrastive") & (other["step"] == 40) & (other["layer"] == 1)
              & (other["pooling"] == "cls"), "mean"] = 0.99  # fmt: skip
    assert tables.best_view(other, "key") == (1, "cls")
    assert tables.best_view(rows(), "tempo") is None  # never probed


def test_pooling_and_reference_tables():
    p = tables.pooling_table(rows(), [("key", "weighted")])
    assert p["cls"].iloc[0].startswith("0.630") and p["avg"].iloc[0].startswith("0.650")
    ref = tables.reference_global_table(rows())
    key = ref[ref["task"] == "key"].iloc[0]
    assert key["published cls (L12)"] == "0.539" and key["ours cls (L3)"].startswith("0.630")


def test_pretrain_runs_and_compute_table(tmp_path):
    for name, objective in (("a", "contrastive"), ("b", "masked")):
        (tmp_path / name).mkdir()
        run = {"objective": objective, "steps": 40, "views_per_step": 32}
        run["train_flops_per_step"] = 6.5e9
        (tmp_path / name / "run.json").write_text(json.dumps(run))
    paths = SimpleNamespace(results=tmp_path)
    out = chapters.write_pretrain_runs(
        paths, {"contrastive": tmp_path / "a", "masked": tmp_path / "b"}
    )
    meta = json.loads(out.read_text())
    assert (
        meta["masked"]["objective"] == "masked" and meta["contrastive"]["frames_per_view"] is None
    )
    table = chapters.compute_table(meta)
    assert table.loc["optimiser steps", "masked"] == 40
    assert table.loc["frames per view", "contrastive"] == "-"


def test_reference_joins_the_models_only_with_the_builds_architecture(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from vit1d.models.checkpoint import save_pretrained
    from vit1d.models.model import ViT1D

    small = {"dim": 32, "depth": 2, "heads": 2, "head": "none"}
    build = save_pretrained(ViT1D(**small), tmp_path / "runs" / "pretrain")
    paths = SimpleNamespace(checkpoint=build, runs=tmp_path / "runs")
    settings = ProbeSettings(seeds=(0,))
    ref = tmp_path / "reference"
    monkeypatch.setattr(chapters, "reference_checkpoint", lambda: ref)
    _, notes = chapters.model_sources(paths, settings, masked=False)
    assert any("make reference" in n for n in notes)
    save_pretrained(ViT1D(**{**small, "depth": 3}), ref)
    sources, notes = chapters.model_sources(paths, settings, masked=False)
    assert any("architecture differs" in n for n in notes)
    assert "reference" not in {g[0].name for g in sources}
    save_pretrained(ViT1D(**small), ref)
    sources, _ = chapters.model_sources(paths, settings, masked=False)
    assert [g[0].name for g in sources][:2] == ["contrastive", "reference"]


def test_the_committed_reference_has_the_default_books_backbone():
    """The default book probes the committed reference beside its model only when their
    backbones match; heads, and keys an older checkpoint lacks, do not count."""
    base = architecture_config("default")
    assert chapters.same_backbone(architecture_config(str(chapters.reference_checkpoint())), base)
    heads = {**base, "head": "none", "head_dims": [8], "twin_head": True}
    assert chapters.same_backbone(base, heads)
    assert chapters.same_backbone({k: v for k, v in base.items() if k != "twin_head"}, base)
    assert not chapters.same_backbone(base, {**base, "depth": 6})
    assert not chapters.same_backbone(base, {**base, "mask_token": True})
