"""The claims about what linear probes read from the layers: the sequence tokens beat the class
token (C1, C2), the best layer is not the last (C5), the masked foil at equal compute (Foil),
and emergence: the model beats random init and log-mel on most tasks (E); with the precision
each comparison reached."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from vit1d.ledger.analysis_claims import crossings
from vit1d.ledger.evidence import Inputs, final_both, probe_comparison
from vit1d.ledger.verdicts import (
    CHANCE_FACTOR,
    COMPUTE_TOLERANCE,
    CONTRASTIVE,
    EMERGENCE_MIN_TASKS,
    LOGMEL,
    MARGIN,
    MASKED,
    RANDOM,
    REFERENCE,
    RULES,
    STATEMENTS,
    TARGET_HALF_WIDTH,
    Claim,
    Comparison,
    majority,
)
from vit1d.probing.compare import (
    PRIMARY_METRIC,
    best_row,
    chance_levels,
)
from vit1d.probing.tasks import GLOBAL_TASKS, LOCAL_TASKS


def _claim_id(claim: str, model: str) -> str:
    """``C1`` for the build's model, ``C1 (reference)`` for another one."""
    return claim if model == CONTRASTIVE else f"{claim} ({model})"


def claim_c1(inp: Inputs, model: str = CONTRASTIVE) -> Claim:
    rows = final_both(inp.probes, model)
    comps = []
    for task in GLOBAL_TASKS:
        # layer 0: cls = learned vector + frame mean, the same features as avg for a probe
        a = best_row(rows, task, ["avg"], min_layer=1)
        b = best_row(rows, task, ["cls"], min_layer=1)
        if a is not None and b is not None:
            comps.append(probe_comparison("C1", task, a, b, "avg", "cls", inp.items))
    verdict, reason = majority(comps)
    return Claim(
        _claim_id("C1", model),
        STATEMENTS["C1"],
        f"probes_summary.csv, probe_items/: {model} model, global tasks, avg vs cls pooling "
        "(layers 1-12)",
        RULES["C1"],
        verdict,
        reason,
        comps,
    )


def claim_c2(inp: Inputs, model: str = CONTRASTIVE) -> Claim:
    rows = {m: final_both(inp.probes, m) for m in (model, RANDOM, LOGMEL)}
    comps = []
    for task in LOCAL_TASKS:
        a = best_row(rows[model], task, ["frame"])
        if a is None:
            continue
        for base in (RANDOM, LOGMEL):
            b = best_row(rows[base], task, ["frame"])
            if b is not None:
                name = f"{task} vs {base}"
                comps.append(probe_comparison("C2", name, a, b, model, base, inp.items))
    verdict, reason = majority(comps)
    return Claim(
        _claim_id("C2", model),
        STATEMENTS["C2"],
        f"probes_summary.csv, probe_items/: frame-token probes on chords and beats, {model} "
        "vs random-init and log-mel",
        RULES["C2"],
        verdict,
        reason,
        comps,
    )


def _layer_views(rows: Any, task: str) -> dict[int, Any]:
    """Per layer, the test row of ``task``'s primary metric at the pooling chosen on
    validation at that layer."""
    out = {}
    for layer in sorted(set(rows["layer"].astype(int))):
        r = best_row(rows[rows["layer"].astype(int) == layer], task)
        if r is not None:
            out[layer] = r
    return out


