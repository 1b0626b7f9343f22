"""Throughput benchmark: the project's training path against an fp32 eager reference.

``python -m vit1d.bench`` (or ``make bench``) measures, in one run on one machine:

* **training** views/s (forward + NT-Xent + backward + AdamW on the paper's ViT-1D) of
  - the *reference*: fp32, explicit attention, eager, no autocast;
  - the *project's default path*: the precision and attention path :mod:`vit1d.models.device`
    chooses at run time (bf16 with explicit attention on CPUs with native bf16, fp32 with
    fused attention elsewhere; ``torch.compile`` with ``--compile``);
* **inference** x real time: waveform -> :class:`vit1d.LogMel` -> ViT-1D, 4 s clips, with the
  same two settings.

and, in the whole suite (:func:`run_suite`, what ``make bench`` and the book's appendix run):

* **scaling**: training views/s of the project's path against batch size and sequence length,
  with the activation memory a step saves for its backward pass (and peak GPU memory);
* **profile**: where a training step's time goes (top operators by self time);
* **training variants** (CPU): fp32 eager and fused, autocast bf16 (compiled with
  ``--compile``) and pure bf16 with fp32 master weights, each as a ratio to fp32 eager;
* **probe fitting**: the stacked probes of :class:`vit1d.probing.linear.LinearProbes` (every layer,
  pooling and seed fitted at once) against the same probes fitted one at a time;
* **corpus rendering** x real time of a tiny corpus (when the ``corpus`` extra is installed).

It writes ``bench.json`` (figures, ratios, CPU model and its AVX2 / AVX-512 / AMX flags,
threads, torch version) and prints tables. Ratios, never absolute timings, are what targets
are checked against, since the reference runs in the same process on the same CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vit1d.audio.frontend import LogMel
from vit1d.audio.grid import FRAME_RATE
from vit1d.corpus.build import build_corpus
from vit1d.corpus.config import load_preset
from vit1d.models.device import (
    autocast,
    choose_fused_attention,
    choose_precision,
    cpu_bf16_speedup,
    hardware_summary,
    select_device,
    torch_threads,
)
from vit1d.models.model import ViT1D
from vit1d.pretrain.losses import NTXent
from vit1d.probing import metrics as M
from vit1d.probing.linear import LinearProbes, ProbeConfig

CLIP_SECONDS = 4.0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def training_step(
    model: ViT1D,
    device: torch.device,
    precision: str,
    fused: bool,
    pairs: int,
    compile_model: bool = False,
) -> Callable[[], None]:
    """A closure running one full training step on a fixed random batch of ``2 * pairs``
    views: forward, NT-Xent, backward, AdamW."""
    model = model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_fn = NTXent(0.1)

    def forward(x: torch.Tensor) -> torch.Tensor:
        return model.project(model(x, fused=fused).cls)

    fn = torch.compile(forward) if compile_model else forward
    x = torch.randn(2 * pairs, model.max_frames, model.n_mels, device=device) * 20 - 40

    def step() -> None:
        with autocast(device, precision):
            z = fn(x)
        loss_fn(z[:pairs], z[pairs:]).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        _sync(device)

    return step


def pure_bf16_training_step(model: ViT1D, pairs: int, fused: bool) -> Callable[[], None]:
    """A training step with bf16 weights and activations throughout and fp32 master copies
    that AdamW updates (the weights are cast once per step, after the update, instead of by
    autocast at every matmul of forward and backward). CPU only; the loss is taken in fp32."""
    model = model.train()
    masters = [p.detach().float().clone().requires_grad_(True) for p in model.parameters()]
    model = model.to(torch.bfloat16)
    params = list(model.parameters())
    opt = torch.optim.AdamW(masters, lr=1e-4)
    loss_fn = NTXent(0.1)
    x = (torch.randn(2 * pairs, model.max_frames, model.n_mels) * 20 - 40).to(torch.bfloat16)

    def step() -> None:
        z = model.project(model(x, fused=fused).cls).float()
        loss_fn(z[:pairs], z[pairs:]).backward()
        for m, p in zip(masters, params, strict=True):
            m.grad = p.grad.float()
            p.grad = None
        opt.step()
        opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            for m, p in zip(masters, params, strict=True):
                p.copy_(m)

    step.masters = masters  # type: ignore[attr-defined]  # for inspection by tests
    return step


def training_variants(
    pairs: int = 32,
    steps: int = 5,
    warmup: int = 2,
    compile_model: bool = True,
    model_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Training views/s on the CPU of each way to run a step, as ratios to the fp32 eager
    reference timed in alternation with them: fp32 with fused attention, autocast bf16 with
    explicit attention (the run-time default on CPUs with native bf16), the same compiled by
    inductor, and pure bf16 with fp32 master weights (:func:`pure_bf16_training_step`)."""
    device = torch.device("cpu")

    def fresh() -> ViT1D:
        torch.manual_seed(0)
        return ViT1D(**(model_kwargs or {}))

    steps_by_name: dict[str, Callable[[], None]] = {
        "fp32 eager": training_step(fresh(), device, "fp32", False, pairs),
        "fp32 fused attention": training_step(fresh(), device, "fp32", True, pairs),
        "autocast bf16": training_step(fresh(), device, "bf16", False, pairs),
        "pure bf16, fp32 masters": pure_bf16_training_step(fresh(), pairs, False),
    }
    notes = []
    if compile_model:
        try:
            compiled = training_step(fresh(), device, "bf16", False, pairs, compile_model=True)
            compiled()  # compiles here: a failure is reported, not raised
            steps_by_name["autocast bf16, compiled"] = compiled
        except Exception as exc:  # inductor needs a C++ compiler; report and go on
            notes.append(f"compile failed: {type(exc).__name__}: {str(exc)[:200]}")
    seconds = interleaved_medians(steps_by_name, steps, warmup)
    views = {k: 2 * pairs / v for k, v in seconds.items()}
    ref = views["fp32 eager"]
    return {
        "pairs": pairs,
        "views_per_s": {k: round(v, 2) for k, v in views.items()},
        "ratio_to_fp32_eager": {k: round(v / ref, 3) for k, v in views.items()},
        "hardware": hardware_summary(device),
        "notes": notes,
    }


