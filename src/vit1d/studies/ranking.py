"""Ranking the recipe study's runs: screening and finals tables from the probing results,
the stated rule that picks the finalists and the winner, the spread between seeds, and the
budget variants' compute.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from vit1d.core.errors import UserError
from vit1d.studies.variants import BUDGET_RECIPE, BUDGETS, VARIANTS, parse_label, run_label

#: (task, metric) the study ranks on, primary metric of each task.
STUDY_METRICS = {
    "key": "weighted",
    "tagging": "map",
    "instrument": "accuracy",
    "tempo": "acc2",
    "pitch": "accuracy",
    "chords": "majmin",
    "beats": "f_measure",
}
RESULTS = "results"
STUDY_JSON = "study.json"
#: The models a run must beat (the prior-only ``chance`` rows are shown, not beaten).
BASELINES = ("random-init", "logmel")


def screening(table: Any, seeds: Sequence[int]) -> Any:
    """The rows of ``table`` (:func:`study_table`) the screening ranks: the runs of the
    screening ``seeds`` and the baselines."""
    return table[table["seed"].isin(list(seeds)) | (table["seed"] < 0)]


def finalists(table: Any, settings: Any) -> list[str]:
    """The variants the finals run: ``paper`` and the ``settings.finalists`` best of the
    screened variants by :func:`choose_recipe` on the screening seeds."""
    screened = screening(table, settings.seeds)
    screened = screened[screened["variant"].isin([*settings.variants, *BASELINES])]
    _, ranking = choose_recipe(screened)
    best = [v for v in ranking.index if v != "paper"][: settings.finalists]
    return ["paper", *best] if "paper" in settings.variants else best


def run_facts(run: str | Path) -> dict[str, Any]:
    """What the budget comparison needs of a finished run, from its ``run.json``: batch,
    depth, steps, training FLOPs and measured training seconds (kept in ``study.json``, which
    is committed without the runs)."""
    info = json.loads((Path(run) / "run.json").read_text())
    return {
        "batch": info["config"]["train"]["batch_size"],
        "depth": info["config"]["model"]["depth"],
        "steps": info["steps"],
        "train_flops": info["train_flops_per_step"] * info["steps"],
        "train_seconds": info["train_seconds"],
        "views_per_s_median": info.get("views_per_s_median"),
        "views_per_step": info.get("views_per_step", 2 * info["config"]["train"]["batch_size"]),
        "cpu": info["hardware"].get("cpu", {}).get("model", ""),
    }


def study_summary(study_dir: str | Path) -> Any:
    """The study's ``probes_summary.csv`` with ``variant`` and ``seed`` columns (baselines:
    ``variant`` is the model name, ``seed`` -1)."""
    path = Path(study_dir) / RESULTS / "probes_summary.csv"
    if not path.is_file():
        raise UserError(f"no recipe study results at {path}: run `make recipe-study` first")
    df = pd.read_csv(path)
    df["step"] = df["step"].fillna(0).astype(int)  # log-mel features have no training step
    parsed = df["model"].map(parse_label)
    df["variant"] = [p[0] if p else m for p, m in zip(parsed, df["model"], strict=True)]
    df["seed"] = [p[1] if p else -1 for p in parsed]
    return df


def study_table(study_dir: str | Path) -> Any:
    """Test scores at the best layer of every study run and baseline, one row per (model,
    step, task, metric): columns ``variant`` (``random-init`` / ``logmel`` for the
    baselines), ``seed``, ``step``, ``task``, ``metric``, ``layer``, ``value``, ``ci_low``,
    ``ci_high``. The layer is chosen on the valid split and reported on test (a study
    without valid rows, written before the probes scored it, chooses on test)."""
    df = study_summary(study_dir)
    keys = ["model", "step", "task", "metric"]
    test = df[df["split"] == "test"]
    valid = df[df["split"] == "valid"]
    choose = valid if len(valid) else test
    chosen = choose.loc[choose.groupby(keys)["mean"].idxmax(), [*keys, "layer", "pooling"]]
    best = test.merge(chosen, on=[*keys, "layer", "pooling"])
    best = best.rename(columns={"mean": "value"})
    cols = ["variant", "seed", "step", "task", "metric", "layer", "value", "ci_low", "ci_high"]
    return best[cols].sort_values(cols[:5]).reset_index(drop=True)


def _final_primary(runs: Any) -> Any:
    """The rows of each variant's final step on each task's primary metric."""
    final = runs[runs["step"] == runs.groupby("variant")["step"].transform("max")]
    return final[[STUDY_METRICS.get(t) == m for t, m in zip(final.task, final.metric, strict=True)]]


def _study_runs(study_dir: str | Path) -> dict[str, Any]:
    """``study.json``'s facts of each run (:func:`run_facts`), by run label."""
    return json.loads((Path(study_dir) / STUDY_JSON).read_text()).get("runs", {})


