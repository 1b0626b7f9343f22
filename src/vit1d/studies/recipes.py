"""The pretraining recipe study: which switches make musical content emerge at laptop scale.

The authors trained on about 2 M real tracks; our model sees a rendered corpus for minutes,
where one rendered track has one timbre and NT-Xent can be solved by recognising the
instrument. This module measures, with the probing suite, what each recipe switch of
:mod:`vit1d.pretrain.train` does to what the model keeps:

* ``paper``: the authors' recipe as it is (random batches, no augmentation, two crops of one
  render);
* ``hard-negatives``: batches filled from tracks of the same instrumentation
  (``data.group_by=instrumentation``), so timbre alone cannot tell an anchor from its
  negatives;
* ``augment``: gain, EQ and noise drawn per view (:mod:`vit1d.pretrain.augment`), so the two views of
  a positive pair no longer share their spectral envelope exactly;
* ``hard-negatives+augment``: both; with ``+temp0.2`` (NT-Xent temperature 0.2 instead of
  0.1), ``+far-crops`` (crops up to 12 s apart instead of 4 s), ``+lr1e-3`` (twice the peak
  learning rate) or ``+reverb`` (a late-reverb tail per view) on top;
* ``collection-negatives+augment``: augmentations, with batches filled from one collection;
* ``twins``: the second view is cropped from a *twin render* of the excerpt
  (:mod:`vit1d.corpus.twins`: same score window, tempo, transposition and drums; other
  instruments, room, EQ, noise and timing) at the same score time, so only what the score
  fixes (harmony, melody, rhythm) ties a positive pair: our adaptation to a rendered corpus,
  not the authors' recipe; ``twins-within-4s`` lets the twin view start up to 4 s away,
  ``twins-half`` takes half the pairs from twins, ``twins+hard-negatives`` and
  ``twins+augment`` add the earlier switches, and ``production-twins+hard-negatives`` pairs
  with a twin that keeps the instrumentation (only the production redrawn) while the
  negatives share the instrumentation: the positives share timbre and score, the negatives
  timbre only.

Each variant is defined relative to the paper's recipe (:func:`paper_recipe`): the switches
of :data:`SWITCHES` it does not set take the paper's value whatever the base preset holds.

The study also measures the **budget** (:data:`BUDGETS`): the same training compute spent
differently. Each budget variant is the :data:`BUDGET_RECIPE` with the batch or the depth
scaled and the steps (and warm-up) scaled the other way, so that batch x depth x steps, to
which the training FLOPs are proportional, stays that of the recipe's own runs: half the
batch for twice the steps, four times the batch (the paper's 128 pairs on the default preset)
for a quarter of the steps, or half the blocks for twice the steps.

The study runs in two stages: every screened variant is pretrained for ``steps`` steps with
the screening seeds, its snapshots and final model probed (one linear probe per layer, ``avg``
pooling for the global tasks, frame tokens for chords and beats, one probe seed) beside the
random-init and log-mel baselines: emergence curves at a fraction of the cost of the book's
full probing. Then the best screened variants (:func:`finalists`) and ``paper`` run with
every final seed. :func:`choose_recipe` ranks the variants by a stated rule, on the screening
to pick the finalists and on the finals to pick the winner (:func:`study_choice`); the
``default`` preset uses the winner.

Resumable: a finished run is not retrained and a probed one is not probed again (a
``probed.json`` marker beside each run). Results go to ``<out>/results`` in the probing
suite's format, plus ``<out>/study.json`` (settings, overrides, hardware, timings).

Used by ``notebooks/03b_recipe.ipynb`` and ``make recipe-study``.
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vit1d.core.errors import UserError
from vit1d.core.presets import pipeline_names, pipeline_preset
from vit1d.core.settings import merge_settings
from vit1d.probing.linear import ProbeConfig
from vit1d.probing.settings import check_probe_overrides

#: The augmentation strengths of the ``augment`` variants.
AUGMENT = {"gain_db": 6.0, "eq_db": 12.0, "noise_snr_db": 25.0}
HARD = {"group_by": "instrumentation"}
#: Second views from twin renders of the same excerpt (orchestration and production redrawn),
#: at the same score time: the best of the pilot (``notebooks/03b_recipe.ipynb``).
TWINS = {"twin_prob": 1.0, "twin": "both", "twin_max_distance_s": 0.0}
#: The switches the study varies (``section.key``). A variant sets some of them; every other
#: one takes the paper's value, the :class:`vit1d.pretrain.config.Config` default, whatever the base
#: preset holds, so each variant differs from ``paper`` by exactly its own switches.
SWITCHES = (
    "data.group_by",
    "data.max_distance_s",
    "data.twin_prob",
    "data.twin",
    "data.twin_max_distance_s",
    "augment.gain_db",
    "augment.eq_db",
    "augment.noise_snr_db",
    "augment.noise_prob",
    "augment.reverb_s",
    "augment.reverb_wet",
    "loss.temperature",
)
#: Variant name -> its switches, relative to the paper's recipe.
VARIANTS: dict[str, dict[str, Any]] = {
    "paper": {},
    "hard-negatives": {"data": HARD},
    "augment": {"augment": AUGMENT},
    "hard-negatives+augment": {"data": HARD, "augment": AUGMENT},
    "hard-negatives+augment+temp0.2": {
        "data": HARD,
        "augment": AUGMENT,
        "loss": {"temperature": 0.2},
    },
    "hard-negatives+augment+far-crops": {
        "data": {**HARD, "max_distance_s": 12.0},
        "augment": AUGMENT,
    },
    "hard-negatives+augment+lr1e-3": {"data": HARD, "augment": AUGMENT, "optim": {"lr": 1e-3}},
    "hard-negatives+augment+reverb": {"data": HARD, "augment": {**AUGMENT, "reverb_s": 2.0}},
    "collection-negatives+augment": {"data": {"group_by": "collection"}, "augment": AUGMENT},
    "twins": {"data": TWINS},
    "twins-within-4s": {"data": {**TWINS, "twin_max_distance_s": 4.0}},
    "twins-half": {"data": {**TWINS, "twin_prob": 0.5}},
    "production-twins+hard-negatives": {"data": {**TWINS, "twin": "production", **HARD}},
    "twins+hard-negatives": {"data": {**TWINS, **HARD}},
    "twins+augment": {"data": TWINS, "augment": AUGMENT},
}
#: The variants a default study screens (one seed each), a subset of :data:`VARIANTS`; the
#: others stay available with ``--variants``.
SCREENED = (
    "paper",
    "hard-negatives+augment",
    "twins",
    "twins-within-4s",
    "twins-half",
    "production-twins+hard-negatives",
)
#: The recipe the budget variants start from (the one the default preset uses).
BUDGET_RECIPE = "paper"
#: Budget variant -> (config field, factor): that field of the base preset is scaled by the
#: factor and the steps by its inverse, at the same training compute.
BUDGETS: dict[str, tuple[str, float]] = {
    "batch-x0.5": ("train.batch_size", 0.5),
    "batch-x4": ("train.batch_size", 4.0),
    "depth-x0.5": ("model.depth", 0.5),
}
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


@dataclass
class StudySettings:
    """How big a study a preset affords.

    The study screens each of ``variants`` with ``seeds``, then runs the ``finalists`` best of
    them by :func:`choose_recipe` and ``paper`` with every seed of ``final_seeds``."""

    variants: tuple[str, ...] = SCREENED
    budgets: tuple[str, ...] = ()
    seeds: tuple[int, ...] = (0,)
    final_seeds: tuple[int, ...] = (0, 1, 2)
    finalists: int = 1
    steps: int = 300
    snapshot_fractions: tuple[float, ...] = (0.5, 1.0)
    tasks: tuple[str, ...] = ("key", "tagging", "instrument", "tempo", "chords", "beats")
    baseline_seeds: int = 2
    # the committed study's probes were fitted with the group's protocol (Adam, three seeds);
    # the study keeps it, so that it reproduces (the book's probes use the exact solver)
    probe: dict[str, Any] = field(
        default_factory=lambda: {
            "solver": "adam",
            "max_epochs": 20,
            "max_global_files": (600, 150, 300),
            "max_local_files": (120, 30, 100),
            "max_train_frames": 50_000,
            "min_delta": 1e-3,
            "n_boot": 200,
            "n_boot_tagging": 100,
        }
    )


def study_settings(preset: str) -> StudySettings:
    """The recipe study's size for pipeline preset ``preset``: its ``study`` section of
    ``presets/pipeline.yaml`` over :class:`StudySettings`' defaults (the committed study),
    validated (``probe`` replaces the default probe settings and is checked against
    :class:`vit1d.probing.linear.ProbeConfig`)."""
    spec = pipeline_preset(preset)
    settings = StudySettings()
    source = f"{spec.source} (preset {preset})"
    merge_settings(settings, spec.study, "study.", source)
    check_probe_overrides(settings.probe, "study.probe.", source)
    unknown = [
        v for v in (*settings.variants, *settings.budgets) if v not in {**VARIANTS, **BUDGETS}
    ]
    if unknown:
        raise UserError(
            f"study.variants or study.budgets in {source} name(s) {', '.join(unknown)}; the "
            f"variants are {', '.join(VARIANTS)} and the budgets {', '.join(BUDGETS)}"
        )
    return settings


def run_label(variant: str, seed: int) -> str:
    """The ``model`` column of a study run's probe results: ``variant/seed-N``."""
    return f"{variant}/seed-{seed}"


