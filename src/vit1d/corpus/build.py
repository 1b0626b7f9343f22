"""Build the embedded corpus: parse, plan, render in parallel, write manifests and provenance.

:func:`build_corpus` is what ``vit1d corpus`` runs. The steps:

1. check the output folder (writable; empty, or a corpus of the same preset and seed) and
   the SoundFont, and remove temporary files a killed build left behind;
2. select works (:func:`vit1d.corpus.scores.select_units`) and load their note events,
   parsing only what the cache lacks;
3. give each work a split (:func:`vit1d.corpus.tasks.assign_split`), and list the jobs:
   one or more *music* renders per work (probe tasks), *pretrain* renders of train and
   valid works with their *twins* (``pretrain.twins``, :mod:`vit1d.corpus.twins`), and the
   isolated *notes*;
4. run the jobs that have no record yet on ``workers`` processes; each job writes its
   audio, annotations and finally its record, atomically;
5. write the task manifests, the label statistics (:mod:`vit1d.corpus.stats`) and
   ``corpus.json`` (provenance: versions, SoundFont checksum, seed, counts, hours, timings).

A build killed at any point leaves only complete files under final names; running the same
command again renders only what is missing and ends with the same corpus, byte for byte.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import platform
import sys
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

from vit1d.core import atomic, faults
from vit1d.core.errors import UserError
from vit1d.core.provenance import file_sha256
from vit1d.corpus import jobs, scores, stats, tasks, twins
from vit1d.corpus.config import check_values, preset_digest
from vit1d.corpus.records import record_path
from vit1d.corpus.render import renderer_name, renderer_version, resolve_soundfont

FORMAT_VERSION = 1
#: Render kinds, in the order the build lists them (``twin``: :mod:`vit1d.corpus.twins`).
KINDS = ("pretrain", "twin", "music", "notes")


def default_cache_dir() -> Path:
    """``$VIT1D_CACHE``, else ``$XDG_CACHE_HOME/vit1d``, else ``~/.cache/vit1d``."""
    if os.environ.get("VIT1D_CACHE"):
        return Path(os.environ["VIT1D_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "vit1d"


def _check_writable(root: Path) -> None:
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".write_test.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UserError(
            f"cannot write to the output folder {root}: {exc.strerror or exc}. "
            "Pass --out with a folder you can write to"
        ) from None


def _clean_temporaries(root: Path) -> int:
    """Delete the temporary files an interrupted build left (the names of
    :func:`vit1d.core.atomic.temporary_name`, never a final file)."""
    n = 0
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            if atomic.is_temporary(f):
                os.unlink(os.path.join(dirpath, f))
                n += 1
    return n


def _planned_jobs(
    works: list[dict[str, Any]], cfg: dict[str, Any]
) -> tuple[list[tuple], dict[str, str]]:
    """Every job of the corpus, in a fixed order, and the split of each work."""
    seed = cfg["seed"]
    sp = cfg["splits"]
    split_of = {
        w["id"]: tasks.assign_split(tasks.work_group(w["id"]), seed, sp["valid"], sp["test"])
        for w in works
    }
    out: list[tuple] = []
    n_music = n_pre = 0
    poly = cfg["tasks"]["chords_min_voices"]
    for w in works:
        reps = cfg["music"]["renders_per_work"]
        if len(w["parts"]) >= poly:
            reps = cfg["music"]["renders_per_polyphonic_work"]
        for _ in range(reps):
            out.append(("music", f"music/{n_music:05d}", w["id"]))
            n_music += 1
    names = twins.twin_names(cfg["pretrain"]["twins"])
    for w in works:
        if split_of[w["id"]] == "test":
            continue
        for _ in range(cfg["pretrain"]["renders_per_work"]):
            original = f"pretrain/{n_pre:05d}"
            out.append(("pretrain", original, w["id"]))
            out += [("twin", twins.twin_id(original, n), w["id"], original) for n, _r in names]
            n_pre += 1
    nsp = cfg["notes"]["splits"]
    for render_id, ins, midi, dyn in jobs.note_jobs(cfg["notes"]):
        split = tasks.assign_split(f"note:{ins}:{midi}", seed, nsp["valid"], nsp["test"])
        out.append(("notes", render_id, (ins, midi, dyn, split)))
    return out, split_of


def _run_batch(
    root: str, batch: list[tuple], seed: int, cfg: dict[str, Any], soundfont: str
) -> list[tuple[str, float, str | None]]:
    """Worker: run jobs; returns ``(render_id, seconds of audio, error or None)``."""
    out = []
    ext = cfg["audio_format"]
    for job in batch:
        kind, render_id = job[0], job[1]
        try:
            if kind == "notes":
                ins, midi, dyn, split = job[2]
                rec = jobs.run_note(
                    Path(root), render_id, ins, midi, dyn, split, seed, cfg, soundfont, ext
                )
            elif kind == "twin":
                work, split, original = job[2], job[3], job[4]
                rec = twins.run_twin(
                    Path(root), render_id, original, work, split, seed, cfg, soundfont, ext
                )
            else:
                work, split = job[2], job[3]
                clip = cfg[kind]["clip_s"]
                rec = jobs.run_music(
                    Path(root), render_id, work, split, seed, cfg, clip, soundfont, ext
                )
            out.append((render_id, float(rec["duration"]), None))
        except UserError:
            raise
        except Exception as exc:  # one bad score must not sink the build
            out.append((render_id, 0.0, f"{type(exc).__name__}: {exc}"[:300]))
        faults.reached("render")
    return out


def build_corpus(
    cfg: dict[str, Any],
    out: str | os.PathLike[str],
    cache_dir: str | os.PathLike[str] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Build (or finish building) the corpus described by ``cfg`` under ``out``.

    Returns the provenance dict also written to ``<out>/corpus.json``.
    """
    t_start = time.perf_counter()
    check_values(cfg)
    root = Path(out).expanduser()
    _check_writable(root)
    soundfont = resolve_soundfont(cfg["soundfont"])
    renderer = renderer_version()  # checks VIT1D_RENDERER before any work
    cache = Path(cache_dir or cfg["cache_dir"] or default_cache_dir()).expanduser()
    digest = preset_digest(cfg)
    _claim_output(root, cfg, digest, log)

    # 1. scores
    units, works, skipped, t_parse = _load_scores(cfg, cache, log)

    # 2. jobs
    planned, split_of = _planned_jobs(works, cfg)
    todo = _jobs_to_run(root, planned, works, split_of)
    log(f"render: {len(planned)} jobs, {len(planned) - len(todo)} already done, {len(todo)} to go")

    # 3. render
    t1 = time.perf_counter()
    rendered_s, errors = _render(root, todo, cfg, str(soundfont), log)
    t_render = time.perf_counter() - t1

    # 4. manifests, statistics, provenance
    records, missing = _read_records(root, planned)
    counts = tasks.write_manifests(root, records, cfg)
    summary = stats.write_stats(root, records, counts, cfg)
    log(summary["table"])
    elapsed = time.perf_counter() - t_start
    prov = _provenance(
        cfg,
        root,
        digest=digest,
        renderer=renderer,
        soundfont=soundfont,
        n_works=(len(units), len(works), len(skipped)),
        records=records,
        errors=errors,
        missing=missing,
        counts=counts,
        tags=summary["tags"],
    )
    prov["this_run"] = {
        "workers": cfg["workers"],
        "build_s": round(elapsed, 1),
        "parse_s": round(t_parse, 1),
        "render_s": round(t_render, 1),
        "rendered_audio_h": round(rendered_s / 3600, 3),
        "render_x_realtime": round(rendered_s / t_render, 1) if t_render > 0 else None,
        "end_to_end_x_realtime": round(rendered_s / elapsed, 1) if elapsed > 0 else None,
        "resumed": len(planned) != len(todo),
        "jobs_run": len(todo),
    }
    _atomic_json(root / "corpus.json", prov)
    log(
        f"corpus: {prov['hours']['total']:.2f} h of audio in {root} "
        f"({prov['disk_bytes'] / 1e9:.2f} GB); this run {elapsed:.0f} s "
        f"(parse {t_parse:.0f} s, render {t_render:.0f} s, "
        f"{prov['this_run']['end_to_end_x_realtime']}x real time end to end)"
    )
    if errors:
        log(f"warning: {len(errors)} renders failed; see failed_renders in corpus.json")
    return prov