def beats_baselines(table: Any) -> Any:
    """Per study run (variant, seed) at its final step: the number of tasks on which its best
    layer beats both baselines with non-overlapping 95 % intervals (its lower end above the
    best random-init and the log-mel upper ends), on each task's primary metric: the count
    claim E of the ledger makes for the book's models."""
    primary = table[
        [STUDY_METRICS.get(t) == m for t, m in zip(table.task, table.metric, strict=True)]
    ]
    bars = {}
    for task, g in primary[primary["variant"].isin(BASELINES)].groupby("task"):
        bars[task] = float(g["ci_high"].max())  # the better baseline's upper end
    runs = primary[primary["seed"] >= 0]
    final = runs[runs["step"] == runs.groupby("variant")["step"].transform("max")]
    rows = []
    for (variant, seed), g in final.groupby(["variant", "seed"]):
        wins = [t for t, lo in zip(g.task, g.ci_low, strict=True) if t in bars and lo > bars[t]]
        rows.append({"variant": variant, "seed": seed, "wins": len(wins), "tasks": ",".join(wins)})
    return pd.DataFrame(rows, columns=["variant", "seed", "wins", "tasks"])


def choose_recipe(table: Any) -> tuple[str, Any]:
    """The winning variant and the ranking behind it.

    Rule: at each run's final step, (1) count the tasks on which the run beats both baselines
    (:func:`beats_baselines`, the target of the book's claim E) and average the count over
    seeds: more is better; (2) break ties by the mean rank over tasks of each task's primary
    metric (:data:`STUDY_METRICS`) at the best layer, averaged over seeds (1 = best);
    (3) then by the order of :data:`VARIANTS` (the simpler recipe first). Budget variants
    (:data:`BUDGETS`) are left out: :func:`budget_table` compares them. Returns
    ``(name, ranking)``, ``ranking`` a DataFrame of per-task means, ``wins`` and ``mean_rank``.
    """
    runs = table[(table["seed"] >= 0) & table["variant"].isin(list(VARIANTS))]
    if runs.empty:
        raise UserError("the recipe study table has no pretrained runs of a recipe variant")
    primary = _final_primary(runs)
    means = primary.pivot_table(index="variant", columns="task", values="value", aggfunc="mean")
    ranks = means.rank(ascending=False, method="min")
    ranking = means.copy()
    wins = beats_baselines(table).groupby("variant")["wins"].mean()
    ranking["wins"] = [float(wins.get(v, 0.0)) for v in ranking.index]
    ranking["mean_rank"] = ranks.mean(axis=1)
    order = {v: i for i, v in enumerate(VARIANTS)}
    ranking["order"] = [order.get(v, len(order)) for v in ranking.index]
    ranking = ranking.sort_values(["wins", "mean_rank", "order"], ascending=[False, True, True])
    ranking = ranking.drop(columns="order")
    return str(ranking.index[0]), ranking


def study_choice(study_dir: str | Path, table: Any | None = None) -> tuple[str, Any]:
    """The study's winner and ranking: :func:`choose_recipe` over the finalists' runs (every
    final seed) when the study ran its finals, else over every screened run. A winner of one
    screening seed never overtakes a finalist judged on three."""
    table = study_table(study_dir) if table is None else table
    finals = json.loads((Path(study_dir) / STUDY_JSON).read_text()).get("finalists") or []
    if finals:
        table = table[table["variant"].isin(finals) | (table["seed"] < 0)]
    return choose_recipe(table)


