"""Whole probe runs: models x tasks -> results files.

:func:`run_probes` extracts (or reads from the cache) each model's features, probes every task
(:func:`vit1d.probing.probe.probe_task`), scores chance beside them and merges the rows into
``probes.csv``, ``probes_summary.csv`` and ``probes_runs.json`` under a lock;
:func:`probe_corpus` is what ``vit1d probe`` and the notebooks call.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from vit1d.core.errors import UserError
from vit1d.core.provenance import file_sha256, library_versions
from vit1d.features.embed import embed
from vit1d.features.sources import ModelSpec, architecture_config, checkpoint_step, load_model
from vit1d.features.windows import BATCH_SIZE, HOP_S, WINDOW_S
from vit1d.models.device import hardware_summary, select_device, torch_threads
from vit1d.pretrain.run_files import snapshot_folders
from vit1d.probing.items import write_items
from vit1d.probing.linear import ProbeConfig
from vit1d.probing.probe import chance_summary, probe_task
from vit1d.probing.results import (
    SUMMARY_COLUMNS,
    SUMMARY_CSV,
    results_lock,
    upsert_csv,
    write_results,
)
from vit1d.probing.tasks import Task, limit_files, load_task, tasks_arg

# ----------------------------------------------------------------------------------------------
# Whole runs: models x tasks -> results files
# ----------------------------------------------------------------------------------------------


def corpus_name(root: Path) -> str:
    """A corpus's name: ``config.name`` of its corpus.json, else its folder name."""
    try:
        name = json.loads((root / "corpus.json").read_text())["config"]["name"]
        if name:
            return str(name)
    except (OSError, KeyError, TypeError, json.JSONDecodeError):
        pass
    return root.resolve().name


@dataclass
class ExtractOptions:
    """Extraction settings passed to :func:`vit1d.features.embed.embed`."""

    cache_dir: str | None = None
    window_s: float = WINDOW_S
    hop_s: float = HOP_S
    batch_size: int = BATCH_SIZE
    device: str = "auto"
    precision: str = "auto"
    threads: int | None = None  # None: vit1d.features.embed.inference_threads decides

    def embed(
        self,
        spec: Any,
        files: Sequence[Any],
        cache: Any,
        frames: bool,
        model: Any,
        progress: bool,
        depth: int | None = None,
    ) -> Any:
        """:func:`vit1d.features.embed.embed` with these settings (``depth``: layers 0..depth only)."""

        return embed(
            spec,
            files,
            cache_dir=cache,
            frames=frames,
            window_s=self.window_s,
            hop_s=self.hop_s,
            batch_size=self.batch_size,
            device=self.device,
            precision=self.precision,
            threads=self.threads,
            progress=progress,
            model=model,
            depth=depth,
        )