def _claim_output(root: Path, cfg: dict[str, Any], digest: str, log: Callable) -> None:
    """Check that ``root`` is empty or holds a corpus of the same preset, seed and renderer,
    stamp it (``build.json``) and delete the temporary files a killed build left."""
    stamp = root / "build.json"
    if stamp.is_file():
        old = json.loads(stamp.read_text(encoding="utf-8"))
        if old.get("digest") != digest:
            raise UserError(
                f"{root} holds a corpus built with other settings (preset "
                f"{old.get('preset')!r}, seed {old.get('seed')}); pass another --out, or "
                "delete that folder to rebuild it"
            )
        if old.get("renderer", renderer_name()) != renderer_name():
            raise UserError(
                f"{root} was rendered with the {old['renderer']} renderer and this build would "
                f"use {renderer_name()}: set VIT1D_RENDERER={old['renderer']} to finish it, "
                "or pass another --out"
            )
    elif any(p.name != stamp.name for p in root.iterdir()):
        raise UserError(
            f"{root} is not empty and holds no corpus; pass an empty or new folder to --out"
        )
    _atomic_json(
        stamp,
        {"digest": digest, "preset": cfg["name"], "seed": cfg["seed"], "renderer": renderer_name()},
    )
    n_tmp = _clean_temporaries(root)
    if n_tmp:
        log(f"removed {n_tmp} temporary files left by an interrupted build")