def parse_label(label: str) -> tuple[str, int] | None:
    """``("variant", seed)`` from :func:`run_label`, or None for a baseline."""
    variant, sep, seed = label.rpartition("/seed-")
    return (variant, int(seed)) if sep and seed.isdigit() else None


def paper_recipe() -> dict[str, Any]:
    """Every switch of :data:`SWITCHES` at the paper's value (the config defaults), as nested
    overrides."""
    from vit1d.pretrain.config import Config

    base, out = Config(), {}
    for name in SWITCHES:
        section, key = name.split(".")
        out.setdefault(section, {})[key] = getattr(getattr(base, section), key)
    return out


def _on_paper(switches: dict[str, Any]) -> dict[str, Any]:
    """A variant's switches over :func:`paper_recipe`."""
    out = paper_recipe()
    for section, values in copy.deepcopy(switches).items():
        out.setdefault(section, {}).update(values)
    return out


def variant_overrides(
    variant: str, seed: int, settings: StudySettings, preset: str | Path = "default"
) -> dict[str, Any]:
    """The config overrides of one study run on top of ``preset``: a recipe variant
    (:data:`VARIANTS`) or a budget variant (:data:`BUDGETS`, which reads the preset's batch,
    depth and warm-up to scale them)."""
    if variant in BUDGETS:
        from vit1d.pretrain.config import load_config

        out = _on_paper(VARIANTS[BUDGET_RECIPE])
        field_name, factor = BUDGETS[variant]
        section, key = field_name.split(".")
        base = load_config(preset)
        current = getattr(getattr(base, section), key)
        value = max(1, round(current * factor))
        scale = current / value  # steps go the other way
        out.setdefault(section, {})[key] = value
        out.setdefault("optim", {})["warmup_steps"] = round(base.optim.warmup_steps * scale)
        steps = max(2, round(settings.steps * scale))
    elif variant in VARIANTS:
        out = _on_paper(VARIANTS[variant])
        steps = settings.steps
    else:
        known = ", ".join([*VARIANTS, *BUDGETS])
        raise UserError(f"unknown recipe variant {variant!r}: use one of {known}")
    out["seed"] = seed
    out.setdefault("train", {}).update(
        steps=steps, snapshot_fractions=list(settings.snapshot_fractions)
    )
    return out