def inference_step(
    model: ViT1D,
    device: torch.device,
    precision: str,
    fused: bool,
    clips: int,
) -> Callable[[], None]:
    """A closure embedding ``clips`` random 4 s waveforms: LogMel, then all tokens."""
    model = model.to(device).eval()
    logmel = LogMel().to(device)
    samples = int(CLIP_SECONDS * 16000) - 1  # 1 + 63999 // 512 = 125 frames fits 126
    wave = torch.randn(clips, samples, device=device) * 0.1

    def step() -> None:
        with torch.inference_mode():
            mel = logmel(wave)
            with autocast(device, precision):
                model(mel, fused=fused)
        _sync(device)

    return step


def interleaved_medians(
    steps: dict[str, Callable[[], None]], reps: int, warmup: int
) -> dict[str, float]:
    """Median seconds per call of each closure, timed in alternation (A, B, A, B, ...), so
    that a background load or frequency change slows every setting alike and their ratio
    stays fair."""
    for fn in steps.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(reps):
        for name, fn in steps.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(v) for name, v in times.items()}


def run(
    out: Path,
    pairs: int = 32,
    steps: int = 5,
    warmup: int = 2,
    clips: int = 64,
    reps: int = 5,
    compile_model: bool = False,
    device_name: str = "auto",
    model_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Measure both paths, write ``out/bench.json`` and return its content."""
    device = select_device(device_name)
    precision = choose_precision(device, "auto")
    fused = choose_fused_attention(device, precision)
    kwargs = model_kwargs or {}

    def fresh() -> ViT1D:
        torch.manual_seed(0)
        return ViT1D(**kwargs)

    train = interleaved_medians(
        {
            "reference": training_step(fresh(), device, "fp32", False, pairs),
            "project": training_step(fresh(), device, precision, fused, pairs, compile_model),
        },
        steps,
        warmup,
    )
    infer = interleaved_medians(
        {
            "reference": inference_step(fresh(), device, "fp32", False, clips),
            "project": inference_step(fresh(), device, precision, fused, clips),
        },
        reps,
        1,
    )
    views = {k: 2 * pairs / v for k, v in train.items()}
    realtime = {k: clips * CLIP_SECONDS / v for k, v in infer.items()}
    hw = hardware_summary(device)
    result = {
        "hardware": hw,
        "native_bf16": bool(hw["cpu"]["amx"] or hw["cpu"]["avx512_bf16"])
        if device.type == "cpu"
        else device.type == "cuda",
        "cpu_bf16_block_speedup": round(cpu_bf16_speedup(), 3) if device.type == "cpu" else None,
        "project_path": {
            "precision": precision,
            "attention": "fused" if fused else "explicit",
            "compile": compile_model,
        },
        "reference_path": {"precision": "fp32", "attention": "explicit", "compile": False},
        "model": fresh().config,
        "pairs_per_step": pairs,
        "timed_steps": steps,
        "train_views_per_s": {k: round(v, 2) for k, v in views.items()},
        "train_speedup": round(views["project"] / views["reference"], 3),
        "inference_x_realtime": {k: round(v, 1) for k, v in realtime.items()},
        "inference_speedup": round(realtime["project"] / realtime["reference"], 3),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(result, indent=2))
    return result


def saved_activation_bytes(
    model: ViT1D, x: torch.Tensor, device: torch.device, precision: str, fused: bool
) -> int:
    """Bytes of the tensors a training forward pass saves for its backward pass (activation
    memory; parameters excluded), counted once per storage through autograd's pack hook."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: set[int] = set()
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params and ptr not in seen:
            seen.add(ptr)
            total += t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        with autocast(device, precision):
            z = model.project(model(x, fused=fused).cls)
    del z
    return total


def scaling(
    device: torch.device,
    precision: str,
    fused: bool,
    pairs: list[int],
    frames: list[int],
    base_pairs: int,
    steps: int = 3,
    warmup: int = 1,
    model_kwargs: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Training views/s and activation memory of the project's path, first against the batch
    (``pairs`` at the model's 126 frames), then against the sequence length (``frames`` at
    ``base_pairs`` pairs)."""
    kwargs = model_kwargs or {}
    points = [("batch", p, None) for p in pairs] + [("frames", base_pairs, f) for f in frames]
    rows = []
    for axis, p, f in points:
        torch.manual_seed(0)
        model = ViT1D(**kwargs, **({"max_frames": f} if f else {})).to(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        step = training_step(model, device, precision, fused, p)
        seconds = interleaved_medians({"step": step}, steps, warmup)["step"]
        x = torch.randn(2 * p, model.max_frames, model.n_mels, device=device) * 20 - 40
        row = {
            "axis": axis,
            "pairs": p,
            "frames": model.max_frames,
            "views_per_s": round(2 * p / seconds, 2),
            "activation_mib": round(
                saved_activation_bytes(model, x, device, precision, fused) / 2**20, 1
            ),
        }
        if device.type == "cuda":
            row["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
        rows.append(row)
    return rows


@contextlib.contextmanager
def _c_stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null for a while: the profiler's C++ side prints
    start/stop lines there that no Python setting turns off (they would land in the book)."""
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def profile_step(step: Callable[[], None], device: torch.device, top: int = 10) -> dict:
    """Self time of the operators of one call of ``step`` (after one warm-up call): the
    ``top`` most expensive, with their share of the total."""
    from torch.profiler import ProfilerActivity, profile

    step()
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with _c_stderr_silenced(), profile(activities=activities) as prof:
        step()
    events = prof.key_averages()

    def self_us(e: Any) -> float:
        if device.type == "cuda":
            return float(getattr(e, "self_device_time_total", 0.0))
        return float(e.self_cpu_time_total)

    total = sum(self_us(e) for e in events) or 1.0
    ranked = sorted(events, key=self_us, reverse=True)[:top]
    return {
        "clock": "GPU kernel time" if device.type == "cuda" else "CPU self time",
        "total_ms": round(total / 1000, 2),
        "top": [
            {
                "op": e.key,
                "calls": int(e.count),
                "self_ms": round(self_us(e) / 1000, 3),
                "share": round(self_us(e) / total, 4),
            }
            for e in ranked
        ],
    }


def probe_fitting(
    views: int = 13, seeds: int = 3, n: int = 4000, dim: int = 192, classes: int = 24,
    epochs: int = 2, steps_per_epoch: int = 32,
) -> dict[str, Any]:  # fmt: skip
    """Seconds to fit ``views * seeds`` softmax probes on random features, stacked in one
    :class:`vit1d.probing.linear.LinearProbes` against a plain one-probe-at-a-time loop doing the same
    number of Adam steps on the same batch size (the reference)."""

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(views, n, dim, generator=gen)
    y = torch.randint(0, classes, (n,), generator=gen)
    cfg = ProbeConfig(
        max_epochs=epochs, steps_per_epoch=steps_per_epoch, patience=epochs + 1, threads=1
    )
    groups = [(v, s) for v in range(views) for s in range(seeds)]
    probes = LinearProbes([v for v, _ in groups], [s for _, s in groups], dim, classes, "softmax")
    t0 = time.perf_counter()
    probes.fit(x, y, x[:, :512], y[:512], cfg)
    stacked = time.perf_counter() - t0

    t0 = time.perf_counter()
    with torch_threads(1):
        for v, s in groups:
            torch.manual_seed(s)
            layer = torch.nn.Linear(dim, classes)
            opt = torch.optim.Adam(layer.parameters(), lr=cfg.lr)
            order = torch.randperm(n, generator=torch.Generator().manual_seed(s))
            for _ in range(epochs):
                for k in range(steps_per_epoch):
                    idx = order[(k * cfg.batch_size) % n :][: cfg.batch_size]
                    loss = torch.nn.functional.cross_entropy(layer(x[v, idx]), y[idx])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                with torch.no_grad():  # the validation pass early stopping needs
                    torch.nn.functional.cross_entropy(layer(x[v, :512]), y[:512])
    one_by_one = time.perf_counter() - t0
    return {
        "probes": len(groups),
        "examples": n,
        "dim": dim,
        "classes": classes,
        "adam_steps_per_probe": epochs * steps_per_epoch,
        "seconds": {"reference": round(one_by_one, 6), "project": round(stacked, 6)},
        "speedup": round(one_by_one / stacked, 3),
    }


def chord_scoring(tracks: int = 40, probes: int = 39, seconds: float = 15.0) -> dict[str, Any]:
    """Seconds to score ``probes`` chord estimates on each of ``tracks`` synthetic tracks (the
    local chapter scores 13 layers x 3 seeds per test track): ``mir_eval``'s own path per
    estimate (:func:`vit1d.probing.metrics.chord_scores` on labelled intervals, the reference) against
    :class:`vit1d.probing.metrics.ChordReference` (the reference labels compared once per track). The
    largest difference between their scores is reported beside the speed-up."""

    rng = np.random.default_rng(0)
    n_frames = int(seconds * FRAME_RATE) + 1
    duration = (n_frames - 1) / FRAME_RATE + 0.5 / FRAME_RATE
    vocab = [*M.CHORD_CLASSES, "C:7", "A:min7", "F:sus4", "X"]
    cases = []
    for _ in range(tracks):
        cuts = np.sort(rng.uniform(0, duration, size=int(rng.integers(4, 16))))
        bounds = np.concatenate([[0.0], cuts, [duration]])
        ref = (
            np.stack([bounds[:-1], bounds[1:]], 1),
            [str(c) for c in rng.choice(vocab, len(cuts) + 1)],
        )
        runs = np.repeat(rng.integers(0, 25, size=n_frames), rng.integers(4, 40, size=n_frames))
        cases.append((ref, [runs[k : k + n_frames] for k in range(probes)]))
    t0 = time.perf_counter()
    slow = [
        M.chord_scores(
            *ref, *M.frames_to_intervals([M.CHORD_CLASSES[c] for c in est], FRAME_RATE, duration)
        )
        for ref, ests in cases
        for est in ests
    ]
    reference = time.perf_counter() - t0
    t0 = time.perf_counter()
    fast = []
    for ref, ests in cases:
        scorer = M.ChordReference(*ref)
        fast += [scorer.scores(est, FRAME_RATE, duration) for est in ests]
    project = time.perf_counter() - t0
    diff = max(
        abs(a[k][i] - b[k][i]) for a, b in zip(slow, fast, strict=True) for k in a for i in (0, 1)
    )
    return {
        "tracks": tracks,
        "probes_per_track": probes,
        "seconds": {"reference": round(reference, 6), "project": round(project, 6)},
        "speedup": round(reference / project, 3),
        "max_abs_difference": float(diff),
    }


#: The corpus the rendering benchmark builds: two works of two collections, short clips.
BENCH_CORPUS = {
    "seed": 0,
    "workers": 1,
    "splits": {"valid": 0.25, "test": 0.25},
    "collections": {"bach": {"works": 2}, "essenFolksong": {"works": 2}},
    "pretrain": {"clip_s": 6.0},
    "music": {"clip_s": 6.0, "renders_per_polyphonic_work": 1},
    "notes": {"dynamics": ["mf"], "pitch_step": 24, "clip_s": 1.0, "hold_s": [0.4, 0.6]},
}


def corpus_rendering(workdir: Path, workers: int = 1) -> dict[str, Any]:
    """Build :data:`BENCH_CORPUS` from scratch and report its rendering speed x real time
    (the reference is real time: 1x renders as fast as the music plays)."""
    try:
        import yaml

    except ImportError as exc:
        return {"skipped": f"the corpus extra is not installed ({exc.name})"}
    preset = workdir / "bench-corpus.yaml"
    preset.write_text(yaml.safe_dump(dict(BENCH_CORPUS, workers=workers)))
    t0 = time.perf_counter()
    prov = build_corpus(load_preset(preset), workdir / "corpus", log=lambda m: None)
    run = prov["this_run"]
    return {
        "workers": run["workers"],
        "rendered_audio_s": round(run["rendered_audio_h"] * 3600, 1),
        "render_x_realtime": run["render_x_realtime"],
        "end_to_end_x_realtime": run["end_to_end_x_realtime"],
        "wall_s": round(time.perf_counter() - t0, 2),
    }


def run_suite(
    out: Path,
    quick: bool = False,
    compile_model: bool = False,
    device_name: str = "auto",
    model_kwargs: dict[str, Any] | None = None,
    corpus: bool = True,
    progress: bool = True,
    variants: bool = False,
) -> dict[str, Any]:
    """The whole benchmark (:func:`run` plus scaling, profile, probe fitting and corpus
    rendering), written to ``out/bench.json``. ``quick``: small sizes (the smoke book).
    ``variants``: also :func:`training_variants` on a CPU (``make bench``; about a minute, so
    the book's appendix leaves it out)."""
    from tqdm.auto import tqdm

    bar = tqdm(total=5, desc="bench", unit="part", disable=not progress)
    result = run(
        out,
        pairs=4 if quick else 32,
        steps=2 if quick else 5,
        warmup=1 if quick else 2,
        clips=8 if quick else 64,
        reps=2 if quick else 5,
        compile_model=compile_model,
        device_name=device_name,
        model_kwargs=model_kwargs,
    )
    bar.update(1)
    device = select_device(device_name)
    precision = result["project_path"]["precision"]
    fused = result["project_path"]["attention"] == "fused"
    result["scaling"] = scaling(
        device,
        precision,
        fused,
        pairs=[2, 4, 8] if quick else [8, 16, 32, 64],
        frames=[32, 126] if quick else [32, 63, 126, 252],
        base_pairs=4 if quick else 16,
        steps=2 if quick else 3,
        model_kwargs=model_kwargs,
    )
    bar.update(1)
    torch.manual_seed(0)
    result["profile"] = profile_step(
        training_step(ViT1D(**(model_kwargs or {})), device, precision, fused, 4 if quick else 16),
        device,
    )
    bar.update(1)
    if variants and device.type == "cpu":
        result["training_variants"] = (
            training_variants(2, 1, 1, compile_model=False, model_kwargs=model_kwargs)
            if quick
            else training_variants(compile_model=compile_model, model_kwargs=model_kwargs)
        )
    result["probe_fitting"] = (
        probe_fitting(views=4, seeds=2, n=1000, epochs=1, steps_per_epoch=8)
        if quick
        else probe_fitting()
    )
    result["chord_scoring"] = chord_scoring(tracks=4, probes=6) if quick else chord_scoring()
    bar.update(1)
    if corpus:
        with tempfile.TemporaryDirectory() as tmp:
            result["corpus_rendering"] = corpus_rendering(Path(tmp))
    bar.update(1)
    bar.close()
    result["suite"] = "quick" if quick else "full"
    (out / "bench.json").write_text(json.dumps(result, indent=2))
    return result


def table(result: dict[str, Any]) -> str:
    cpu = result["hardware"]["cpu"]
    flags = ", ".join(k for k in ("avx2", "avx512", "avx512_bf16", "amx") if cpu[k]) or "none"
    t, i = result["train_views_per_s"], result["inference_x_realtime"]
    p = result["project_path"]
    load = f" | load average {result['load_average'][0]:.1f}" if result["load_average"] else ""
    lines = [
        f"device {result['hardware']['device']} | CPU {cpu['model']} ({flags}) | "
        f"{result['hardware']['threads']} threads | torch {result['hardware']['torch']}{load}",
        f"project path: {p['precision']}, {p['attention']} attention, compile={p['compile']}",
        "",
        "| measure | fp32 eager reference | project path | ratio |",
        "|---|---|---|---|",
        f"| training views/s | {t['reference']:.1f} | {t['project']:.1f} | "
        f"{result['train_speedup']:.2f}x |",
        f"| inference x real time | {i['reference']:.0f} | {i['project']:.0f} | "
        f"{result['inference_speedup']:.2f}x |",
    ]
    if "probe_fitting" in result:
        pf = result["probe_fitting"]
        lines.append(
            f"| probe fitting s ({pf['probes']} probes, one at a time vs stacked) | "
            f"{pf['seconds']['reference']:.2f} | {pf['seconds']['project']:.2f} | "
            f"{pf['speedup']:.2f}x |"
        )
    if "chord_scoring" in result:
        cs = result["chord_scoring"]
        lines.append(
            f"| chord scoring s ({cs['tracks']} tracks x {cs['probes_per_track']} probes, "
            f"mir_eval per estimate vs comparisons once per track) | "
            f"{cs['seconds']['reference']:.2f} | {cs['seconds']['project']:.2f} | "
            f"{cs['speedup']:.2f}x |"
        )
    render = result.get("corpus_rendering")
    if render and "skipped" not in render:
        lines.append(
            f"| corpus rendering x real time ({render['workers']} worker) | 1 | "
            f"{render['render_x_realtime']:.1f} | {render['render_x_realtime']:.1f}x |"
        )
    if result.get("training_variants"):
        tv = result["training_variants"]
        lines += [
            "",
            "| training step on the CPU | views/s | ratio to fp32 eager |",
            "|---|---|---|",
        ]
        lines += [
            f"| {name} | {v:.1f} | {tv['ratio_to_fp32_eager'][name]:.2f}x |"
            for name, v in tv["views_per_s"].items()
        ]
    if result.get("scaling"):
        lines += ["", "| pairs | frames | views/s | activation MiB |", "|---|---|---|---|"]
        lines += [
            f"| {r['pairs']} | {r['frames']} | {r['views_per_s']:.1f} | {r['activation_mib']} |"
            for r in result["scaling"]
        ]
    if result.get("profile"):
        prof = result["profile"]
        lines += ["", f"where a training step's time goes ({prof['clock']}):"]
        lines += [f"  {e['share']:6.1%}  {e['op']}" for e in prof["top"][:6]]
    return "\n".join(lines)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "bench",
        help="throughput benchmark (training and inference)",
        description=__doc__.split("\n\n")[0],
    )
    _add_args(p)
    p.set_defaults(func=_cli)


def _add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="bench", help="folder for bench.json (default: bench/)")
    p.add_argument("--pairs", type=int, default=32, help="positive pairs per training step")
    p.add_argument("--steps", type=int, default=5, help="timed training steps per setting")
    p.add_argument("--compile", action="store_true", help="torch.compile the project path")
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--core",
        action="store_true",
        help="only the training and inference ratios (no scaling, profile, probes, corpus)",
    )
    p.add_argument("--quick", action="store_true", help="the whole suite at small sizes")


def _cli(args: argparse.Namespace) -> int:
    if args.core:
        result = run(
            Path(args.out),
            pairs=args.pairs,
            steps=args.steps,
            compile_model=args.compile,
            device_name=args.device,
        )
    else:
        result = run_suite(
            Path(args.out),
            quick=args.quick,
            compile_model=args.compile,
            device_name=args.device,
            variants=True,
        )
    print(table(result))
    print(f"\nwritten: {Path(args.out) / 'bench.json'}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m vit1d.bench", description=__doc__)
    _add_args(parser)
    raise SystemExit(_cli(parser.parse_args()))
