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
  timbre only; ``production-twins`` is that twin with random negatives;
* ``twins+twin-head``: the twin is a *third* view with its own projection head and NT-Xent
  term, while the second view stays a crop of the same render (the first head,
  ``loss.twin_head``): one head may use the timbre, the other must not, and the backbone
  under both need not forget it to match the twins (LooC's separate embedding spaces per
  invariance). A step embeds three views per track instead of two (1.5 times the compute).

Each variant is defined relative to the paper's recipe
(:func:`~vit1d.studies.variants.paper_recipe`): the switches of
:data:`~vit1d.studies.variants.SWITCHES` it does not set take the paper's value whatever the
base preset holds.

The study also measures the **budget** (:data:`~vit1d.studies.variants.BUDGETS`): the same
training compute spent differently. Each budget variant is the
:data:`~vit1d.studies.variants.BUDGET_RECIPE` with the batch or the depth scaled and the
steps (and warm-up) scaled the other way, so that batch x depth x steps, to which the
training FLOPs are proportional, stays that of the recipe's own runs: half the batch for
twice the steps, four times the batch (the paper's 128 pairs on the default preset) for a
quarter of the steps, or half the blocks for twice the steps.

The study runs in two stages: every screened variant is pretrained for ``steps`` steps with
the screening seeds, its snapshots and final model probed (one linear probe per layer, ``avg``
pooling for the global tasks, frame tokens for chords and beats, one probe seed) beside the
random-init and log-mel baselines: emergence curves at a fraction of the cost of the book's
full probing. Then the best screened variants (:func:`~vit1d.studies.ranking.finalists`)
and ``paper`` run with every final seed. :func:`~vit1d.studies.ranking.choose_recipe` ranks
the variants by a stated rule, on the screening to pick the finalists and on the finals to
pick the winner (:func:`~vit1d.studies.ranking.study_choice`); the ``default`` preset uses
the winner.

Resumable: a finished run is not retrained and a probed one is not probed again (a
``probed.json`` marker beside each run). Results go to ``<out>/results`` in the probing
suite's format, plus ``<out>/study.json`` (settings, overrides, hardware, timings).

Used by ``notebooks/03b_recipe.ipynb`` and ``make recipe-study``.
"""

from __future__ import annotations

import datetime as _dt
import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from vit1d.core.errors import UserError
from vit1d.core.presets import pipeline_preset
from vit1d.core.settings import merge_settings
from vit1d.models.checkpoint import atomic_write_text
from vit1d.models.device import hardware_summary, select_device
from vit1d.pretrain.train import pretrain
from vit1d.probing.linear import ProbeConfig
from vit1d.probing.runner import ExtractOptions, probe_corpus
from vit1d.probing.settings import check_probe_overrides
from vit1d.studies.ranking import BASELINES, RESULTS, STUDY_JSON, finalists, run_facts, study_table
from vit1d.studies.variants import (
    BUDGETS,
    SCREENED,
    VARIANTS,
    paper_recipe,
    run_label,
    variant_overrides,
)


@dataclass
class StudySettings:
    """How big a study a preset affords.

    The study screens each of ``variants`` with ``seeds``, then runs the ``finalists`` best of
    them by :func:`~vit1d.studies.ranking.choose_recipe` and ``paper`` with every seed of
    ``final_seeds``."""

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


def _finished(run: Path) -> bool:
    return (run / "run.json").is_file() and (run / "model.safetensors").is_file()


def _marker_ok(marker: Path, expected: dict[str, Any]) -> bool:
    try:
        return json.loads(marker.read_text()) == expected
    except (OSError, json.JSONDecodeError):
        return False


def _probe_settings(settings: StudySettings | dict[str, Any]) -> dict[str, Any]:
    """The settings a run's probe results depend on, as read back from JSON, with the probe
    solver written out: a study's own settings leave it to :class:`ProbeConfig`'s default,
    and a ``study.json`` written before the solver was a setting holds none because every
    probe then was Adam's (the committed screening runs: their ``probes_runs.json`` records
    no solver, the finals record ``adam``)."""
    own = isinstance(settings, StudySettings)
    d = asdict(settings) if own else settings
    keys = ("tasks", "probe", "steps", "snapshot_fractions", "baseline_seeds")
    out = json.loads(json.dumps({k: d.get(k) for k in keys}))
    if isinstance(out.get("probe"), dict):
        out["probe"].setdefault("solver", ProbeConfig().solver if own else "adam")
    return out


def seed_study(out: str | Path, source: str | Path) -> None:
    """Start the study folder ``out`` from an earlier study's results (``source``, e.g. the
    committed ``checkpoints/reference/recipe-study``): its ``results/`` and ``study.json`` are
    copied in, so :func:`run_study` keeps every run they hold (:func:`_held_runs`) instead of
    training it again, and only the missing runs (say, the finals) are computed. Refuses an
    ``out`` that already holds results, whose runs would be mixed with the source's."""
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
    try:
        return set(pd.read_csv(out / RESULTS / "probes_summary.csv")["model"])
    except (OSError, ValueError, KeyError):
        return set()


def _held_runs(out: Path, settings: StudySettings) -> tuple[dict[str, Any], set[str]]:
    """What an earlier study in ``out`` probed with the same settings: the runs whose probe
    results are in ``out/results`` (``study.json``'s facts by label,
    :func:`~vit1d.studies.ranking.run_facts`), which need neither their checkpoint nor a rerun,
    and every model of those results (the runs' labels and the baselines). Empty when the
    settings differ."""
    try:
        study = json.loads((out / STUDY_JSON).read_text())
    except (OSError, ValueError):
        return {}, set()
    if _probe_settings(study.get("settings", {})) != _probe_settings(settings):
        return {}, set()
    models = _result_models(out)
    return {label: f for label, f in study.get("runs", {}).items() if label in models}, models


def _probe_baselines(
    data: Path, out: Path, settings: StudySettings, held_models: set[str], probe_kwargs: dict,
    say: Any,
) -> None:  # fmt: skip
    """Probe the random-init and log-mel baselines once per study (``baselines.json`` marks
    them done); the random-init model takes the architecture of the first screened run."""
    results = out / RESULTS
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


def _study_record(
    preset: str, settings: StudySettings, runs: dict[str, Path], facts: dict[str, Any],
    finals: list[str], timings: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    """``study.json``: the runs' facts, settings, finalists, each variant's switches, the
    budgets' overrides, this session's timings and the hardware."""
    study = {
        "preset": preset,
        "runs": dict(
            sorted({**facts, **{label: run_facts(run) for label, run in runs.items()}}.items())
        ),
        # the probe solver written out, so that a later study reads back what ran
        "settings": {**asdict(settings), **_probe_settings(settings)},
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
    return study


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
    _probe_baselines(data, out, settings, held_models, probe_kwargs, say)
    # 2. finals: the best screened variants and the paper's recipe with every final seed
    finals = finalists(study_table(out), settings) if settings.final_seeds else []
    if finals:
        say(f"recipe study: finals {', '.join(finals)} with seeds {settings.final_seeds}")
    for variant in finals:
        for seed in settings.final_seeds:
            train_and_probe(variant, seed)
    study = _study_record(preset, settings, runs, facts, finals, timings)
    atomic_write_text(out / STUDY_JSON, json.dumps(study, indent=2))
    return out


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