def _finished(run: Path) -> bool:
    return (run / "run.json").is_file() and (run / "model.safetensors").is_file()


def _marker_ok(marker: Path, expected: dict[str, Any]) -> bool:
    try:
        return json.loads(marker.read_text()) == expected
    except (OSError, json.JSONDecodeError):
        return False


def _probe_settings(settings: StudySettings | dict[str, Any]) -> dict[str, Any]:
    """The settings a run's probe results depend on, as read back from JSON."""
    d = asdict(settings) if isinstance(settings, StudySettings) else settings
    keys = ("tasks", "probe", "steps", "snapshot_fractions", "baseline_seeds")
    return json.loads(json.dumps({k: d.get(k) for k in keys}))


def seed_study(out: str | Path, source: str | Path) -> None:
    """Start the study folder ``out`` from an earlier study's results (``source``, e.g. the
    committed ``checkpoints/reference/recipe-study``): its ``results/`` and ``study.json`` are
    copied in, so :func:`run_study` keeps every run they hold (:func:`_held_runs`) instead of
    training it again, and only the missing runs (say, the finals) are computed. Refuses an
    ``out`` that already holds results, whose runs would be mixed with the source's."""
    import shutil

    out, source = Path(out), Path(source)
    if (
        not (source / RESULTS / "probes_summary.csv").is_file()
        or not (source / STUDY_JSON).is_file()
    ):
        raise UserError(
            f"{source} is not a recipe study (no {RESULTS}/probes_summary.csv and {STUDY_JSON}): "
            "pass the folder of a finished study, e.g. checkpoints/reference/recipe-study"
        )
    if (out / RESULTS).exists():
        raise UserError(
            f"{out / RESULTS} exists: seed a new study folder, or drop --from to resume this one"
        )
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{RESULTS}.seeding"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source / RESULTS, tmp)
    shutil.copy2(source / STUDY_JSON, out / STUDY_JSON)
    tmp.rename(out / RESULTS)  # atomic: a half-copied folder is never taken for results