def run_probes(
    tasks: Sequence[Task],
    sources: Sequence[Sequence[Any]],
    out_dir: str | Path,
    seeds: Sequence[int] = (0, 1, 2),
    layers: Sequence[int] | None = None,
    poolings: Sequence[str] | None = None,
    config: ProbeConfig | None = None,
    extract: ExtractOptions | None = None,
    corpus: str | None = None,
    progress: bool = True,
    say: Any = print,
) -> dict[str, Any]:
    """Probe every task on every feature source and merge the results into ``out_dir``.

    ``sources``: a list of source groups, each a list of :class:`vit1d.features.sources.ModelSpec`: one
    spec (a checkpoint, the log-mel baseline), or one per seed (random init: init seed ``k``
    is probed with probe seed ``k``). Extraction happens once per spec over the union of the
    tasks' audio (frame tokens only for the files of local tasks).
    """

    cfg = config or ProbeConfig()
    ext = extract or ExtractOptions()
    out_dir = Path(out_dir)
    if not tasks:
        raise UserError("no tasks to probe")
    tasks = [
        limit_files(t, cfg.max_local_files if t.spec.local else cfg.max_global_files) for t in tasks
    ]
    root = tasks[0].manifest.parent.parent
    corpus = corpus or corpus_name(root)
    cache = ext.cache_dir or str(root / ".vit1d_cache" / "embed")
    audio = _task_audio(tasks)
    written: dict[str, Any] = {"run_ids": []}
    # probing only some layers: the blocks above the deepest are not run
    depth = max(layers) if layers else None
    for group in sources:
        run_id = f"{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        started = time.perf_counter()
        per_spec = _extract_group(group, audio, ext, cache, progress, depth, say)
        task_embs = _task_embeddings(tasks, per_spec, ext, cache, depth)
        for task in tasks:
            say(f"probe {group[0].name} {task.name}: {len(task.examples)} examples")
        results = _fit_tasks(tasks, task_embs, seeds, layers, poolings, cfg, progress)
        rows, summary, items, task_info = _group_rows(
            tasks, task_embs, results, group, corpus, run_id
        )
        provenance = {
            **_run_provenance(group, per_spec, root, corpus, task_info),
            "layers": list(layers) if layers is not None else "all",
            "poolings": list(poolings) if poolings is not None else "all",
            "probe_config": asdict(cfg),
            "extraction": {**asdict(ext), "x_realtime": [_embed_speed(e) for e in per_spec]},
            "hardware": hardware_summary(select_device(ext.device)),
            "versions": library_versions(),
            "seconds": round(time.perf_counter() - started, 1),
            "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        with results_lock(out_dir):  # a run's rows and its items appear together
            paths = write_results(out_dir, rows, summary, run_id, provenance)
            write_items(out_dir, items)
        written["run_ids"].append(run_id)
        written.update({k: str(v) for k, v in paths.items()})
        say(
            f"  {group[0].name}: {len(rows)} rows in {provenance['seconds']:.0f} s -> "
            f"{paths['probes']}"
        )
    chance = {"model": "chance", "checkpoint": "-", "step": "", "corpus": corpus, "run_id": ""}
    rows = [{**chance, **r} for t in tasks for r in chance_summary(t)]
    if rows:
        upsert_csv(out_dir / SUMMARY_CSV, rows, SUMMARY_COLUMNS)
    return written


def _task_audio(tasks: Sequence[Task]) -> tuple[list[Any], list[Any]]:
    """The audio files of the local tasks and of the global tasks, each once, in task order."""
    global_files = list(
        dict.fromkeys(ex.audio for t in tasks if not t.spec.local for ex in t.examples)
    )
    local_files = list(dict.fromkeys(ex.audio for t in tasks if t.spec.local for ex in t.examples))
    return local_files, global_files


def _extract_group(
    group: Sequence[Any],
    audio: tuple[list[Any], list[Any]],
    ext: ExtractOptions,
    cache: str,
    progress: bool,
    depth: int | None,
    say: Any,
) -> list[dict[str, Any]]:
    """Load each spec of ``group`` and extract its features: frame tokens of the local tasks'
    files, pooled vectors of the other files. One ``{spec, model, made}`` per spec."""
    local_files, global_files = audio
    per_spec: list[dict[str, Any]] = []
    for spec in group:
        model = load_model(spec)
        say(f"extract {spec.name} {spec.checkpoint_name}")
        made = {}
        local_set = set(local_files)
        for frames, files in ((True, local_files), (False, global_files)):
            only = [f for f in files if frames or f not in local_set]
            if only:
                made[frames] = ext.embed(spec, only, cache, frames, model, progress, depth)
        per_spec.append({"spec": spec, "model": model, "made": made})
    return per_spec


def _task_embeddings(
    tasks: Sequence[Task],
    per_spec: list[dict[str, Any]],
    ext: ExtractOptions,
    cache: str,
    depth: int | None,
) -> list[list[Any]]:
    """Per task, one embeddings object per spec: the task's files, in manifest order, from the
    store that holds them (all extracted by :func:`_extract_group`: looked up here, in this
    thread, before the fits start)."""
    return [
        [
            ext.embed(
                entry["spec"],
                [ex.audio for ex in task.examples],
                cache,
                task.spec.local,
                entry["model"],
                progress=False,
                depth=depth,
            )
            for entry in per_spec
        ]
        for task in tasks
    ]


def _group_rows(
    tasks: Sequence[Task],
    task_embs: Sequence[Sequence[Any]],
    results: Sequence[dict[str, Any]],
    group: Sequence[Any],
    corpus: str,
    run_id: str,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[Any], dict[str, Any]]:
    """A source group's result rows, summary rows and per-item frames, with the model, corpus
    and run columns, and each task's info for the provenance."""
    rows, summary, items, task_info = [], [], [], {}
    for task, embs, result in zip(tasks, task_embs, results, strict=True):
        prov0 = embs[0].provenance
        checkpoint = group[0].checkpoint_name if len(group) == 1 else "random-init"
        common = {
            "model": group[0].name,
            "checkpoint": checkpoint,
            "step": group[0].step if group[0].step is not None else "",
            "corpus": corpus,
            "precision": prov0["precision"],
            "run_id": run_id,
        }
        rows += [{**common, **r} for r in result["rows"]]
        summary += [{**common, **r} for r in result["summary"]]
        keys = {k: common[k] for k in ("model", "checkpoint", "corpus")}
        items += [f.assign(**keys) for f in result["items"]]
        task_info[task.name] = {
            **result["info"],
            "manifest": str(task.manifest),
            "manifest_sha256": file_sha256(task.manifest),
            "classes": len(task.classes),
        }
    return rows, summary, items, task_info


def _run_provenance(
    group: Sequence[Any],
    per_spec: list[dict[str, Any]],
    root: Path,
    corpus: str,
    task_info: dict[str, Any],
) -> dict[str, Any]:
    """The models, corpus, tasks and seeds of a source group's run (the start of its record in
    ``probes_runs.json``)."""
    return {
        "models": [
            {**asdict(e["spec"]), "weights_sha256": _embed_hash(e), "precision": _embed_prec(e)}
            for e in per_spec
        ],
        "model": group[0].name,
        "corpus": {
            "name": corpus,
            "root": str(root.resolve()),
            "corpus_json_sha256": file_sha256(root / "corpus.json")
            if (root / "corpus.json").is_file()
            else None,
        },
        "tasks": task_info,
        "seeds": sorted({s for info in task_info.values() for s in info["seeds"]}),
        "seed_pairing": "init seed k <-> probe seed k" if len(group) > 1 else "all seeds",
    }


def _fit_tasks(
    tasks: Sequence[Task],
    task_embs: Sequence[Sequence[Any]],
    seeds: Sequence[int],
    layers: Sequence[int] | None,
    poolings: Sequence[str] | None,
    cfg: ProbeConfig,
    progress: bool,
) -> list[dict[str, Any]]:
    """:func:`probe_task` of every task, ``cfg.workers`` tasks at a time in threads (in
    order); the torch thread count is set once around them, not by each fit."""
    workers = min(len(tasks), cfg.workers or os.cpu_count() or 1)
    if workers <= 1:
        return [
            probe_task(t, e, seeds, layers, poolings, cfg, progress=progress)
            for t, e in zip(tasks, task_embs, strict=True)
        ]
    shared = replace(cfg, threads=0)  # each fit leaves the thread count alone
    with (
        torch_threads(cfg.threads),
        ThreadPoolExecutor(workers, thread_name_prefix="vit1d-probe") as pool,
    ):
        futures = [
            pool.submit(probe_task, t, e, seeds, layers, poolings, shared, ("valid", "test"), False)
            for t, e in zip(tasks, task_embs, strict=True)
        ]
        return [f.result() for f in futures]


def _embed_hash(entry: dict[str, Any]) -> str | None:
    made = entry["made"]
    return next(iter(made.values())).provenance.get("weights_sha256") if made else None


def _embed_prec(entry: dict[str, Any]) -> str | None:
    made = entry["made"]
    return next(iter(made.values())).provenance.get("precision") if made else None


def _embed_speed(entry: dict[str, Any]) -> float | None:
    speeds = [e.provenance.get("extraction_x_realtime") for e in entry["made"].values()]
    speeds = [s for s in speeds if s]
    return round(float(np.mean(speeds)), 1) if speeds else None


def baseline_sources(config: dict[str, Any], random_init: int, logmel: bool) -> list[list[Any]]:
    """Source groups of the baselines: ``random_init`` seeds of a ViT-1D with ``config`` (one
    group, init seed ``k`` for probe seed ``k``) and the log-mel features."""

    out: list[list[Any]] = []
    if random_init:
        out.append([ModelSpec("random", seed=k, config=config, step=0) for k in range(random_init)])
    if logmel:
        out.append([ModelSpec("logmel")])
    return out


def emergence_sources(
    run_dir: str | Path, label: str = "", final_step: int | None = None
) -> list[list[Any]]:
    """One source group per snapshot kept by a pretraining run (``snapshots/step-N``), less
    the one at ``final_step``: the last snapshot holds the final model's weights, so when the
    final model is probed too, that snapshot would be the same extraction and fit again."""

    found = snapshot_folders(run_dir)
    if not found:
        raise UserError(
            f"{run_dir} has no snapshots/step-* folders: pretrain with train.snapshot_fractions "
            "set (e.g. [0.1, 0.25, 0.5, 1.0]) to probe emergence over training"
        )
    return [
        [ModelSpec("checkpoint", str(folder), label=label, step=step)]
        for step, folder in found
        if final_step is None or step != final_step
    ]


def probe_corpus(
    data: str | Path,
    out: str | Path,
    checkpoint: str | Path | None = None,
    tasks: Sequence[str] | str = "all",
    label: str = "",
    random_init: int = 0,
    logmel: bool = False,
    emergence: bool = False,
    final: bool = True,
    architecture: str | Path | None = None,
    seeds: Sequence[int] = (0, 1, 2),
    layers: Sequence[int] | None = None,
    poolings: Sequence[str] | None = ("cls", "seq", "avg"),
    config: ProbeConfig | None = None,
    extract: ExtractOptions | None = None,
    corpus: str | None = None,
    progress: bool = True,
    say: Any = print,
) -> dict[str, Any]:
    """What ``vit1d probe`` does, for notebooks: probe a corpus's tasks on a checkpoint (and
    its snapshots with ``emergence``; ``final=False`` skips the final model), on ``random_init``
    random-init models (init seed ``k`` <-> probe seed ``k``; architecture from the checkpoint
    or ``architecture``) and on log-mel features; merge the rows into ``out``."""

    root = Path(data)
    names = tasks_arg(tasks if isinstance(tasks, str) else ",".join(tasks), root)
    loaded = [load_task(root / t / "manifest.csv", t) for t in names]
    for t in loaded:
        for note in t.notes:
            say(f"{t.name}: {note}")
    if emergence and not checkpoint:
        raise UserError("emergence needs the checkpoint of the pretraining run folder")
    if random_init and random_init != len(seeds):
        raise UserError(
            f"{random_init} random-init models need as many probe seeds (got {len(seeds)}): "
            "init seed k is probed with probe seed k"
        )
    sources: list[list[Any]] = []
    if checkpoint and (final or not emergence):
        step = checkpoint_step(checkpoint)
        sources.append([ModelSpec("checkpoint", str(checkpoint), label=label, step=step)])
    if emergence:
        final_step = sources[0][0].step if sources else None
        sources += emergence_sources(checkpoint, label, final_step)
    if random_init:
        arch = architecture or checkpoint
        if not arch:
            raise UserError("random-init baselines need a checkpoint or an architecture preset")
        sources += baseline_sources(architecture_config(str(arch)), random_init, False)
    if logmel:
        sources += baseline_sources({}, 0, True)
    if not sources:
        raise UserError("nothing to probe: give a checkpoint, random-init seeds or log-mel")
    pools = None if poolings is None else [*poolings, "meanstd"]
    return run_probes(
        loaded,
        sources,
        out,
        seeds=seeds,
        layers=layers,
        poolings=pools,
        config=config,
        extract=extract,
        corpus=corpus,
        progress=progress,
        say=say,
    )