def _load_scores(
    cfg: dict[str, Any], cache: Path, log: Callable
) -> tuple[list[str], list[dict[str, Any]], list[dict[str, str]], float]:
    """Select the works and load their note events; returns (units, works, skipped, seconds)."""
    t0 = time.perf_counter()
    units = scores.select_units(cfg["collections"], cfg["seed"])
    log(f"scores: {len(units)} works selected from the music21 corpus; cache {cache}")
    last = [0.0]

    def parse_progress(n: int, total: int) -> None:
        now = time.perf_counter()
        if now - last[0] > 10 or n == total:
            last[0] = now
            log(f"  scores {n}/{total} ({now - t0:.0f} s)")

    works, skipped = scores.load_works(units, cache, cfg["workers"], parse_progress)
    t_parse = time.perf_counter() - t0
    log(f"scores: {len(works)} usable works, {len(skipped)} skipped, {t_parse:.1f} s")
    if not works:
        raise UserError("no usable works were selected; check the collections in the preset")
    return units, works, skipped, t_parse


def _jobs_to_run(
    root: Path, planned: list[tuple], works: list[dict[str, Any]], split_of: dict[str, str]
) -> list[tuple]:
    """The planned jobs that have no record yet, with their work and split filled in."""
    by_id = {w["id"]: w for w in works}
    todo = []
    for job in planned:
        if record_path(root, job[1]).is_file():
            continue
        if job[0] == "notes":
            todo.append(job)
        else:
            todo.append((job[0], job[1], by_id[job[2]], split_of[job[2]], *job[3:]))
    return todo