def claim_c5(inp: Inputs, model: str = CONTRASTIVE) -> Claim:
    rows = final_both(inp.probes, model)
    curves: dict[str, dict[int, Any]] = {}
    best: dict[str, int] = {}
    if rows is not None:
        for task in GLOBAL_TASKS + LOCAL_TASKS:
            views = _layer_views(rows, task)
            chosen = best_row(rows, task)
            if len(views) > 1 and chosen is not None:
                curves[task], best[task] = views, int(chosen["layer"])

    def compare(u: str, lu: int, lv: int, v: str) -> Comparison | None:
        if lv not in curves[u]:
            return None
        a, b = curves[u][lu], curves[u][lv]
        name = f"{u}: layer {lu} (chosen) vs layer {lv} (chosen for {v})"
        return probe_comparison("C5", name, a, b, f"layer {lu}", f"layer {lv}", inp.items)

    comps, crossing = crossings(list(best), best, compare)
    notes = ["best layers: " + ", ".join(f"{t} {lay}" for t, lay in best.items())] if best else []
    if len(best) < 2:
        verdict, reason = "inconclusive", "no results" if not best else "fewer than two tasks"
    elif crossing:
        x, y = crossing[0]
        verdict = "holds"
        reason = f"{x} peaks at layer {best[x]}, {y} at layer {best[y]}, each significantly"
    elif len(set(best.values())) == 1:
        verdict = "does not hold"
        reason = f"every task peaks at layer {next(iter(best.values()))}"
    else:
        verdict = "inconclusive"
        reason = "best layers differ, but no pair of tasks differs significantly both ways"
    return Claim(
        _claim_id("C5", model),
        STATEMENTS["C5"],
        f"probes_summary.csv, probe_items/: the {model} model's layer curves per task (pooling "
        "chosen on validation at each layer)",
        RULES["C5"],
        verdict,
        reason,
        comps,
        notes,
    )


def compute_check(runs: dict[str, Any] | None) -> tuple[bool | None, str]:
    """Whether the contrastive and masked runs had equal compute: ``(True/False, note)``,
    ``(None, why)`` when it cannot be told."""
    if not runs or CONTRASTIVE not in runs or MASKED not in runs:
        return None, "no run metadata for both models (pretrain_runs.json)"
    a, b = runs[CONTRASTIVE], runs[MASKED]
    diffs = []
    for key in ("steps", "views_per_step", "train_flops_per_step"):
        va, vb = a.get(key), b.get(key)
        if va is None or vb is None:
            return None, f"{key} not recorded for both runs"
        rel = abs(float(va) - float(vb)) / max(abs(float(va)), abs(float(vb)), 1e-12)
        if rel > COMPUTE_TOLERANCE:
            diffs.append(f"{key} {va:g} vs {vb:g}")
    if diffs:
        return False, "not equal compute: " + ", ".join(diffs)
    return True, (
        f"equal compute: {a['steps']} steps of {a['views_per_step']} views, "
        f"{float(a['train_flops_per_step']):.3g} vs {float(b['train_flops_per_step']):.3g} "
        "training FLOPs per step"
    )


def claim_foil(inp: Inputs) -> Claim:
    a_rows, b_rows = final_both(inp.probes, CONTRASTIVE), final_both(inp.probes, MASKED)
    comps = []
    for task in LOCAL_TASKS:
        a, b = best_row(a_rows, task, ["frame"]), best_row(b_rows, task, ["frame"])
        if a is not None and b is not None:
            comps.append(
                probe_comparison("Foil", task, a, b, CONTRASTIVE, MASKED, inp.items, -MARGIN)
            )
    equal, note = compute_check(inp.runs)
    n_for = sum(c.outcome == "for" for c in comps)
    against = [c.name for c in comps if c.outcome == "against"]
    if not comps:
        verdict, reason = "inconclusive", "no results"
    elif equal is not True:
        verdict, reason = "inconclusive", note
    elif against:
        verdict, reason = (
            "does not hold",
            f"masked better by more than {MARGIN} on " + ", ".join(against),
        )
    elif n_for == len(comps):
        verdict, reason = "holds", f"non-inferior on {n_for} of {len(comps)} local tasks"
    else:
        verdict, reason = "inconclusive", f"non-inferior on {n_for} of {len(comps)} local tasks"
    return Claim(
        "Foil",
        STATEMENTS["Foil"],
        "probes_summary.csv, probe_items/: frame-token probes of the contrastive and masked "
        "models; pretrain_runs.json: the runs' compute",
        RULES["Foil"],
        verdict,
        reason,
        comps,
        [note],
    )


def above_chance(
    task: str, rows: Sequence[Any], chance: dict[tuple[str, str], float]
) -> tuple[bool, str]:
    """Whether the best of ``rows`` (the model and its baselines at their chosen views) lies
    above ``task``'s chance level on the primary metric, its 95 % interval wholly above it,
    and the reason in words (with the ratio to chance; :data:`CHANCE_FACTOR` is the target
    the tempo task is designed for). Tasks without a chance level (local ones) count."""
    metric = PRIMARY_METRIC[task]
    level = chance.get((task, metric))
    if level is None or not np.isfinite(level) or level <= 0:
        return True, ""
    top = max(rows, key=lambda r: float(r["mean"]))
    mean, low = float(top["mean"]), float(top["ci_low"])
    ok = bool(np.isfinite(low) and low > level)
    return ok, (
        f"{task}: best {metric} {mean:.3f} (CI low {low:.3f}) is {mean / level:.1f}x chance "
        f"({level:.3f}; target {CHANCE_FACTOR:g}x): {'above' if ok else 'not above'} chance"
    )


