"""Benchmarks of the work around training: stacked against one-at-a-time probe fitting,
chord scoring of many probes per track, and corpus rendering speed."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from vit1d.audio.grid import FRAME_RATE
from vit1d.corpus.build import build_corpus
from vit1d.corpus.config import load_preset
from vit1d.models.device import (
    torch_threads,
)
from vit1d.probing import metrics as M
from vit1d.probing.linear import LinearProbes, ProbeConfig


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
    # Adam on both sides: this measures stacking; the exact solver against Adam is
    # vit1d.probing.solvers' record
    cfg = ProbeConfig(
        max_epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        patience=epochs + 1,
        threads=1,
        solver="adam",
    )
    groups = [(v, s) for v in range(views) for s in range(seeds)]
    # a small fit first, so that neither side pays the first call's set-up in its time
    LinearProbes([0], [0], dim, classes, "softmax").fit(
        x[:1, :256], y[:256], x[:1, :64], y[:64], cfg
    )
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
