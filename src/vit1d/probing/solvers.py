"""The two probe solvers on the same features: the group's protocol and the exact solver.

* ``adam``: the protocol of the paper's group (Adam, learning rate 1e-3, batches of 128,
  early stopping on the validation loss), one fit per probe seed;
* ``lbfgs``: the exact solution of the convex problem (full-batch L-BFGS, an L2 weight chosen
  on the validation split; :class:`vit1d.probing.linear.LinearProbes`), one fit per view, since its
  solution does not depend on the seed (:func:`vit1d.probing.probe.fit_seeds`).

:func:`compare_solvers` probes one model with both on the same cached features and writes a
record: per task, the primary metric at the layer and pooling chosen on the validation split
(valid and test, with Adam's seed spread), the mean difference over every view, and the
seconds each solver's fits took. ``python -m vit1d.probing.solvers`` writes it to
``bench/records/probe_solvers-<cpu>-<date>.json``; the reproducibility appendix
(``notebooks/99_reproducibility.ipynb``) shows the newest record.

**Verdict.** The exact solver holds on a task when its score at the chosen view is at least
Adam's minus the seed noise (three standard deviations of Adam's seeds, floored at
:data:`NOISE_FLOOR`) on both splits.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import re
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from vit1d.core.paths import reference_checkpoint
from vit1d.core.presets import pipeline_names
from vit1d.features.sources import ModelSpec, checkpoint_step
from vit1d.models.device import cpu_info
from vit1d.probing.compare import PRIMARY_METRIC, best_row
from vit1d.probing.linear import ProbeConfig
from vit1d.probing.results import RUNS_JSON, read_results
from vit1d.probing.runner import ExtractOptions, run_probes
from vit1d.probing.settings import probe_config, probe_settings
from vit1d.probing.tasks import GLOBAL_TASKS, LOCAL_TASKS, limit_files, load_task

SOLVERS = ("adam", "lbfgs")
#: Smallest seed noise a difference is judged against (a score's third decimal).
NOISE_FLOOR = 0.005


def _view_table(summary: Any, task: str, split: str) -> Any:
    metric = PRIMARY_METRIC[task]
    r = summary[
        (summary["task"] == task) & (summary["metric"] == metric) & (summary["split"] == split)
    ]
    return r.set_index(["layer", "pooling"])


def _task_record(
    summaries: dict[str, Any], seconds: dict[str, dict[str, float]], task: str
) -> dict:
    """One task's comparison (see the module docstring)."""
    out: dict[str, Any] = {"metric": PRIMARY_METRIC[task]}
    for solver, summary in summaries.items():
        row = best_row(summary, task)
        if row is None:
            return {**out, "missing": True}
        valid = _view_table(summary, task, "valid")
        key = (row["layer"], row["pooling"])
        out[solver] = {
            "layer": int(row["layer"]),
            "pooling": str(row["pooling"]),
            "valid": float(row["valid_mean"]),
            "test": float(row["mean"]),
            "test_ci": [float(row["ci_low"]), float(row["ci_high"])],
            "std_seeds": {
                "valid": float(valid.loc[key, "std_seeds"]) if key in valid.index else 0.0,
                "test": float(row["std_seeds"]),
            },
            "n_seeds": int(row["n_seeds"]),
            "seconds": round(seconds.get(solver, {}).get(task, float("nan")), 1),
        }
    adam, exact = out["adam"], out["lbfgs"]
    holds = True
    for split in ("valid", "test"):
        noise = max(3 * adam["std_seeds"][split], NOISE_FLOOR)
        out[f"diff_{split}"] = exact[split] - adam[split]
        out[f"noise_{split}"] = noise
        holds &= exact[split] >= adam[split] - noise
        # every view, not only the chosen one: the mean of exact - adam over layers x poolings
        a, e = (_view_table(summaries[s], task, split)["mean"] for s in SOLVERS)
        both = a.index.intersection(e.index)
        out[f"mean_view_diff_{split}"] = float((e[both] - a[both]).mean())
    out["holds"] = bool(holds)
    return out


def _fit_seconds(results: Path) -> dict[str, float]:
    """Seconds the fits (and the scoring) of each task took, summed over the runs."""
    runs = json.loads((results / RUNS_JSON).read_text())
    out: dict[str, float] = {}
    for run in runs.values():
        for task, info in run.get("tasks", {}).items():
            out[task] = out.get(task, 0.0) + float(info.get("seconds", 0.0))
    return out