def _read_records(root: Path, planned: list[tuple]) -> tuple[list[dict[str, Any]], int]:
    """The records of the planned jobs, in plan order, and how many are missing."""
    out = []
    missing = 0
    for job in planned:
        path = record_path(root, job[1])
        if path.is_file():
            out.append(json.loads(path.read_text(encoding="utf-8")))
        else:
            missing += 1
    return out, missing


def _provenance(
    cfg: dict[str, Any],
    root: Path,
    *,
    digest: str,
    renderer: str,
    soundfont: Path,
    n_works: tuple[int, int, int],
    records: list[dict[str, Any]],
    errors: dict[str, str],
    missing: int,
    counts: dict[str, Any],
    tags: list[dict[str, Any]],
) -> dict[str, Any]:
    """``corpus.json`` less ``this_run``: versions, SoundFont, seed, counts, hours, disk.

    ``n_works``: the numbers of works selected, usable and skipped.
    """
    hours = {
        kind: round(sum(r["duration"] for r in records if r["kind"] == kind) / 3600, 3)
        for kind in KINDS
    }
    selected, usable, skipped = n_works
    return {
        "format_version": FORMAT_VERSION,
        "preset": cfg["name"],
        "preset_digest": digest,
        "seed": cfg["seed"],
        "config": cfg,
        "music21": scores.music21_version(),
        "renderer": renderer,
        "soundfont": {
            "path": str(soundfont),
            "name": soundfont.name,
            "sha256": file_sha256(soundfont),
        },
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "works": {
            "selected": selected,
            "usable": usable,
            "skipped": skipped,
            "pretrain": len({r["work"] for r in records if r["kind"] == "pretrain"}),
            "music": len({r["work"] for r in records if r["kind"] == "music"}),
        },
        "renders": {kind: sum(r["kind"] == kind for r in records) for kind in KINDS},
        "failed_renders": errors,
        "missing_renders": missing,
        "counts": counts,
        "hours": {**hours, "total": round(sum(hours.values()), 3)},
        "tag_vocabulary": tags,
        "disk_bytes": _disk_bytes(root),
    }


def _render(
    root: Path, todo: list[tuple], cfg: dict[str, Any], soundfont: str, log: Callable
) -> tuple[float, dict[str, str]]:
    """Run the jobs, ``workers`` processes, small batches; returns (audio seconds, errors)."""
    errors: dict[str, str] = {}
    total_s = 0.0
    if not todo:
        return total_s, errors
    batch = 8
    batches = [todo[i : i + batch] for i in range(0, len(todo), batch)]
    t0 = time.perf_counter()
    last = t0
    done = 0

    def account(results: list[tuple[str, float, str | None]]) -> None:
        nonlocal total_s, done, last
        for rid, secs, err in results:
            total_s += secs
            done += 1
            if err:
                errors[rid] = err
        now = time.perf_counter()
        if now - last > 10 or done == len(todo):
            last = now
            log(
                f"  rendered {done}/{len(todo)}: {total_s / 3600:.2f} h of audio in "
                f"{now - t0:.0f} s ({total_s / max(now - t0, 1e-9):.0f}x real time)"
            )

    if cfg["workers"] > 1 and len(batches) > 1:
        with ProcessPoolExecutor(cfg["workers"], mp_context=mp.get_context("spawn")) as pool:
            pending = set()
            it = iter(batches)
            for b in it:  # keep a bounded number of batches in flight
                pending.add(pool.submit(_run_batch, str(root), b, cfg["seed"], cfg, soundfont))
                if len(pending) >= 4 * cfg["workers"]:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for f in finished:
                        account(f.result())
            for f in pending:
                account(f.result())
    else:
        for b in batches:
            account(_run_batch(str(root), b, cfg["seed"], cfg, soundfont))
    return total_s, errors


def _atomic_json(path: Path, obj: Any) -> None:
    atomic.write_json(path, obj, indent=1, sort_keys=True, default=str)


def _disk_bytes(root: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(dirpath, f))
            except OSError:
                pass
    return total
