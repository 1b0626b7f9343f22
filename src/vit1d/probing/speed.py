"""Extraction speed and what bf16 changes in the probes (``vit1d embed --benchmark``).

:func:`time_extraction` times one model's extraction of some files into a fresh cache (x real
time); :func:`benchmark` does it in float32 and bfloat16 and probes a task on both feature
sets, reporting the largest difference of a test metric: the check behind the run-time
precision choice (docs/design.md, "Model and training facts").
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vit1d.audio.grid import FRAME_RATE
from vit1d.features.embed import embed
from vit1d.features.sources import ModelSpec, load_model
from vit1d.features.windows import BATCH_SIZE
from vit1d.models.checkpoint import atomic_write_text
from vit1d.models.device import cpu_info, hardware_summary, select_device
from vit1d.probing.linear import ProbeConfig
from vit1d.probing.probe import probe_task
from vit1d.probing.tasks import load_task


def time_extraction(
    spec: ModelSpec,
    paths: Sequence[Path],
    precision: str,
    batch_size: int = BATCH_SIZE,
    device: str = "auto",
    frames: bool = False,
    model: Any = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Extract ``paths`` into a fresh temporary cache and report seconds of audio per second
    of wall time (decoding, log-mel, windows, model and cache writes; the model is loaded
    before the clock starts when given)."""
    with tempfile.TemporaryDirectory(prefix="vit1d-bench-") as tmp:
        t0 = time.perf_counter()
        emb = embed(
            spec,
            paths,
            cache_dir=tmp,
            frames=frames,
            batch_size=batch_size,
            device=device,
            precision=precision,
            progress=False,
            model=model,
            threads=threads,
        )
        wall = time.perf_counter() - t0
        audio = float(sum(n for n in emb.n_frames)) / FRAME_RATE
    return {
        "precision": emb.provenance["precision"],
        "threads": emb.provenance["threads"],
        "audio_seconds": round(audio, 2),
        "wall_seconds": round(wall, 3),
        "x_realtime": round(audio / wall, 1),
    }


def benchmark(
    checkpoint: str | Path,
    data: str | Path,
    tasks: Sequence[str] = ("key", "instrument"),
    seeds: Sequence[int] = (0, 1, 2),
    max_files: int = 200,
    device: str = "auto",
    out: str | Path | None = None,
    speed_task: str = "tagging",
    threads: int | None = None,
    config: Any = None,
) -> dict[str, Any]:
    """Extraction speed in fp32 and bf16 (x real time, on up to ``max_files`` files of
    ``speed_task``, else of the first task), then the same probes on both feature sets: the largest difference of a
    metric's seed mean between precisions, beside the seed-to-seed standard deviation (bf16
    "does not change results beyond noise" when the first is within the second)."""
    data = Path(data)
    spec = ModelSpec("checkpoint", str(checkpoint))
    timed = speed_task if (data / speed_task / "manifest.csv").is_file() else tasks[0]
    first = load_task(data / timed / "manifest.csv", timed)
    files = list(dict.fromkeys(ex.audio for ex in first.examples))[:max_files]
    model = load_model(spec)
    dev = select_device(device)
    report: dict[str, Any] = {
        "hardware": hardware_summary(dev),
        "threads": torch.get_num_threads(),
        "files": len(files),
        "speed_task": timed,
        "speed": {},
        "probes": {},
    }
    if dev.type == "cpu":
        report["cpu_native_bf16"] = cpu_info().amx or cpu_info().avx512_bf16
    for precision in ("fp32", "bf16"):
        kw = {"device": device, "model": model, "threads": threads}
        time_extraction(spec, files[:4], precision, **kw)  # warm-up
        report["speed"][precision] = time_extraction(spec, files, precision, **kw)
    results = _probe_precisions(spec, data, tasks, seeds, device, config)
    _compare_precisions(results, report)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(out), json.dumps(report, indent=2))
    return report


def _probe_precisions(
    spec: ModelSpec,
    data: Path,
    tasks: Sequence[str],
    seeds: Sequence[int],
    device: str,
    config: Any,
) -> dict[str, dict[tuple, list[float]]]:
    """Probe ``tasks`` on features extracted in fp32 and in bf16: per precision, the values
    of every ``(task, layer, pooling, metric)`` over seeds and splits."""
    results: dict[str, dict[tuple, list[float]]] = {"fp32": {}, "bf16": {}}
    with tempfile.TemporaryDirectory(prefix="vit1d-bench-probe-") as tmp:
        for task_name in tasks:
            task = load_task(data / task_name / "manifest.csv", task_name)
            for precision in ("fp32", "bf16"):
                emb = embed(
                    spec,
                    [ex.audio for ex in task.examples],
                    cache_dir=tmp,
                    device=device,
                    precision=precision,
                    progress=False,
                    frames=task.spec.local,
                )
                out_rows = probe_task(task, [emb], seeds=seeds, config=config or ProbeConfig())
                for r in out_rows["rows"]:
                    key = (task_name, r["layer"], r["pooling"], r["metric"])
                    results[precision].setdefault(key, []).append(r["value"])
    return results


def _compare_precisions(results: dict[str, dict[tuple, list[float]]], report: dict) -> None:
    """Add to ``report`` each probe's fp32 and bf16 means and their difference, and the
    largest and median differences beside the median seed-to-seed standard deviation."""
    diffs, stds = [], []
    for key, fp32 in results["fp32"].items():
        bf16 = results["bf16"].get(key)
        if not bf16:
            continue
        diff = abs(float(np.mean(bf16)) - float(np.mean(fp32)))
        std = float(np.std(fp32, ddof=1)) if len(fp32) > 1 else 0.0
        diffs.append(diff)
        stds.append(std)
        report["probes"]["|".join(map(str, key))] = {
            "fp32_mean": float(np.mean(fp32)),
            "bf16_mean": float(np.mean(bf16)),
            "abs_diff": diff,
            "seed_std_fp32": std,
        }
    if diffs:
        report["max_abs_diff"] = float(np.max(diffs))
        report["median_abs_diff"] = float(np.median(diffs))
        report["median_seed_std"] = float(np.median(stds))
        report["within_noise"] = bool(np.median(diffs) <= np.median(stds) + 1e-12)
