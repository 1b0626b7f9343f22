"""Contrastive pretraining of ViT-1D (SimCLR-style NT-Xent on the class token).

:func:`pretrain` is the whole loop; ``vit1d pretrain`` and ``notebooks/03_pretrain.ipynb``
both call it. One step: draw ``batch_size`` tracks (from as few groups of ``data.group_by``
as possible when it is set: hard negatives), two crops of 4 s each at most
``data.max_distance_s`` apart (a positive pair; with ``data.twin_prob`` the second crop may
come from a twin render of the track, :mod:`vit1d.corpus.twins`), each view augmented on
its own (``augment``, :mod:`vit1d.augment`), embed both views, project the class token,
NT-Xent against the other tracks of the batch, AdamW. With ``loss.objective: masked`` (the
foil, :mod:`vit1d.masked`) the same views, steps and sequence length train the same backbone
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
import math
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vit1d import __version__, faults
from vit1d.augment import augment_views, is_active
from vit1d.checkpoint import atomic_write_text, save_checkpoint_folder, save_pretrained
from vit1d.config import Config, load_config
from vit1d.data import (
    PairSampler,
    build_mel_cache,
    read_manifest,
    read_manifest_column,
    read_twins,
    twin_pool,
)
from vit1d.device import (
    autocast,
    choose_fused_attention,
    choose_precision,
    hardware_summary,
    select_device,
)
from vit1d.errors import UserError
from vit1d.frontend import FRAME_RATE
from vit1d.losses import NTXent, ddp_loss_scale
from vit1d.masked import (
    MaskedForward,
    RandomProjectionQuantizer,
    masked_prediction_loss,
    span_mask,
)
from vit1d.model import ViT1D, flops_per_view

LOG_COLUMNS = ["step", "loss", "lr", "weight_decay", "grad_norm", "views_per_s", "elapsed_s"]
#: Settings that may differ between a run and its resumption (they do not change the maths).
RESUMABLE_CHANGES = {
    "train.checkpoint_every",
    "train.progress",
    "train.device",
    "train.num_threads",
    "train.compile",
    "train.prefetch",
    "data.cache_dir",
    "data.decode_workers",
}
KEEP_CHECKPOINTS = 2


def _report_skipped(skipped: list[dict[str, str]], total: int, out_dir: Path) -> None:
    """List the files left out of the pool in ``skipped_files.csv`` and say so on stderr."""
    import io
    import sys

    out_dir.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, ["file", "reason"])
    writer.writeheader()
    writer.writerows(skipped)
    atomic_write_text(out_dir / "skipped_files.csv", buffer.getvalue())
    print(
        f"vit1d pretrain: {len(skipped)} of {total} audio files could not be decoded and were "
        f"left out (listed in {out_dir / 'skipped_files.csv'}), e.g. {skipped[0]['file']}",
        file=sys.stderr,
    )


def lr_at(step: int, cfg: Config) -> float:
    """Linear warm-up to ``optim.lr``, then cosine decay to ``optim.min_lr``."""
    o, total = cfg.optim, cfg.train.steps
    if step < o.warmup_steps:
        return o.lr * (step + 1) / o.warmup_steps
    progress = (step - o.warmup_steps) / max(1, total - o.warmup_steps)
    return o.min_lr + 0.5 * (o.lr - o.min_lr) * (1.0 + math.cos(math.pi * min(1.0, progress)))


def weight_decay_at(step: int, cfg: Config) -> float:
    """Cosine from ``optim.weight_decay`` to ``optim.weight_decay_end`` over the run."""
    o = cfg.optim
    progress = step / max(1, cfg.train.steps - 1)
    return o.weight_decay_end + 0.5 * (o.weight_decay - o.weight_decay_end) * (
        1.0 + math.cos(math.pi * progress)
    )


def param_groups(model: nn.Module) -> list[dict[str, Any]]:
    """Weight decay on matrices only; biases, norms, class token and positions are exempt."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        exempt = p.ndim < 2 or name in ("cls_token", "pos_embed")
        (no_decay if exempt else decay).append(p)
    return [
        {"params": decay, "apply_wd": True},
        {"params": no_decay, "apply_wd": False, "weight_decay": 0.0},
    ]


