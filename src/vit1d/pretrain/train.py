"""Contrastive pretraining of ViT-1D (SimCLR-style NT-Xent on the class token).

:func:`pretrain` is the whole loop; ``vit1d pretrain`` and ``notebooks/03_pretrain.ipynb``
both call it. One step: draw ``batch_size`` tracks (from as few groups of ``data.group_by``
as possible when it is set: hard negatives), two crops of 4 s each at most
``data.max_distance_s`` apart (a positive pair; with ``data.twin_prob`` the second crop may
come from a twin render of the track, :mod:`vit1d.corpus.twins`), each view augmented on
its own (``augment``, :mod:`vit1d.pretrain.augment`), embed both views, project the class token,
NT-Xent against the other tracks of the batch, AdamW. With ``loss.objective: masked`` (the
foil, :mod:`vit1d.pretrain.masked`) the same views, steps and sequence length train the same backbone
to predict the quantised codes of masked frames instead: equal compute by construction.

Schedules (per step ``s`` of ``S``): learning rate rises linearly over ``warmup_steps``,
then follows a cosine from ``lr`` to ``min_lr``; weight decay follows a cosine from
``weight_decay`` to ``weight_decay_end`` (the authors' recipe; docs/design.md,
"Model and training facts").

Resumability: every ``checkpoint_every`` steps a folder ``checkpoints/step-NNNNNNNN`` appears
atomically with the weights, the optimiser and gradient-scaler state and the RNG state; a
``latest`` pointer is replaced after it. Batches are a pure function of (seed, step) and the
schedules of the step, so a run killed at any moment and resumed ends with the same weights
as an uninterrupted run (same hardware, precision and thread count).

Snapshots for emergence curves: at each fraction of ``train.snapshot_fractions`` of the run
a model-only folder ``snapshots/step-NNNNNNNN`` (loadable with :func:`vit1d.load_pretrained`)
is kept for good; :func:`snapshot_folders` lists them.

Outputs in ``out_dir``: ``model.safetensors`` + ``config.json`` (load with
:func:`vit1d.load_pretrained`), ``log.csv`` (step, loss, lr, weight_decay, grad_norm,
views_per_s, elapsed_s) and ``run.json`` (configuration, data, hardware, precision, timings).
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn
from tqdm.auto import tqdm

from vit1d import __version__
from vit1d.audio.frontend import FRAME_RATE
from vit1d.core.errors import UserError
from vit1d.models.checkpoint import atomic_write_text, save_checkpoint_folder, save_pretrained
from vit1d.models.device import (
    choose_fused_attention,
    choose_precision,
    cpu_bf16_speedup,
    hardware_summary,
    select_device,
)
from vit1d.models.model import ViT1D, flops_per_view
from vit1d.pretrain.augment import augment_views, is_active
from vit1d.pretrain.config import Config, load_config, model_config, views_per_step
from vit1d.pretrain.data import (
    PairSampler,
    build_mel_cache,
    read_manifest,
    read_manifest_column,
    read_twins,
    twin_pool,
)
from vit1d.pretrain.objectives import Objective, make_objective
from vit1d.pretrain.run_files import (
    LOG_COLUMNS,
    check_same_config,
    existing_run,
    open_log,
    read_log,
    report_skipped,
    write_checkpoint,
)
from vit1d.pretrain.schedules import lr_at, param_groups, weight_decay_at


def dist_info() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _maybe_init_distributed(device: torch.device) -> None:
    """Join the process group torchrun describes in the environment (WORLD_SIZE > 1)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend)


@dataclass
class _Data:
    """What the steps draw from: the log-mel cache, the twin renders, the pair sampler."""

    cache: Any
    twins: Any
    sampler: PairSampler
    frames: int