def claim_e(inp: Inputs, model: str = CONTRASTIVE) -> Claim:
    rows = {m: final_both(inp.probes, m) for m in (model, RANDOM, LOGMEL)}
    chance = chance_levels(inp.probes)
    comps, beaten, probed, notes, left_out = [], [], 0, [], []
    for task in GLOBAL_TASKS + LOCAL_TASKS:
        a = best_row(rows[model], task)
        if a is None:
            continue
        bases = {base: best_row(rows[base], task) for base in (RANDOM, LOGMEL)}
        bases = {k: v for k, v in bases.items() if v is not None}
        ok, why = above_chance(task, [a, *bases.values()], chance)
        if why:
            notes.append(why)
        if not ok:
            left_out.append(task)
            continue
        probed += 1
        wins = 0
        for base, b in bases.items():
            c = probe_comparison("E", f"{task} vs {base}", a, b, model, base, inp.items)
            comps.append(c)
            wins += c.outcome == "for"
        if wins == 2:
            beaten.append(task)
    n = len(beaten)
    counts = f"beats both baselines on {n} of {probed} tasks" + (
        f" ({', '.join(beaten)})" if beaten else ""
    )
    if left_out:
        counts += f"; left out at chance: {', '.join(left_out)}"
    unprobed = len(GLOBAL_TASKS + LOCAL_TASKS) - probed - len(left_out)
    if n >= EMERGENCE_MIN_TASKS:
        verdict = "holds"
    elif n + unprobed < EMERGENCE_MIN_TASKS:  # even the missing tasks could not lift it
        verdict = "does not hold"
    else:
        verdict = "inconclusive"
    return Claim(
        _claim_id("E", model),
        STATEMENTS["E"],
        f"probes_summary.csv, probe_items/: {model} vs random-init and log-mel, every task at "
        "its layer and pooling chosen on validation; chance: the prior-only predictor",
        RULES["E"],
        verdict,
        counts if probed or left_out else "no results",
        comps,
        notes,
    )


def precision_table(inp: Inputs, model: str = CONTRASTIVE) -> pd.DataFrame:
    """How precisely the probe comparisons are measured: per task (primary metric), the
    number of test items and the paired 95 % half-width of ``model`` minus each other model
    (each at its layer chosen on validation), with the target of :data:`TARGET_HALF_WIDTH`
    for differences between two of our models (masked, reference), whether it is met, and
    the number of test items that would meet it (half-widths shrink as ``1 / sqrt(n)``)."""
    others = [m for m in (MASKED, REFERENCE, RANDOM, LOGMEL) if m != model]
    rows_by = {m: final_both(inp.probes, m) for m in [model, *others]}
    out = []
    for task in GLOBAL_TASKS + LOCAL_TASKS:
        a = best_row(rows_by[model], task)
        if a is None:
            continue
        kind = "local" if task in LOCAL_TASKS else "global"
        entry: dict[str, Any] = {"task": task, "metric": PRIMARY_METRIC[task]}
        ours = []
        for m in others:
            b = best_row(rows_by[m], task)
            if b is None:
                continue
            c = probe_comparison("precision", task, a, b, model, m, inp.items)
            half = (c.ci_high - c.ci_low) / 2
            entry["test items"] = c.n_items
            entry[f"vs {m}"] = round(half, 4)
            if m in (MASKED, REFERENCE):
                ours.append(half)
        target = TARGET_HALF_WIDTH[kind]
        entry["target"] = target
        entry["met"] = ("yes" if max(ours) <= target else "no") if ours else "-"
        # a half-width shrinks as 1/sqrt(n): the test items the target would need
        n = entry.get("test items", 0)
        entry["items for target"] = math.ceil(n * (max(ours) / target) ** 2) if ours and n else "-"
        out.append(entry)
    return pd.DataFrame(out)