class _ContrastiveForward(nn.Module):
    """Both views in one batch -> projected class tokens (the unit DDP and compile wrap)."""

    def __init__(self, model: ViT1D, fused: bool = True) -> None:
        super().__init__()
        self.model = model
        self.fused = fused

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.model.project(self.model(mel, fused=self.fused).cls)


def model_config(cfg: Config) -> dict[str, Any]:
    """The backbone's arguments; the masked objective adds a mask token and makes the head a
    linear map to the codebook (the backbone itself is identical for both objectives)."""
    kwargs = dict(cfg.model.__dict__)
    if cfg.loss.objective == "masked":
        kwargs.update(mask_token=True, head="linear", head_dims=[cfg.loss.codebook_size])
    return kwargs


def _dist_info() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _maybe_init_distributed(device: torch.device) -> None:
    """Join the process group torchrun describes in the environment (WORLD_SIZE > 1)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend)


def _latest_checkpoint(out_dir: Path) -> Path | None:
    pointer = out_dir / "checkpoints" / "latest"
    if not pointer.is_file():
        return None
    folder = out_dir / "checkpoints" / pointer.read_text().strip()
    return folder if (folder / "state.pt").is_file() else None


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _check_same_config(saved: dict[str, Any], cfg: Config, folder: Path) -> None:
    old, new = _flatten(saved), _flatten(cfg.to_dict())
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    changed = [k for k in changed if k not in RESUMABLE_CHANGES]
    if changed:
        details = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed[:5])
        raise UserError(
            f"cannot resume {folder}: the configuration changed ({details}); resume with the "
            "same preset and overrides, or start a new run in another --out folder"
        )


def _read_log(path: Path, upto_step: int) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return [r for r in csv.DictReader(fh) if int(r["step"]) <= upto_step]


def pretrain(
    config: Config | str | Path | dict[str, Any] = "default",
    data: str | Path | None = None,
    out_dir: str | Path = "runs/pretrain",
    resume: bool | str = "auto",
    overrides: dict[str, Any] | list[str] | None = None,
    progress: bool | None = None,
) -> Path:
    """Train ViT-1D contrastively; returns ``out_dir`` (a loadable checkpoint folder).

    ``data``: a ``manifest.csv`` (its ``train`` split when it has a ``split`` column) or a
    folder of audio files. ``resume``: ``"auto"`` continues from the last checkpoint in
    ``out_dir`` if there is one; ``True`` requires one; ``False`` requires a fresh folder.
    """
    cfg = load_config(config, overrides)
    if data is None:
        raise UserError("no training data given: pass a manifest.csv or a folder of audio")
    out_dir = Path(out_dir)
    tc = cfg.train
    show = tc.progress if progress is None else progress

    checkpoint = _latest_checkpoint(out_dir)
    if resume is True and checkpoint is None:
        raise UserError(
            f"--resume given but {out_dir} holds no checkpoint (no checkpoints/latest); "
            "drop --resume to start a new run there"
        )
    if resume is False and (checkpoint is not None or (out_dir / "model.safetensors").exists()):
        raise UserError(
            f"{out_dir} already holds a run; pass --resume to continue it or choose another --out"
        )

    if tc.num_threads > 0:
        torch.set_num_threads(tc.num_threads)
    device = select_device(tc.device)
    _maybe_init_distributed(device)
    rank, world = _dist_info()
    if tc.batch_size % world:
        raise UserError(f"train.batch_size ({tc.batch_size}) must be divisible by {world} ranks")
    # before choose_precision, whose measurement on a CPU takes seconds: a bad manifest is
    # reported at once
    files = read_manifest(data, cfg.data.split)
    precision = choose_precision(device, tc.precision)
    if checkpoint is not None and resume is not False and tc.precision == "auto":
        # the run-time choice is a measurement and may differ on a busy machine: a resumed
        # run keeps the precision it started with, or it would not end with the same weights
        precision = json.loads((checkpoint / "config.json").read_text()).get("precision", precision)

    manifest_dir = Path(data) if Path(data).is_dir() else Path(data).parent
    cache_dir = Path(cfg.data.cache_dir) if cfg.data.cache_dir else manifest_dir / ".vit1d_cache"
    decode = {"skip_unreadable": cfg.data.skip_unreadable, "workers": cfg.data.decode_workers}
    if rank == 0:  # one rank decodes; the others then open the finished cache
        cache = build_mel_cache(files, cache_dir, progress=show, **decode)
    if world > 1:
        torch.distributed.barrier()
    if rank != 0:
        cache = build_mel_cache(files, cache_dir, progress=False, **decode)
    if cache.skipped and rank == 0:
        _report_skipped(cache.skipped, len(files), out_dir)
    frames = cfg.model.max_frames
    groups = (
        read_manifest_column(data, cfg.data.group_by, cfg.data.split) if cfg.data.group_by else None
    )
    if groups is not None:  # the labels of the files the cache holds, in its order
        groups = [groups[i] for i in cache.kept]
    twins = None
    if cfg.data.twin_prob > 0:
        per_track = read_twins(data, cfg.data.twin, cfg.data.split)
        per_track = [per_track[i] for i in cache.kept]
        if rank == 0:
            twins = twin_pool(per_track, cache_dir, progress=show, **decode)
        if world > 1:
            torch.distributed.barrier()
        if rank != 0:
            twins = twin_pool(per_track, cache_dir, progress=False, **decode)
    sampler = PairSampler(
        cache.lengths,
        tc.batch_size,
        frames,
        round(cfg.data.max_distance_s * FRAME_RATE),
        cfg.seed,
        groups=groups,
        twin_counts=None if twins is None else twins.counts,
        twin_prob=cfg.data.twin_prob,
        twin_max_distance=round(cfg.data.twin_max_distance_s * FRAME_RATE),
    )

    torch.manual_seed(cfg.seed)
    model = ViT1D(**model_config(cfg)).to(device)
    masked = cfg.loss.objective == "masked"
    quantizer = RandomProjectionQuantizer(
        cfg.model.n_mels,
        cfg.loss.code_dim,
        cfg.loss.codebook_size,
        cfg.seed,
        cfg.model.input_mean,
        cfg.model.input_std,
    ).to(device)
    optimizer = torch.optim.AdamW(
        param_groups(model),
        lr=cfg.optim.lr,
        betas=tuple(cfg.optim.betas),
        weight_decay=cfg.optim.weight_decay,
    )
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    loss_fn = NTXent(cfg.loss.temperature)

    start_step, elapsed = 0, 0.0
    if checkpoint is not None and resume is not False:
        saved = json.loads((checkpoint / "config.json").read_text())
        _check_same_config(saved["training"], cfg, out_dir)
        from safetensors.torch import load_file

        model.load_state_dict(load_file(str(checkpoint / "model.safetensors"), device=str(device)))
        state = torch.load(checkpoint / "state.pt", map_location=device, weights_only=True)
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"].cpu())
        start_step, elapsed = int(state["step"]), float(state["elapsed_s"])

    fused = choose_fused_attention(device, precision)
    forward_cls = MaskedForward if masked else _ContrastiveForward
    step_fn: nn.Module = forward_cls(model, fused=fused)
    if world > 1:
        step_fn = nn.parallel.DistributedDataParallel(
            step_fn, device_ids=[device.index] if device.type == "cuda" else None
        )
    if tc.compile:
        step_fn = torch.compile(step_fn)

    snapshot_steps = {max(1, round(f * tc.steps)) for f in tc.snapshot_fractions}
    log_path = out_dir / "log.csv"
    extra = {"training": cfg.to_dict(), "precision": precision, "vit1d_version": __version__}
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        rows = _read_log(log_path, start_step)
        with open(log_path, "w", newline="") as fh:  # drop rows past the checkpoint
            writer = csv.DictWriter(fh, LOG_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    from tqdm.auto import tqdm

    bar = tqdm(
        total=tc.steps,
        initial=start_step,
        desc="pretrain",
        unit="step",
        disable=not show or rank != 0,
    )
    log_fh = open(log_path, "a", newline="") if rank == 0 else None
    writer = csv.DictWriter(log_fh, LOG_COLUMNS) if log_fh else None
    model.train()

    def make_batch(step: int) -> tuple[int, torch.Tensor]:
        # a pure function of the step, so building it ahead in a thread changes no result
        b = sampler.batch(step)
        mine = slice(rank, None, world)
        tracks, starts_a, starts_b, source = (v[mine] for v in b)
        second = cache.crops(tracks, starts_b, frames)
        rows = np.flatnonzero(source)
        if len(rows):  # second views from twin renders: same score time, other players
            at = twins.positions(tracks[rows], source[rows])
            second[rows] = twins.cache.crops(at, starts_b[rows], frames)
        views = np.concatenate([cache.crops(tracks, starts_a, frames), second])
        if is_active(cfg.augment):  # per-rank draws: each rank's views differ
            augment_views(views, cfg.augment, cfg.seed * 1000 + rank, step)
        x = torch.from_numpy(views)
        # pinned host memory lets the copy to the GPU overlap the previous step's kernels
        return len(tracks), x.pin_memory() if device.type == "cuda" else x

    # On an accelerator one worker thread builds step k+1's batch while step k trains (NumPy
    # cropping and augmentation release the GIL; the memory-mapped cache needs no processes).
    # On a CPU that thread would only take cores from the training step, so "auto" builds
    # batches inline there.
    ahead = tc.prefetch == "thread" or (tc.prefetch == "auto" and device.type != "cpu")
    workers = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vit1d-batches")
    pending = None
    if ahead and start_step < tc.steps:
        pending = workers.submit(make_batch, start_step)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        for step in range(start_step, tc.steps):
            t0 = time.perf_counter()
            if ahead:
                n, x = pending.result()
                if step + 1 < tc.steps:
                    pending = workers.submit(make_batch, step + 1)
            else:
                n, x = make_batch(step)
            x = x.to(device, non_blocking=True)
            lr, wd = lr_at(step, cfg), weight_decay_at(step, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr
                if group["apply_wd"]:
                    group["weight_decay"] = wd
            if masked:
                codes = quantizer(x)
                gen = torch.Generator().manual_seed(
                    int(np.random.default_rng([cfg.seed, step, rank]).integers(2**62))
                )
                mask = span_mask(
                    2 * n, x.shape[1], cfg.loss.mask_ratio, cfg.loss.mask_span, gen
                ).to(device)
                with autocast(device, precision):
                    logits = step_fn(x, mask)
                loss = masked_prediction_loss(logits, codes[mask])
            else:
                with autocast(device, precision):
                    z = step_fn(x)
                loss = loss_fn(z[:n], z[n:])
            if not torch.isfinite(loss):
                raise RuntimeError(
                    f"loss became {loss.item()} at step {step}; lower optim.lr or use "
                    "train.precision=fp32 (the last checkpoint is intact)"
                )
            # NT-Xent returns the global loss (see vit1d.losses); a per-rank mean needs no scale
            scaler.scale(loss * (1 if masked else ddp_loss_scale())).backward()
            scaler.unscale_(optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            dt = time.perf_counter() - t0
            elapsed += dt
            done = step + 1
            if writer is not None:
                writer.writerow(
                    {
                        "step": done,
                        "loss": f"{loss.item():.6f}",
                        "lr": f"{lr:.6g}",
                        "weight_decay": f"{wd:.6g}",
                        "grad_norm": f"{float(grad_norm):.4f}",
                        "views_per_s": f"{2 * tc.batch_size / dt:.2f}",
                        "elapsed_s": f"{elapsed:.2f}",
                    }
                )
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", views_s=f"{2 * tc.batch_size / dt:.1f}")
            if rank == 0 and done in snapshot_steps:
                save_checkpoint_folder(
                    model, out_dir / "snapshots" / f"step-{done:08d}", {**extra, "step": done}
                )
            if rank == 0 and (done % tc.checkpoint_every == 0 or done == tc.steps):
                log_fh.flush()
                os.fsync(log_fh.fileno())
                state = {
                    "step": done,
                    "elapsed_s": elapsed,
                    "optimizer": optimizer.state_dict(),
                    "scaler": scaler.state_dict(),
                    "torch_rng": torch.get_rng_state(),
                }
                _write_checkpoint(model, out_dir, done, extra, state)
            if world > 1 and done % tc.checkpoint_every == 0:
                torch.distributed.barrier()
    finally:
        workers.shutdown(wait=True, cancel_futures=True)
        bar.close()
        if log_fh:
            log_fh.close()

    if world > 1:
        torch.distributed.barrier()
    if rank == 0:
        save_pretrained(model, out_dir, extra)
        log = _read_log(log_path, tc.steps)
        speeds = [float(r["views_per_s"]) for r in log[1:]] or [0.0]
        run = {
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
            "precision": precision,
            "attention": "fused" if fused else "explicit",
            "world_size": world,
            "objective": cfg.loss.objective,
            "views_per_step": 2 * tc.batch_size,
            "frames_per_view": frames,
            # forward + backward ~ 3 forward passes; the same for both objectives
            "train_flops_per_step": 3 * 2 * tc.batch_size * flops_per_view(model.config, frames),
            "steps": tc.steps,
            "train_seconds": round(elapsed, 2),
            "views_per_s_median": round(float(np.median(speeds)), 2),
            "final_loss": float(log[-1]["loss"]) if log else None,
            "first_loss": float(log[0]["loss"]) if log else None,
            "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "last_session_started": started,
        }
        if device.type == "cuda":
            gib = 2**30
            run["gpu_peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / gib, 3)
            run["gpu_memory_gib"] = round(
                torch.cuda.get_device_properties(device).total_memory / gib, 1
            )
        if device.type == "cpu":
            from vit1d.device import cpu_bf16_speedup

            run["cpu_bf16_speedup"] = round(cpu_bf16_speedup(), 3)
        atomic_write_text(out_dir / "run.json", json.dumps(run, indent=2))
    if world > 1:
        torch.distributed.barrier()
    return out_dir


def snapshot_folders(run_dir: str | Path) -> list[tuple[int, Path]]:
    """``(step, folder)`` of every model snapshot a run kept, in training order."""
    folders = sorted(Path(run_dir).glob("snapshots/step-*"))
    return [(int(f.name.split("-")[1]), f) for f in folders if (f / "config.json").is_file()]


def _write_checkpoint(
    model: ViT1D, out_dir: Path, step: int, extra: dict[str, Any], state: dict[str, Any]
) -> None:
    ckpt_dir = out_dir / "checkpoints"
    name = f"step-{step:08d}"
    save_checkpoint_folder(model, ckpt_dir / name, extra, state)
    atomic_write_text(ckpt_dir / "latest", name + "\n")
    old = sorted(p for p in ckpt_dir.glob("step-*") if p.name != name)
    for p in old[: max(0, len(old) - (KEEP_CHECKPOINTS - 1))]:
        shutil.rmtree(p, ignore_errors=True)
    faults.reached("checkpoint")


def register(subparsers: Any) -> None:
    """Add ``vit1d pretrain`` to the command line."""
    p = subparsers.add_parser(
        "pretrain",
        help="contrastive pretraining (NT-Xent on the class token)",
        description="Train ViT-1D with NT-Xent on pairs of 4 s crops of the same track. "
        "Writes a checkpoint folder (model.safetensors, config.json), log.csv and run.json.",
    )
    p.add_argument(
        "--preset",
        default="default",
        help="smoke | default | long | paper, or a path to a YAML config",
    )
    p.add_argument(
        "--data",
        required=True,
        help="pretraining manifest.csv (an 'audio' column of paths relative to it) or a folder "
        "of audio files",
    )
    p.add_argument("--out", required=True, help="run folder (checkpoints, logs, final model)")
    p.add_argument(
        "--objective",
        choices=["contrastive", "masked"],
        help="contrastive (the paper, default) or masked (the BEST-RQ foil); "
        "same as --set loss.objective=...",
    )
    p.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its last checkpoint"
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set optim.lr=3e-4 (repeatable)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cli)


def _cli(args: Any) -> int:
    overrides = list(args.overrides)
    if args.objective:
        overrides.append(f"loss.objective={args.objective}")
    cfg = load_config(args.preset, overrides)
    out = pretrain(
        cfg,
        args.data,
        args.out,
        resume=True if args.resume else False,
        progress=False if args.no_progress else None,
    )
    rank, _ = _dist_info()
    if rank != 0:
        return 0
    run = json.loads((out / "run.json").read_text())
    print(
        f"done: {run['steps']} steps, loss {run['first_loss']:.3f} -> {run['final_loss']:.3f}, "
        f"{run['views_per_s_median']:.1f} views/s ({run['precision']}); model in {out}"
    )
    return 0
