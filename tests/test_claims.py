"""The claims ledger: fabricated results for both outcomes of every claim flip its verdict.

A different result gives a different verdict. Each claim gets a
results set that supports it, one that contradicts it, and none at all.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from vit1d.ledger import claims, verdicts
from vit1d.ledger.claims import evaluate
from vit1d.ledger.evidence import Inputs
from vit1d.probing import compare, tasks

GLOBAL = tasks.GLOBAL_TASKS
LOCAL = tasks.LOCAL_TASKS
CKPT = {"contrastive": "runs/x/pretrain", "masked": "runs/x/pretrain-masked"}


def row(model, task, layer, pooling, mean, half=0.01, checkpoint=None, step=100):
    """One probes_summary.csv row (test split, primary metric)."""
    return {
        "model": model,
        "checkpoint": checkpoint or CKPT.get(model, "init-seed-0"),
        "step": step,
        "corpus": "fake",
        "task": task,
        "layer": layer,
        "pooling": pooling,
        "split": "test",
        "metric": compare.PRIMARY_METRIC[task],
        "mean": mean,
        "ci_low": mean - half,
        "ci_high": mean + half,
        "run_id": "r1",
    }


def summary(rows):
    return pd.DataFrame(rows)


def verdict(claim_id, **inputs):
    return evaluate(Inputs(**inputs))[claim_id]


# ---------------------------------------------------------------------------------- rules


def test_majority_rule():
    def comp(lo, hi):
        return verdicts.Comparison("X", "x", "a", "b", 0, 0, (lo + hi) / 2, lo, hi, "test")

    assert verdicts.majority([])[0] == "inconclusive"
    assert verdicts.majority([])[1] == "no results"
    assert verdicts.majority([comp(0.1, 0.2), comp(-0.1, 0.1)])[0] == "holds"
    assert verdicts.majority([comp(-0.2, -0.1), comp(-0.1, 0.1)])[0] == "does not hold"
    assert verdicts.majority([comp(0.1, 0.2), comp(-0.2, -0.1)])[0] == "inconclusive"
    assert verdicts.majority([comp(-0.1, 0.1)] * 3 + [comp(0.1, 0.2)])[0] == "inconclusive"
    assert comp(np.nan, 0.1).outcome == "unclear"
    # a required comparison decides: unclear blocks "holds", against makes "does not hold"
    req = verdicts.Comparison("X", "must", "a", "b", 0, 0, 0, -0.1, 0.1, "test")
    assert verdicts.majority([comp(0.1, 0.2)] * 2 + [req], required=["must"])[0] == "inconclusive"
    req.outcome = "against"
    assert verdicts.majority([comp(0.1, 0.2)] * 2 + [req], required=["must"])[0] == "does not hold"
    req.outcome = "for"
    assert verdicts.majority([comp(0.1, 0.2)] * 2 + [req], required=["must"])[0] == "holds"


def test_normal_diff_and_bootstrap():
    a = {"mean": 0.7, "ci_low": 0.6, "ci_high": 0.8}
    b = {"mean": 0.5, "ci_low": 0.4, "ci_high": 0.6}
    d, lo, hi = compare.normal_diff(a, b)
    assert d == pytest.approx(0.2)
    assert hi - lo == pytest.approx(2 * 0.1 * np.sqrt(2), rel=1e-6)
    d, lo, hi = verdicts.paired_bootstrap(np.full(30, 0.3) + np.linspace(-0.01, 0.01, 30))
    assert lo > 0.28 and hi < 0.32 and d == pytest.approx(0.3)


# ---------------------------------------------------------------------------------- probes


def c1_rows(avg, cls):
    rows = []
    for t in GLOBAL:
        for layer in (1, 2):
            rows.append(row("contrastive", t, layer, "avg", avg - 0.05 * (layer == 1)))
            rows.append(row("contrastive", t, layer, "cls", cls - 0.05 * (layer == 1)))
    return rows


def test_c1_flips():
    assert verdict("C1", probes=summary(c1_rows(0.8, 0.6))).verdict == "holds"
    assert verdict("C1", probes=summary(c1_rows(0.6, 0.8))).verdict == "does not hold"
    # wide intervals: no evidence either way
    wide = [dict(r, ci_low=r["mean"] - 0.5, ci_high=r["mean"] + 0.5) for r in c1_rows(0.8, 0.6)]
    assert verdict("C1", probes=summary(wide)).verdict == "inconclusive"
    none = verdict("C1")
    assert (none.verdict, none.reason) == ("inconclusive", "no results")


def test_c1_ignores_snapshots_and_uses_final_checkpoint():
    rows = c1_rows(0.8, 0.6)
    # an emergence snapshot that says the opposite must not count
    for t in GLOBAL:
        snap = "runs/x/pretrain/snapshots/step-00000010"
        rows.append(row("contrastive", t, 1, "avg", 0.1, checkpoint=snap, step=10))
        rows.append(row("contrastive", t, 1, "cls", 0.9, checkpoint=snap, step=10))
    assert verdict("C1", probes=summary(rows)).verdict == "holds"


def c2_rows(trained, base):
    rows = []
    for t in LOCAL:
        for layer in range(3):
            rows.append(row("contrastive", t, layer, "frame", trained))
            rows.append(row("random-init", t, layer, "frame", base))
        rows.append(row("logmel", t, 0, "frame", base, checkpoint="-", step=np.nan))
    return rows


def test_c2_flips():
    assert verdict("C2", probes=summary(c2_rows(0.7, 0.4))).verdict == "holds"
    assert verdict("C2", probes=summary(c2_rows(0.4, 0.7))).verdict == "does not hold"
    assert verdict("C2", probes=summary(c1_rows(0.8, 0.6))).reason == "no results"


def c5_rows(peaks):
    """Contrastive layer curves 0..4 per task, peaking at ``peaks[task]``."""
    rows = []
    for t, peak in peaks.items():
        for layer in range(5):
            mean = 0.8 - 0.1 * abs(layer - peak)
            pools = ["frame"] if t in LOCAL else ["cls", "seq", "avg"]
            for p in pools:
                rows.append(row("contrastive", t, layer, p, mean - 0.01 * (p == "cls")))
    return rows


def test_c5_flips():
    holds = verdict("C5", probes=summary(c5_rows({"key": 1, "chords": 4, "tagging": 1})))
    assert holds.verdict == "holds", holds.reason
    same = verdict("C5", probes=summary(c5_rows({"key": 3, "chords": 3, "tagging": 3})))
    assert same.verdict == "does not hold"
    # different peaks but indistinguishable (wide intervals): inconclusive
    wide = [dict(r, ci_low=0, ci_high=1) for r in c5_rows({"key": 1, "chords": 4})]
    assert verdict("C5", probes=summary(wide)).verdict == "inconclusive"
    assert verdict("C5").reason == "no results"


RUNS_EQUAL = {
    "contrastive": {"steps": 40, "views_per_step": 32, "train_flops_per_step": 1.0e12},
    "masked": {"steps": 40, "views_per_step": 32, "train_flops_per_step": 1.0e12},
}


def foil_rows(contrastive, masked):
    rows = []
    for t in LOCAL:
        for layer in range(3):
            rows.append(row("contrastive", t, layer, "frame", contrastive))
            rows.append(row("masked", t, layer, "frame", masked))
    return rows


def test_foil_flips():
    ok = verdict("Foil", probes=summary(foil_rows(0.6, 0.6)), runs=RUNS_EQUAL)
    assert ok.verdict == "holds", ok.reason
    assert verdict("Foil", probes=summary(foil_rows(0.7, 0.6)), runs=RUNS_EQUAL).verdict == "holds"
    bad = verdict("Foil", probes=summary(foil_rows(0.4, 0.7)), runs=RUNS_EQUAL)
    assert bad.verdict == "does not hold"
    unequal = json.loads(json.dumps(RUNS_EQUAL))
    unequal["masked"]["steps"] = 80
    neq = verdict("Foil", probes=summary(foil_rows(0.6, 0.6)), runs=unequal)
    assert neq.verdict == "inconclusive" and "not equal compute" in neq.reason
    assert verdict("Foil", probes=summary(foil_rows(0.6, 0.6))).verdict == "inconclusive"
    assert verdict("Foil", runs=RUNS_EQUAL).reason == "no results"


# -------------------------------------------------------------------------------- analyses


def onsets_frames(trained_f, n_clips=20, random_f=0.5):
    """Per-clip onset F rows and their summary, trained model best at layer 2."""
    rng = np.random.default_rng(0)
    models = [
        ("trained", "row_change", 1, "0", trained_f - 0.2),
        ("trained", "row_change", 2, "mean", trained_f),
        ("random", "row_change", 2, "mean", random_f),
        ("spectral_flux", "spectral_flux", 0, "-", 0.55),
        ("chance", "chance", 0, "-", 0.3),
    ]
    per, summ = [], []
    for model, method, layer, head, f in models:
        values = np.clip(f + rng.normal(0, 0.02, n_clips), 0, 1)
        for i, v in enumerate(values):
            per.append(
                {
                    "model": model,
                    "method": method,
                    "layer": layer,
                    "head": head,
                    "split": "test",
                    "clip": f"c{i}",
                    "f": v,
                }
            )
        summ.append(
            {
                "model": model,
                "method": method,
                "layer": layer,
                "head": head,
                "f": values.mean(),
                "f_valid": f,
            }
        )
    return pd.DataFrame(per), pd.DataFrame(summ)


def test_c3_flips():
    per, summ = onsets_frames(0.8)
    c = verdict("C3", onsets=per, onsets_summary=summ)
    assert c.verdict == "holds", c.reason
    assert "layer 2" in c.comparisons[0].a  # the validation-best curve was chosen
    per, summ = onsets_frames(0.25)
    assert verdict("C3", onsets=per, onsets_summary=summ).verdict == "does not hold"
    # beats spectral flux and chance, but a random-init network does better: training did
    # not make it emerge
    per, summ = onsets_frames(0.8, random_f=0.9)
    c = verdict("C3", onsets=per, onsets_summary=summ)
    assert c.verdict == "does not hold" and "vs random init" in c.reason
    per, summ = onsets_frames(0.8, random_f=0.8)
    assert verdict("C3", onsets=per, onsets_summary=summ).verdict == "inconclusive"
    assert verdict("C3").reason == "no results"


def ssm_frame(trained_above, peaks, n_windows=12):
    """Per-window SSM rows: trained layers 0..3 peaking per dimension at ``peaks``."""
    rng = np.random.default_rng(1)
    groups = {"chroma": "harmony", "mfcc": "timbre", "position": "time"}
    rows = []
    for dim, peak in peaks.items():
        for model in ("trained", "random"):
            for layer in range(4):
                if model == "trained":
                    above = trained_above - 0.1 * abs(layer - peak)
                else:
                    above = 0.3 - 0.05 * layer
                for w in range(n_windows):
                    rows.append(
                        {
                            "split": "test",
                            "clip": f"c{w // 3}",
                            "window": w % 3,
                            "model": model,
                            "layer": layer,
                            "dimension": dim,
                            "group": groups[dim],
                            "score": 0.2 + above + rng.normal(0, 0.01),
                            "chance": 0.2,
                        }
                    )
    return pd.DataFrame(rows)


def test_c4_flips():
    peaks = {"chroma": 1, "mfcc": 3, "position": 0}
    c = verdict("C4", ssm=ssm_frame(0.6, peaks))
    assert c.verdict == "holds", c.reason
    assert verdict("C4", ssm=ssm_frame(0.1, peaks)).verdict == "does not hold"
    # above random init everywhere, but every dimension peaks at one layer
    same = verdict("C4", ssm=ssm_frame(0.6, {"chroma": 2, "mfcc": 2}))
    assert same.verdict == "does not hold" and "peaks at layer 2" in same.reason
    assert verdict("C4").reason == "no results"


def novelty_frame(trained_f, n_clips=15):
    rng = np.random.default_rng(2)
    rows = []
    for model, layers, f in (
        ("trained", range(3), trained_f),
        ("random", range(3), 0.6),
        ("chroma", [0], 0.65),
        ("chance", [0], 0.5),
    ):
        for layer in layers:
            for i in range(n_clips):
                value = f - 0.05 * (layer != 1) + rng.normal(0, 0.02)
                rows.append({"split": "test", "clip": f"c{i}", "model": model, "layer": layer})
                rows[-1]["f"] = value
    return pd.DataFrame(rows)


def test_c4b_flips():
    assert verdict("C4b", novelty=novelty_frame(0.85)).verdict == "holds"
    assert verdict("C4b", novelty=novelty_frame(0.35)).verdict == "does not hold"


# ------------------------------------------------------------------------------ from files


def test_build_ledger_from_files(tmp_path):
    res = tmp_path / "results"
    (res / "analyses").mkdir(parents=True)
    rows = c1_rows(0.8, 0.6) + c2_rows(0.7, 0.4) + foil_rows(0.7, 0.6)
    summary(rows).to_csv(res / "probes_summary.csv", index=False)
    per, summ = onsets_frames(0.8)
    per.to_csv(res / "analyses" / "onsets.csv", index=False)
    summ.to_csv(res / "analyses" / "onsets_summary.csv", index=False)
    (res / "pretrain_runs.json").write_text(json.dumps(RUNS_EQUAL))
    ledger = claims.build_ledger(res)
    v = ledger.verdicts
    assert list(v) == list(claims.CLAIMS)
    assert v["C1"] == v["C2"] == v["C3"] == v["Foil"] == "holds"
    assert v["C4"] == v["C4b"] == "inconclusive" and ledger["C4"].reason == "no results"
    assert set(v.values()) <= set(verdicts.VERDICTS)
    out = ledger.write(res)
    table = pd.read_csv(out["claims"])
    assert list(table["claim"]) == list(claims.CLAIMS)
    assert {"statement", "evidence", "numbers", "verdict", "reason"} <= set(table.columns)
    details = pd.read_csv(out["details"])
    assert set(details["outcome"]) <= {"for", "against", "unclear"}
    # every claim has a stated rule
    assert set(verdicts.RULES) == set(verdicts.STATEMENTS) == set(claims.CLAIMS)


def e_rows(model, wins, n_tasks=7, half=0.01):
    """``model`` beats both baselines (non-overlapping intervals) on the first ``wins`` tasks
    and overlaps them on the rest."""
    rows = []
    for i, t in enumerate((GLOBAL + LOCAL)[:n_tasks]):
        pooling = "frame" if t in LOCAL else "avg"
        mine = 0.8 if i < wins else 0.505
        rows.append(
            row(
                model,
                t,
                3,
                pooling,
                mine,
                half=half,
                checkpoint=f"checkpoints/{model}" if model == "reference" else None,
            )
        )
        rows.append(row("random-init", t, 3, pooling, 0.5, half=half))
        rows.append(row("logmel", t, 0, pooling, 0.49, half=half, checkpoint="-", step=np.nan))
    return rows


def test_e_counts_tasks_beating_both_baselines():
    held = verdict("E", probes=summary(e_rows("contrastive", 4)))
    assert held.verdict == "holds" and "4 of 7" in held.reason
    assert verdict("E", probes=summary(e_rows("contrastive", 3))).verdict == "does not hold"
    # 2 wins with 5 of 7 tasks probed: the 2 missing ones could still make 4
    assert verdict("E", probes=summary(e_rows("contrastive", 2, n_tasks=5))).verdict == (
        "inconclusive"
    )
    # without per-item results: the normal approximation of the two intervals, which
    # cannot separate 0.8 from 0.5 when each interval is +-0.3 wide
    wide = e_rows("contrastive", 7, half=0.3)
    assert verdict("E", probes=summary(wide)).verdict == "does not hold"
    assert verdict("E").reason == "no results"


def test_reference_model_gets_its_own_rows():
    rows = e_rows("contrastive", 1) + [
        r for r in e_rows("reference", 5) if r["model"] == "reference"
    ]
    ledger = evaluate(Inputs(probes=summary(rows)))
    assert ledger["E"].verdict == "does not hold"
    assert ledger["E (reference)"].verdict == "holds"
    assert {"C1 (reference)", "C2 (reference)", "C5 (reference)"} <= set(ledger.verdicts)
    assert (
        "E (reference)" not in evaluate(Inputs(probes=summary(e_rows("contrastive", 1)))).verdicts
    )