def _result_models(out: Path) -> set[str]:
    """The ``model`` names in ``out``'s probe summary (empty when there is none)."""
    import pandas as pd

    try:
        return set(pd.read_csv(out / RESULTS / "probes_summary.csv")["model"])
    except (OSError, ValueError, KeyError):
        return set()


def _held_runs(out: Path, settings: StudySettings) -> tuple[dict[str, Any], set[str]]:
    """What an earlier study in ``out`` probed with the same settings: the runs whose probe
    results are in ``out/results`` (``study.json``'s facts by label, :func:`run_facts`), which
    need neither their checkpoint nor a rerun, and every model of those results (the runs'
    labels and the baselines). Empty when the settings differ."""
    try:
        study = json.loads((out / STUDY_JSON).read_text())
    except (OSError, ValueError):
        return {}, set()
    if _probe_settings(study.get("settings", {})) != _probe_settings(settings):
        return {}, set()
    models = _result_models(out)
    return {label: f for label, f in study.get("runs", {}).items() if label in models}, models


def run_study(
    data: str | Path,
    out: str | Path,
    preset: str = "default",
    settings: StudySettings | None = None,
    progress: bool = True,
    say: Any = print,
) -> Path:
    """Pretrain and probe every (variant, seed) of ``settings`` and the baselines; returns
    ``out``. ``data`` is the corpus root (``<data>/pretrain`` and the task folders). Runs
    whose results an earlier study left in ``out`` with the same settings are kept
    (:func:`seed_study`)."""
    from vit1d.models.checkpoint import atomic_write_text
    from vit1d.models.device import hardware_summary, select_device
    from vit1d.pretrain.train import pretrain
    from vit1d.probing.runner import ExtractOptions, probe_corpus

    settings = settings or study_settings(preset)
    data, out = Path(data), Path(out)
    pool = data / "pretrain" / "manifest.csv"
    results = out / RESULTS
    probe_kwargs = dict(
        tasks=list(settings.tasks),
        seeds=(0,),
        poolings=("avg",),
        config=ProbeConfig(**settings.probe),
        extract=ExtractOptions(cache_dir=str(out / "embed-cache")),
        progress=False,
        say=say,
    )
    timings: dict[str, Any] = {}
    runs: dict[str, Path] = {}  # label -> run folder, of every run this study holds
    held, held_models = _held_runs(out, settings)
    facts: dict[str, Any] = {}  # label -> run_facts of the runs taken from an earlier study

    def train_and_probe(variant: str, seed: int) -> None:
        label = run_label(variant, seed)
        run = out / variant / f"seed-{seed}"
        if label in held and not _finished(run):
            say(f"recipe study: {label} kept from the earlier study's results")
            facts[label] = held[label]
            return
        runs[label] = run
        started = time.perf_counter()
        if not _finished(run):
            overrides = variant_overrides(variant, seed, settings, preset)
            say(f"recipe study: pretrain {label} ({overrides['train']['steps']} steps)")
            pretrain(preset, pool, run, resume="auto", overrides=overrides, progress=progress)
        marker = run / "probed.json"
        expected = {"tasks": list(settings.tasks), "probe": settings.probe}
        expected = json.loads(json.dumps(expected))  # tuples -> lists, as read back
        if not _marker_ok(marker, expected):
            say(f"recipe study: probe {label}")
            probe_corpus(data, results, checkpoint=run, label=label, emergence=True, **probe_kwargs)
            atomic_write_text(marker, json.dumps(expected))
        timings[label] = round(time.perf_counter() - started, 1)

    # 1. screening: every variant and budget with the screening seeds
    for variant in (*settings.variants, *settings.budgets):
        for seed in settings.seeds:
            train_and_probe(variant, seed)
    marker = results / "baselines.json"
    expected = json.loads(
        json.dumps(
            {
                "tasks": list(settings.tasks),
                "probe": settings.probe,
                "seeds": settings.baseline_seeds,
            }
        )
    )
    # a study seeded from committed results (which keep no markers) holds its baselines too
    if not _marker_ok(marker, expected) and not set(BASELINES) <= held_models:
        say("recipe study: probe the random-init and log-mel baselines")
        first = out / settings.variants[0] / f"seed-{settings.seeds[0]}"
        if not _finished(first):
            raise UserError(
                f"the baselines need the architecture of {first}, which is not there: rerun "
                "the study in a fresh folder without --from"
            )
        kwargs = {**probe_kwargs, "seeds": tuple(range(settings.baseline_seeds))}
        probe_corpus(
            data,
            results,
            architecture=first,
            random_init=settings.baseline_seeds,
            logmel=True,
            **kwargs,
        )
        atomic_write_text(marker, json.dumps(expected))
    # 2. finals: the best screened variants and the paper's recipe with every final seed
    finals = finalists(study_table(out), settings) if settings.final_seeds else []
    if finals:
        say(f"recipe study: finals {', '.join(finals)} with seeds {settings.final_seeds}")
    for variant in finals:
        for seed in settings.final_seeds:
            train_and_probe(variant, seed)
    study = {
        "preset": preset,
        "runs": dict(
            sorted({**facts, **{label: run_facts(run) for label, run in runs.items()}}.items())
        ),
        "settings": asdict(settings),
        "finalists": finals,
        "variants": {v: VARIANTS[v] for v in settings.variants},
        "paper_recipe": paper_recipe(),
        "budgets": {
            v: {k: x for k, x in variant_overrides(v, 0, settings, preset).items() if k != "seed"}
            for v in settings.budgets
        },
        "seconds_per_run_this_session": timings,
        "hardware": hardware_summary(select_device("cpu")),
        "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    atomic_write_text(out / STUDY_JSON, json.dumps(study, indent=2))
    return out


def screening(table: Any, seeds: Sequence[int]) -> Any:
    """The rows of ``table`` (:func:`study_table`) the screening ranks: the runs of the
    screening ``seeds`` and the baselines."""
    return table[table["seed"].isin(list(seeds)) | (table["seed"] < 0)]


def finalists(table: Any, settings: StudySettings) -> list[str]:
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
    import pandas as pd

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
    import pandas as pd

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
    import pandas as pd

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
    import pandas as pd

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


def register(subparsers: Any) -> None:
    """Add ``vit1d recipe-study`` to the command line."""
    p = subparsers.add_parser(
        "recipe-study",
        help="pretrain and probe the recipe variants (notebooks/03b_recipe)",
        description="Pretrain every recipe variant with each seed, probe snapshots and final "
        "models on a few fast tasks beside the baselines, and print the ranking. Resumable.",
    )
    p.add_argument("--data", required=True, help="corpus root (with pretrain/ and task folders)")
    p.add_argument("--out", required=True, help="study folder (runs, results, study.json)")
    p.add_argument(
        "--preset",
        default="default",
        choices=pipeline_names(),
        help="pipeline preset: the base training preset and the study size (presets/pipeline.yaml)",
    )
    p.add_argument("--variants", default="", help="comma-separated subset of the variants")
    p.add_argument(
        "--budgets", default="", help="comma-separated subset of the budget variants, or none"
    )
    p.add_argument("--steps", type=int, default=0, help="steps per run (0: the preset's)")
    p.add_argument("--seeds", default="", help="comma-separated screening seeds")
    p.add_argument("--final-seeds", default="", help="comma-separated seeds of the finals, or none")
    p.add_argument(
        "--from",
        dest="source",
        default="",
        help="start from this study's results (e.g. checkpoints/reference/recipe-study): its "
        "runs are kept, only the missing ones (the finals) are trained",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cli)


def _cli(args: Any) -> int:
    settings = study_settings(args.preset)
    if args.variants:
        settings.variants = tuple(v.strip() for v in args.variants.split(",") if v.strip())
        for v in settings.variants:
            if v not in VARIANTS:
                raise UserError(f"unknown variant {v!r}: use some of {', '.join(VARIANTS)}")
    if args.budgets:
        names = [v.strip() for v in args.budgets.split(",") if v.strip()]
        settings.budgets = () if names == ["none"] else tuple(names)
        for v in settings.budgets:
            if v not in BUDGETS:
                raise UserError(f"unknown budget {v!r}: use some of {', '.join(BUDGETS)} or none")
    if args.steps:
        settings.steps = args.steps
    if args.seeds:
        settings.seeds = tuple(int(x) for x in args.seeds.split(","))
    if args.final_seeds:
        names = args.final_seeds.split(",")
        settings.final_seeds = () if names == ["none"] else tuple(int(x) for x in names)
    if args.source:
        seed_study(args.out, args.source)
    out = run_study(args.data, args.out, args.preset, settings, progress=not args.no_progress)
    name, ranking = study_choice(out)
    print(ranking.round(3).to_string())
    print(f"best recipe: {name}")
    budgets = budget_table(out)
    if len(budgets):
        print(budgets.round(3).to_string())
    return 0


def preset_variant(preset: str | Path) -> str | None:
    """Which study variant a preset's recipe switches match (None: none of them), so the book
    can check that the ``default`` preset follows the study's choice."""
    from vit1d.pretrain.config import load_config

    return variant_of(load_config(preset))


def variant_of(cfg: Any) -> str | None:
    """Which study variant a :class:`vit1d.pretrain.config.Config`'s recipe switches match: every one of
    :data:`SWITCHES` equal, and the learning rate where the variant sets it (presets tune it
    to their step count)."""
    from vit1d.pretrain.config import Config, load_config

    def switches(c: Any) -> tuple:
        return tuple(getattr(getattr(c, n.split(".")[0]), n.split(".")[1]) for n in SWITCHES)

    mine = switches(cfg)
    # a variant that sets the learning rate first: it is the more specific match
    for name, overrides in sorted(VARIANTS.items(), key=lambda kv: "optim" not in kv[1]):
        want = load_config(Config(), _on_paper(overrides))
        if switches(want) == mine and ("optim" not in overrides or cfg.optim.lr == want.optim.lr):
            return name
    return None


def study_source(runs_dir: str | Path, root: str | Path) -> tuple[Path | None, str]:
    """Where the book reads the recipe study from: ``<runs>/recipe-study`` when this build
    ran it, else the study committed beside the reference checkpoint
    (``checkpoints/reference/recipe-study``), else None. Returns ``(folder, description)``."""
    here = Path(runs_dir) / "recipe-study"
    if (here / RESULTS / "probes_summary.csv").is_file():
        return here, "run by `make recipe-study` in this checkout"
    committed = Path(root) / "checkpoints" / "reference" / "recipe-study"
    if (committed / RESULTS / "probes_summary.csv").is_file():
        return committed, "committed with the reference checkpoint (`make recipe-study` reruns it)"
    return None, "not run: `make recipe-study` runs it"