def _load_data(
    cfg: Config, data: str | Path, files: list[Path], out_dir: Path, show: bool
) -> _Data:
    """Decode the training audio into the log-mel cache (rank 0 first; the others then open
    the finished cache), the twin renders when ``data.twin_prob`` asks for them, and the
    pair sampler over what the cache kept."""
    rank, world = dist_info()
    manifest_dir = Path(data) if Path(data).is_dir() else Path(data).parent
    cache_dir = Path(cfg.data.cache_dir) if cfg.data.cache_dir else manifest_dir / ".vit1d_cache"
    decode = {"skip_unreadable": cfg.data.skip_unreadable, "workers": cfg.data.decode_workers}

    def on_rank_0_first(build: Any) -> Any:
        out = build(show) if rank == 0 else None
        if world > 1:
            torch.distributed.barrier()
        return out if rank == 0 else build(False)

    cache = on_rank_0_first(lambda bar: build_mel_cache(files, cache_dir, progress=bar, **decode))
    if cache.skipped and rank == 0:
        report_skipped(cache.skipped, len(files), out_dir)
    groups = (
        read_manifest_column(data, cfg.data.group_by, cfg.data.split) if cfg.data.group_by else None
    )
    if groups is not None:  # the labels of the files the cache holds, in its order
        groups = [groups[i] for i in cache.kept]
    twins = None
    if cfg.data.twin_prob > 0:
        per_track = read_twins(data, cfg.data.twin, cfg.data.split)
        per_track = [per_track[i] for i in cache.kept]
        twins = on_rank_0_first(lambda bar: twin_pool(per_track, cache_dir, progress=bar, **decode))
    frames = cfg.model.max_frames
    sampler = PairSampler(
        cache.lengths,
        cfg.train.batch_size,
        frames,
        round(cfg.data.max_distance_s * FRAME_RATE),
        cfg.seed,
        groups=groups,
        twin_counts=None if twins is None else twins.counts,
        twin_prob=cfg.data.twin_prob,
        twin_max_distance=round(cfg.data.twin_max_distance_s * FRAME_RATE),
        third_view=cfg.loss.twin_head,
    )
    return _Data(cache, twins, sampler, frames)


def _batch_maker(
    data: _Data, cfg: Config, device: torch.device
) -> Callable[[int], tuple[int, torch.Tensor]]:
    """``step -> (n, views)``: this rank's share of the step's pairs, both views stacked
    (``2n`` crops; ``3n`` with the twins as a third view), augmented; a pure function of the
    step, so building it ahead in a thread or after a resume changes no result."""
    rank, world = dist_info()
    cache, twins, frames = data.cache, data.twins, data.frames

    def make_batch(step: int) -> tuple[int, torch.Tensor]:
        b = data.sampler.batch(step)
        mine = slice(rank, None, world)
        tracks, starts_a = b.tracks[mine], b.starts_a[mine]

        def crops(starts: np.ndarray, source: np.ndarray) -> np.ndarray:
            out = cache.crops(tracks, starts, frames)
            rows = np.flatnonzero(source)
            if len(rows):  # views from twin renders: same score time, other players
                at = twins.positions(tracks[rows], source[rows])
                out[rows] = twins.cache.crops(at, starts[rows], frames)
            return out

        blocks = [cache.crops(tracks, starts_a, frames), crops(b.starts_b[mine], b.source[mine])]
        if b.starts_c is not None:
            blocks.append(crops(b.starts_c[mine], b.source_c[mine]))
        views = np.concatenate(blocks)
        if is_active(cfg.augment):  # per-rank draws: each rank's views differ
            augment_views(views, cfg.augment, cfg.seed * 1000 + rank, step)
        x = torch.from_numpy(views)
        # pinned host memory lets the copy to the GPU overlap the previous step's kernels
        return len(tracks), x.pin_memory() if device.type == "cuda" else x

    return make_batch


def _restore(
    checkpoint: Path,
    cfg: Config,
    out_dir: Path,
    model: ViT1D,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    device: torch.device,
) -> tuple[int, float]:
    """Load weights, optimiser, scaler and RNG state of ``checkpoint``; ``(step, seconds)``."""
    saved = json.loads((checkpoint / "config.json").read_text())
    check_same_config(saved["training"], cfg, out_dir)
    model.load_state_dict(load_file(str(checkpoint / "model.safetensors"), device=str(device)))
    state = torch.load(checkpoint / "state.pt", map_location=device, weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["torch_rng"].cpu())
    return int(state["step"]), float(state["elapsed_s"])