def compare_solvers(
    data: str | Path,
    checkpoint: str | Path,
    out: str | Path,
    tasks: list[str],
    config: ProbeConfig,
    seeds: tuple[int, ...] = (0, 1, 2),
    say: Any = print,
) -> dict[str, Any]:
    """Probe ``checkpoint`` on ``tasks`` of the corpus at ``data`` with each solver of
    :data:`SOLVERS` (``config`` otherwise), features extracted once into ``out/embed-cache``;
    results in ``out/results-<solver>``. Returns the record (module docstring)."""
    data, out = Path(data), Path(out)
    loaded = [
        limit_files(t, config.max_local_files if t.spec.local else config.max_global_files)
        for t in (load_task(data / name / "manifest.csv", name) for name in tasks)
    ]
    spec = ModelSpec("checkpoint", str(checkpoint), step=checkpoint_step(checkpoint))
    ext = ExtractOptions(cache_dir=str(out / "embed-cache"))
    t0 = time.perf_counter()
    # extraction first, timed apart from the fits (the first solver's run would include it)
    for task in loaded:
        ext.embed(spec, [e.audio for e in task.examples], ext.cache_dir, task.spec.local,
                  None, progress=True)  # fmt: skip
    extract_s = time.perf_counter() - t0
    summaries, seconds = {}, {}
    for solver in SOLVERS:
        results = out / f"results-{solver}"
        say(f"probing {len(loaded)} tasks with {solver}")
        cfg = replace(config, solver=solver, local_solver=solver)
        run_probes(loaded, [[spec]], results, seeds=seeds, config=cfg, extract=ext, say=say)
        summaries[solver] = read_results(results)[1]
        seconds[solver] = _fit_seconds(results)
    by_task = {t: _task_record(summaries, seconds, t) for t in tasks}
    totals = {s: round(sum(seconds[s].values()), 1) for s in SOLVERS}
    return {
        "kind": "probe_solvers",
        "checkpoint": str(checkpoint),
        "corpus": str(data),
        "tasks": by_task,
        "seeds": list(seeds),
        "probe_config": {k: v for k, v in vars(config).items() if k != "solver"},
        "extraction_seconds": round(extract_s, 1),
        "fit_seconds": totals,
        "speedup": round(totals["adam"] / totals["lbfgs"], 2) if totals["lbfgs"] else None,
        "holds_on_every_task": all(r.get("holds", False) for r in by_task.values()),
        "cpu": cpu_info().to_dict(),
        "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def record_name(record: dict[str, Any]) -> str:
    """``probe_solvers-<cpu>-<date>.json``, as the other benchmark records are named."""
    info = record["cpu"]
    cpu = re.sub(r"[^a-z0-9]+", "-", str(info.get("model", "cpu")).lower()).strip("-") or "cpu"
    isa = "amx" if info.get("amx") else "avx512bf16" if info.get("avx512_bf16") else "avx2"
    return f"probe_solvers-{cpu}-{isa}-{record['finished'][:10]}.json"


def newest_record(folder: str | Path) -> dict[str, Any] | None:
    """The most recent ``probe_solvers-*.json`` record in ``folder`` (None when none)."""
    records = []
    for path in Path(folder).glob("probe_solvers-*.json"):
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError):
            continue
    return max(records, key=lambda r: r.get("finished", ""), default=None)


def table(record: dict[str, Any]) -> Any:
    """The record as a DataFrame: one row per task (the appendix's table)."""
    rows = []
    for task, r in record["tasks"].items():
        if r.get("missing"):
            continue
        a, e = r["adam"], r["lbfgs"]
        rows.append(
            {
                "task": task,
                "metric": r["metric"],
                "Adam valid": a["valid"],
                "exact valid": e["valid"],
                "Adam test": a["test"],
                "exact test": e["test"],
                "seed noise": r["noise_test"],
                "exact - Adam, every view (test)": r["mean_view_diff_test"],
                "Adam s": a["seconds"],
                "exact s": e["seconds"],
                "within noise or better": "yes" if r["holds"] else "no",
            }
        )
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:

    p = argparse.ArgumentParser(prog="python -m vit1d.probing.solvers", description=__doc__)
    p.add_argument("--data", required=True, help="corpus root (vit1d corpus --out)")
    p.add_argument("--checkpoint", default=None, help="default: the reference checkpoint")
    p.add_argument("--work", default="runs/probe-solvers", help="features and results")
    p.add_argument("--out", default="bench/records", help="folder of the record")
    p.add_argument(
        "--preset",
        default="default",
        choices=pipeline_names(),
        help="probe settings of this pipeline preset (presets/pipeline.yaml)",
    )
    p.add_argument("--tasks", default=",".join(GLOBAL_TASKS + LOCAL_TASKS))
    args = p.parse_args(argv)
    settings = probe_settings(args.preset)
    record = compare_solvers(
        args.data,
        args.checkpoint or reference_checkpoint(),
        args.work,
        [t for t in args.tasks.split(",") if t],
        probe_config(args.preset),
        seeds=tuple(settings.seeds),
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / record_name(record)
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(table(record).to_string(index=False, float_format="%.3f"))
    print(f"-> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
