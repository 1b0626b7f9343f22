"""Choosing probes on validation, paired comparisons from per-item results, chance levels.

Fabricated summaries and per-item tables (no model runs) where the two protocols disagree, so
each test fails if the ledger goes back to choosing on test, unpaired intervals, layer 0 in
C1 or tasks at chance in claim E.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vit1d.ledger import evidence, probing_claims
from vit1d.probing import compare, tasks
from vit1d.probing.compare import (
    PRIMARY_METRIC,
    best_row,
    chance_levels,
    probe_difference,
    versus_chance,
)
from vit1d.probing.items import ItemStore, scalar_items, tagging_items, write_items
from vit1d.probing.paired import paired_bootstrap

CKPT = {"contrastive": "runs/x/pretrain", "masked": "runs/x/pretrain-masked"}


def row(model, task, layer, pooling, mean, split="test", half=0.05, metric=None):
    return {
        "model": model,
        "checkpoint": CKPT.get(model, "-" if model == "logmel" else "init-seed-0"),
        "step": 100 if model in CKPT else np.nan,
        "corpus": "fake",
        "task": task,
        "layer": layer,
        "pooling": pooling,
        "split": split,
        "metric": metric or PRIMARY_METRIC[task],
        "mean": mean,
        "ci_low": mean - half,
        "ci_high": mean + half,
        "n": 400,
        "unit": "clip",
        "run_id": "r1",
    }


def test_the_layer_is_chosen_on_valid_and_reported_on_test() -> None:
    # valid says layer 2, test says layer 5: the choice follows valid, the number is test's
    rows = pd.DataFrame(
        [
            row("contrastive", "key", 2, "avg", 0.70, "test"),
            row("contrastive", "key", 2, "avg", 0.80, "valid"),
            row("contrastive", "key", 5, "avg", 0.90, "test"),
            row("contrastive", "key", 5, "avg", 0.60, "valid"),
            row("contrastive", "key", 5, "cls", 0.95, "test"),
            row("contrastive", "key", 5, "cls", 0.50, "valid"),
        ]
    )
    r = best_row(rows, "key")
    assert (int(r["layer"]), r["pooling"], r["chosen_on"]) == (2, "avg", "valid")
    assert r["mean"] == pytest.approx(0.70) and r["valid_mean"] == pytest.approx(0.80)
    # without valid rows (older results) the test split decides, and says so
    r = best_row(rows[rows["split"] == "test"], "key")
    assert (int(r["layer"]), r["pooling"], r["chosen_on"]) == (5, "cls", "test")
    # the claims read it the same way: E compares the model's layer-2 test score
    base = [row("random-init", "key", 1, "avg", 0.50, s) for s in ("valid", "test")] + [
        row("logmel", "key", 0, "meanstd", 0.40, s) for s in ("valid", "test")
    ]
    e = probing_claims.claim_e(evidence.Inputs(probes=pd.concat([rows, pd.DataFrame(base)])))
    first = e.comparisons[0]
    assert "layer 2 avg" in first.a and first.a_value == pytest.approx(0.70)


def test_c1_leaves_layer_0_out() -> None:
    """At layer 0 the poolings are the same features: a large layer-0 gap must not count."""
    rows = []
    for task in tasks.GLOBAL_TASKS:
        for split in ("valid", "test"):
            rows += [row("contrastive", task, 0, "avg", 0.9, split, half=0.01)]
            rows += [row("contrastive", task, 0, "cls", 0.1, split, half=0.01)]
            rows += [row("contrastive", task, 1, "avg", 0.5, split, half=0.01)]
            rows += [row("contrastive", task, 1, "cls", 0.6, split, half=0.01)]
    c1 = probing_claims.claim_c1(evidence.Inputs(probes=pd.DataFrame(rows)))
    assert c1.verdict == "does not hold"
    assert all("layer 1" in c.a and "layer 1" in c.b for c in c1.comparisons)


def _scores(n: int, seed: int) -> np.ndarray:
    """Per-item scores with a large item-to-item spread (items of very different difficulty)."""
    return np.random.default_rng(seed).uniform(0, 1, n)


def _results(tmp_path, gain: float, n: int = 300, seeds=(0, 1)) -> tuple[pd.DataFrame, ItemStore]:
    """A results folder: the contrastive model scores ``gain`` above random init on every
    item of key, plus item noise; log-mel is far below. Summary intervals are the unpaired
    per-model ones, wide from the item spread."""
    rng = np.random.default_rng(1)
    base = _scores(n, 0)
    items = [f"key/audio/{i}.flac" for i in range(n)]
    per_model = {
        "contrastive": base + gain,
        "random-init": base,
        "logmel": base - 0.3,
    }
    frames, summary = [], []
    for model, values in per_model.items():
        layer, pooling = (0, "meanstd") if model == "logmel" else (3, "avg")
        mats = []
        for seed in seeds:
            v = values + rng.normal(0, 0.01, n)
            mats.append(v)
            probe = {
                "model": model,
                "checkpoint": CKPT.get(model, "-" if model == "logmel" else "init-seed-0"),
                "corpus": "fake",
                "task": "key",
                "layer": layer,
                "pooling": pooling,
                "seed": seed,
                "split": "test",
                "metric": "weighted",
            }
            frames.append(scalar_items(probe, items, v, None))
        m = np.mean(mats)
        half = 1.96 * np.std(values) / np.sqrt(n)
        for split in ("valid", "test"):
            summary.append({**row(model, "key", layer, pooling, m, split, half=half), "n": n})
    write_items(tmp_path, frames)
    return pd.DataFrame(summary), ItemStore(tmp_path)


def test_paired_interval_from_items_is_narrow_where_the_unpaired_one_is_not(tmp_path) -> None:
    summary, store = _results(tmp_path, gain=0.02)
    a = best_row(evidence.final_both(summary, "contrastive"), "key")
    b = best_row(evidence.final_both(summary, "random-init"), "key")
    res = probe_difference(a, b, store)
    assert res is not None and res.n_items == 300
    assert res.diff == pytest.approx(0.02, abs=0.003)
    assert res.ci_low > 0  # paired: the shared item difficulty cancels
    lo, hi = compare.normal_diff(a, b)[1:]
    assert lo < 0 < hi  # unpaired normal approximation: unclear
    # the same interval as vit1d.probing.paired on the matrices (independent of the item store)
    ma, wa, _, _ = store.scores(a)
    mb, _, _, _ = store.scores(b)
    ref = paired_bootstrap(ma, mb, wa, n_boot=2000, seed=0)
    assert (res.ci_low, res.ci_high) == pytest.approx((ref.ci_low, ref.ci_high))
    # claim E uses it: with items the task beats random init; without, it does not
    with_items = probing_claims.claim_e(evidence.Inputs(probes=summary, items=store))
    without = probing_claims.claim_e(evidence.Inputs(probes=summary))
    vs_random = [c for c in with_items.comparisons if c.name == "key vs random-init"][0]
    assert vs_random.outcome == "for" and "paired bootstrap over 300" in vs_random.method
    assert vs_random.n_items == 300
    old = [c for c in without.comparisons if c.name == "key vs random-init"][0]
    assert old.outcome == "unclear" and "normal approximation" in old.method


def test_load_inputs_finds_the_items_and_the_precision_table(tmp_path) -> None:
    summary, _ = _results(tmp_path, gain=0.02)
    summary.to_csv(tmp_path / "probes_summary.csv", index=False)
    inp = evidence.load_inputs(tmp_path)
    assert inp.items is not None and "items" in inp.sources
    table = probing_claims.precision_table(inp)
    key = table.set_index("task").loc["key"]
    assert key["test items"] == 300 and 0 < key["vs random-init"] < 0.01
    assert key["met"] == "-"  # no second model of ours (masked, reference) in these results


def test_tagging_difference_pairs_the_clips(tmp_path) -> None:
    rng = np.random.default_rng(3)
    n, tags = 120, ["a", "b", "c"]
    y = (rng.uniform(size=(n, 3)) < 0.3).astype(float)
    y[0], y[1] = 1, 0
    items = [f"tagging/audio/{i}.flac" for i in range(n)]
    shared = rng.normal(size=(n, 3))
    frames, summary = [], []
    for model, signal in (("contrastive", 1.5), ("random-init", 0.2)):
        ckpt = CKPT.get(model, "init-seed-0")
        for seed in (0, 1):
            logits = signal * y + shared + 0.1 * rng.normal(size=(n, 3))
            probe = {"model": model, "checkpoint": ckpt, "corpus": "fake", "task": "tagging"}
            probe.update({"layer": 2, "pooling": "avg", "seed": seed, "split": "test"})
            frames.append(tagging_items(probe, items, tags, logits, y))
        summary.append(row(model, "tagging", 2, "avg", 0.5))
    write_items(tmp_path, frames)
    store = ItemStore(tmp_path)
    a, b = (pd.Series(r) for r in summary)
    res = probe_difference(a, b, store)
    assert res is not None and res.n_items == n and res.ci_low > 0
    y_back, mats, names, seeds = store.tagging(a)
    assert names == sorted(items) and seeds == [0, 1] and y_back.shape == (n, 3)


def test_claim_e_leaves_out_a_task_at_chance() -> None:
    rows = []
    for split in ("valid", "test"):
        rows += [
            row("contrastive", "tempo", 3, "avg", 0.09, split),
            row("random-init", "tempo", 3, "avg", 0.08, split),
            row("logmel", "tempo", 0, "meanstd", 0.07, split),
            row("chance", "tempo", 0, "prior", 0.06, split, half=np.nan),
            row("contrastive", "key", 3, "avg", 0.9, split, half=0.01),
            row("random-init", "key", 3, "avg", 0.5, split, half=0.01),
            row("logmel", "key", 0, "meanstd", 0.5, split, half=0.01),
            row("chance", "key", 0, "prior", 0.1, split, half=np.nan),
        ]
    probes = pd.DataFrame(rows)
    assert chance_levels(probes) == {("tempo", "acc1"): 0.06, ("key", "weighted"): 0.1}
    e = probing_claims.claim_e(evidence.Inputs(probes=probes))
    assert "left out at chance: tempo" in e.reason and "1 of 1 tasks" in e.reason
    assert any("tempo: best acc1 0.090 (CI low 0.040) is 1.5x chance" in n for n in e.notes)
    assert any("key: best weighted 0.900" in n and ": above chance" in n for n in e.notes)
    assert not any(c.name.startswith("tempo") for c in e.comparisons)
    # 1 beaten, tempo out, 5 tasks without results: 4 is still within reach
    assert e.verdict == "inconclusive"
    # significantly above chance (though under the 2x target): tempo counts
    tight = probes.copy()
    is_model = (tight["task"] == "tempo") & (tight["model"] == "contrastive")
    tight.loc[is_model, "ci_low"] = 0.085
    e = probing_claims.claim_e(evidence.Inputs(probes=tight))
    assert "left out" not in e.reason and "of 2 tasks" in e.reason


def test_versus_chance_reports_the_best_model_at_its_chosen_view() -> None:
    rows = []
    for split, (c, r) in (("valid", (0.20, 0.10)), ("test", (0.15, 0.12))):
        rows += [row("contrastive", "tempo", 3, "avg", c, split)]
        rows += [row("random-init", "tempo", 3, "avg", r, split)]
        rows += [row("chance", "tempo", 0, "prior", 0.05, split, half=np.nan)]
    vs = versus_chance(pd.DataFrame(rows), "tempo", ["contrastive", "random-init"])
    assert vs["model"] == "contrastive" and vs["value"] == pytest.approx(0.15)
    assert vs["ratio"] == pytest.approx(3.0)
    assert versus_chance(pd.DataFrame(rows[:2]), "tempo", ["contrastive"]) is None