def _step(
    step_fn: nn.Module,
    objective: Objective,
    model: ViT1D,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    views: torch.Tensor,
    n: int,
    step: int,
    cfg: Config,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimisation step at the schedules' values for ``step``; ``(loss, grad_norm)``."""
    lr, wd = lr_at(step, cfg), weight_decay_at(step, cfg)
    for group in optimizer.param_groups:
        group["lr"] = lr
        if group["apply_wd"]:
            group["weight_decay"] = wd
    # NaN is checked once the step is done (_train): a check here would hold the host until
    # the forward pass ends, and a GPU idle while the backward pass's kernels are launched
    loss = objective.loss(step_fn, views, n, step)
    scaler.scale(loss * objective.backward_scale()).backward()
    scaler.unscale_(optimizer)
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return loss, grad_norm


def _run_record(
    run: _Session, data: str | Path, log: list[dict[str, str]], started: str
) -> dict[str, Any]:
    """``run.json``: configuration, data, hardware, precision, speed and losses of the run."""
    cfg, device, loaded = run.cfg, run.device, run.loaded
    tc, cache, twins = cfg.train, loaded.cache, loaded.twins
    speeds = [float(r["views_per_s"]) for r in log[1:]] or [0.0]
    record = {
        "vit1d_version": __version__,
        "config": cfg.to_dict(),
        "data": {
            "source": str(data),
            "tracks": len(cache),
            "hours": round(cache.hours, 3),
            "skipped_unreadable": len(cache.skipped or []),
            "tracks_with_twins": 0 if twins is None else int((twins.counts > 0).sum()),
            "twin_renders": 0 if twins is None else int(twins.counts.sum()),
        },
        "hardware": hardware_summary(device),
        "precision": run.precision,
        "attention": "fused" if run.fused else "explicit",
        # on a GPU: one kernel for every tensor; the same update, not to the bit
        "adamw_fused": bool(run.optimizer.defaults.get("fused")),
        "world_size": run.world,
        "objective": cfg.loss.objective,
        "views_per_step": views_per_step(cfg),
        "frames_per_view": loaded.frames,
        # forward + backward ~ 3 forward passes; the same for both objectives
        "train_flops_per_step": 3
        * views_per_step(cfg)
        * flops_per_view(run.model.config, loaded.frames),
        "steps": tc.steps,
        "train_seconds": round(run.elapsed, 2),
        "views_per_s_median": round(float(np.median(speeds)), 2),
        "final_loss": float(log[-1]["loss"]) if log else None,
        "first_loss": float(log[0]["loss"]) if log else None,
        "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "last_session_started": started,
    }
    if device.type == "cuda":
        gib = 2**30
        record["gpu_peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / gib, 3)
        record["gpu_memory_gib"] = round(
            torch.cuda.get_device_properties(device).total_memory / gib, 1
        )
    if device.type == "cpu":
        record["cpu_bf16_speedup"] = round(cpu_bf16_speedup(), 3)
    return record


@dataclass
class _Session:
    """A run once set up: where it trains, with what, and from which step."""

    cfg: Config
    device: torch.device
    rank: int
    world: int
    precision: str
    loaded: _Data
    model: ViT1D
    objective: Objective
    optimizer: torch.optim.Optimizer
    scaler: Any
    step_fn: nn.Module
    fused: bool
    start_step: int
    elapsed: float


def _setup(
    cfg: Config, data: str | Path, out_dir: Path, checkpoint: Path | None, show: bool
) -> _Session:
    """Device, process group, precision, pool, model, objective and optimiser; the state of
    ``checkpoint`` restored when resuming."""
    tc = cfg.train
    if tc.num_threads > 0:
        torch.set_num_threads(tc.num_threads)
    device = select_device(tc.device)
    _maybe_init_distributed(device)
    rank, world = dist_info()
    if tc.batch_size % world:
        raise UserError(f"train.batch_size ({tc.batch_size}) must be divisible by {world} ranks")
    # before choose_precision, whose measurement on a CPU takes seconds: a bad manifest is
    # reported at once
    files = read_manifest(data, cfg.data.split)
    precision = choose_precision(device, tc.precision)
    if checkpoint is not None and tc.precision == "auto":
        # the run-time choice is a measurement and may differ on a busy machine: a resumed
        # run keeps the precision it started with, or it would not end with the same weights
        precision = json.loads((checkpoint / "config.json").read_text()).get("precision", precision)
    loaded = _load_data(cfg, data, files, out_dir, show)

    torch.manual_seed(cfg.seed)
    model = ViT1D(**model_config(cfg)).to(device)
    objective = make_objective(cfg, device, precision, rank)
    optimizer = torch.optim.AdamW(
        param_groups(model),
        lr=cfg.optim.lr,
        betas=tuple(cfg.optim.betas),
        weight_decay=cfg.optim.weight_decay,
        fused=device.type == "cuda" or None,  # scripts/gpu_check.py measures it
    )
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    start_step, elapsed = 0, 0.0
    if checkpoint is not None:
        start_step, elapsed = _restore(checkpoint, cfg, out_dir, model, optimizer, scaler, device)

    fused = choose_fused_attention(device, precision)
    step_fn: nn.Module = objective.module(model, fused)
    if world > 1:
        step_fn = nn.parallel.DistributedDataParallel(
            step_fn, device_ids=[device.index] if device.type == "cuda" else None
        )
    if tc.compile:
        step_fn = torch.compile(step_fn)
    return _Session(
        cfg, device, rank, world, precision, loaded, model, objective, optimizer, scaler,
        step_fn, fused, start_step, elapsed,
    )  # fmt: skip


def _log_row(
    step: int, loss: float, grad_norm: float, dt: float, elapsed: float, cfg: Config
) -> dict[str, Any]:
    """One row of ``log.csv`` for the step just finished (``step`` counts from 0)."""
    return {
        "step": step + 1,
        "loss": f"{loss:.6f}",
        "lr": f"{lr_at(step, cfg):.6g}",
        "weight_decay": f"{weight_decay_at(step, cfg):.6g}",
        "grad_norm": f"{float(grad_norm):.4f}",
        "views_per_s": f"{views_per_step(cfg) / dt:.2f}",
        "elapsed_s": f"{elapsed:.2f}",
    }


def _save_after(run: _Session, done: int, out_dir: Path, extra: dict, log_fh: Any, snaps: set):
    """A snapshot when ``done`` is a snapshot step; a checkpoint (log flushed first, so that a
    resumed run finds every logged step) every ``checkpoint_every`` steps and at the end."""
    tc = run.cfg.train
    if run.rank == 0 and done in snaps:
        save_checkpoint_folder(
            run.model, out_dir / "snapshots" / f"step-{done:08d}", {**extra, "step": done}
        )
    if run.rank == 0 and (done % tc.checkpoint_every == 0 or done == tc.steps):
        log_fh.flush()
        os.fsync(log_fh.fileno())
        state = {
            "step": done,
            "elapsed_s": run.elapsed,
            "optimizer": run.optimizer.state_dict(),
            "scaler": run.scaler.state_dict(),
            "torch_rng": torch.get_rng_state(),
        }
        write_checkpoint(run.model, out_dir, done, extra, state)
    if run.world > 1 and done % tc.checkpoint_every == 0:
        torch.distributed.barrier()


def _train(run: _Session, out_dir: Path, extra: dict, log_fh: Any, show: bool) -> None:
    """The steps from ``run.start_step`` to the end; ``run.elapsed`` counts their time."""
    cfg, tc, device = run.cfg, run.cfg.train, run.device
    snaps = {max(1, round(f * tc.steps)) for f in tc.snapshot_fractions}
    writer = csv.DictWriter(log_fh, LOG_COLUMNS) if log_fh else None
    bar = tqdm(
        total=tc.steps,
        initial=run.start_step,
        desc="pretrain",
        unit="step",
        disable=not show or run.rank != 0,
    )
    run.model.train()
    make_batch = _batch_maker(run.loaded, cfg, device)
    # On an accelerator one worker thread builds step k+1's batch while step k trains (NumPy
    # cropping and augmentation release the GIL; the memory-mapped cache needs no processes).
    # On a CPU that thread would only take cores from the training step, so "auto" builds
    # batches inline there.
    ahead = tc.prefetch == "thread" or (tc.prefetch == "auto" and device.type != "cpu")
    workers = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vit1d-batches")
    pending = None
    if ahead and run.start_step < tc.steps:
        pending = workers.submit(make_batch, run.start_step)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        for step in range(run.start_step, tc.steps):
            t0 = time.perf_counter()
            if ahead:
                n, x = pending.result()
                if step + 1 < tc.steps:
                    pending = workers.submit(make_batch, step + 1)
            else:
                n, x = make_batch(step)
            x = x.to(device, non_blocking=True)
            loss, grad_norm = _step(
                run.step_fn, run.objective, run.model, run.optimizer, run.scaler, x, n, step, cfg
            )
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            dt = time.perf_counter() - t0
            run.elapsed += dt
            value = loss.item()  # one device sync per step, not one per use
            if not np.isfinite(value):  # before any checkpoint holds this step's weights
                raise RuntimeError(
                    f"loss became {value} at step {step}; lower optim.lr or use "
                    "train.precision=fp32 (the last checkpoint is intact)"
                )
            if writer is not None:
                writer.writerow(_log_row(step, value, grad_norm, dt, run.elapsed, cfg))
            bar.update(1)
            bar.set_postfix(loss=f"{value:.3f}", views_s=f"{views_per_step(cfg) / dt:.1f}")
            _save_after(run, step + 1, out_dir, extra, log_fh, snaps)
    finally:
        workers.shutdown(wait=True, cancel_futures=True)
        bar.close()


def pretrain(
    config: Config | str | Path | dict[str, Any] = "default",
    data: str | Path | None = None,
    out_dir: str | Path = "runs/pretrain",
    resume: bool | str = "auto",
    overrides: dict[str, Any] | list[str] | None = None,
    progress: bool | None = None,
) -> Path:
    """Pretrain ViT-1D (contrastive, or the masked foil); returns ``out_dir`` (a loadable
    checkpoint folder).

    ``data``: a ``manifest.csv`` (its ``train`` split when it has a ``split`` column) or a
    folder of audio files. ``resume``: ``"auto"`` continues from the last checkpoint in
    ``out_dir`` if there is one; ``True`` requires one; ``False`` requires a fresh folder.
    """
    cfg = load_config(config, overrides)
    if data is None:
        raise UserError("no training data given: pass a manifest.csv or a folder of audio")
    out_dir = Path(out_dir)
    show = cfg.train.progress if progress is None else progress
    run = _setup(cfg, data, out_dir, existing_run(out_dir, resume), show)
    extra = {"training": cfg.to_dict(), "precision": run.precision, "vit1d_version": __version__}
    if run.rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir / "log.csv"
    log_fh = open_log(log_path, run.start_step) if run.rank == 0 else None
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    try:
        _train(run, out_dir, extra, log_fh, show)
    finally:
        if log_fh:
            log_fh.close()

    if run.world > 1:
        torch.distributed.barrier()
    if run.rank == 0:
        save_pretrained(run.model, out_dir, extra)
        log = read_log(log_path, cfg.train.steps)
        record = _run_record(run, data, log, started)
        atomic_write_text(out_dir / "run.json", json.dumps(record, indent=2))
    if run.world > 1:
        torch.distributed.barrier()
    return out_dir