def variant_spread(table: Any) -> Any:
    """Per task, at each run's final step on the primary metric: how far apart the recipe
    variants' seed means lie (``between``: best minus worst variant mean), against how far
    the seeds of one variant lie apart (``within``: the largest seed range of any variant).
    A ``between`` no wider than ``within`` means the study cannot tell the variants apart on
    that task (``notebooks/03b_recipe.ipynb``); with one seed per variant ``within`` is not
    measured (NaN) and no task counts as ``separable``."""
    runs = table[(table["seed"] >= 0) & table["variant"].isin(list(VARIANTS))]
    primary = _final_primary(runs)
    rows = []
    for task, g in primary.groupby("task"):
        per = g.groupby("variant")["value"]
        means, ranges = per.mean(), per.max() - per.min()
        seeded = per.size() > 1  # the variants run with two seeds or more
        rows.append(
            {
                "task": task,
                "best": str(means.idxmax()),
                "between": float(means.max() - means.min()),
                "within": float(ranges[seeded].max()) if seeded.any() else float("nan"),
            }
        )
    out = pd.DataFrame(rows, columns=["task", "best", "between", "within"])
    out["separable"] = out["between"] > out["within"]
    return out.set_index("task")


def with_compute(table: Any, study_dir: str | Path) -> Any:
    """``table`` (:func:`study_table`) with a ``train_pflops`` column: the training compute a
    run had spent at that row's step (its FLOPs per step, from ``study.json``, times the
    step; 0 for the baselines), so runs of different batch or depth share one x axis."""
    facts = _study_runs(study_dir)
    per_step = {label: f["train_flops"] / f["steps"] for label, f in facts.items()}
    out = table.copy()
    labels = [run_label(v, s) if s >= 0 else "" for v, s in zip(out.variant, out.seed, strict=True)]
    out["train_pflops"] = [
        step * per_step.get(label, 0.0) / 1e15 for label, step in zip(labels, out.step, strict=True)
    ]
    return out


def budget_table(study_dir: str | Path, table: Any | None = None) -> Any:
    """The budget comparison: the :data:`BUDGET_RECIPE` runs and every budget variant run,
    one row per variant (means over seeds) with ``batch``, ``depth``, ``steps``,
    ``train_pflops`` (training compute), ``views_per_s`` (the run's median training
    throughput), ``train_minutes`` (the run's steps at that throughput: unlike the wall time of
    a run that was resumed or shared the machine, it compares runs measured apart; the wall
    time is in ``study.json``), each task's primary metric at the best layer at the final
    step, and ``wins`` (tasks on which it beats both baselines, :func:`beats_baselines`).
    Reads ``study.json``'s ``runs``."""
    facts = _study_runs(study_dir)
    table = study_table(study_dir) if table is None else table
    names = [BUDGET_RECIPE, *BUDGETS]
    runs = table[(table["seed"] >= 0) & table["variant"].isin(names)]
    primary = _final_primary(runs)
    scores = primary.pivot_table(index="variant", columns="task", values="value", aggfunc="mean")
    wins = beats_baselines(table).groupby("variant")["wins"].mean()
    rows = []
    for variant in names:
        per_seed = [f for label, f in facts.items() if (parse_label(label) or ("",))[0] == variant]
        if variant not in scores.index or not per_seed:
            continue
        rows.append(
            {
                "variant": variant,
                "batch": per_seed[0]["batch"],
                "depth": per_seed[0]["depth"],
                "steps": per_seed[0]["steps"],
                "train_pflops": sum(f["train_flops"] for f in per_seed) / len(per_seed) / 1e15,
                "views_per_s": sum(f["views_per_s_median"] for f in per_seed) / len(per_seed),
                "train_minutes": sum(
                    f["steps"] * f["views_per_step"] / f["views_per_s_median"] for f in per_seed
                )
                / len(per_seed)
                / 60,
                **scores.loc[variant].to_dict(),
                "wins": float(wins.get(variant, 0.0)),
                "seeds": len(per_seed),
            }
        )
    if not any(r["variant"] != BUDGET_RECIPE for r in rows):
        return pd.DataFrame()  # no budget variant ran: nothing to compare the recipe with
    return pd.DataFrame(rows).set_index("variant")
