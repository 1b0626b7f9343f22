"""``vit1d embed``: extract and cache every layer's features of a corpus's task audio, embed
a folder of audio files through the HEAR API (``--audio``), or time extraction and compare
bf16 with fp32 probes (``--benchmark``). The work is :mod:`vit1d.features.embed`'s."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from vit1d.audio.grid import FRAME_RATE
from vit1d.core.errors import UserError
from vit1d.features import hear
from vit1d.features.embed import embed
from vit1d.features.sources import ModelSpec, architecture_config, checkpoint_step, load_model
from vit1d.features.windows import BATCH_SIZE, POOLINGS, ExtractSettings
from vit1d.models.device import select_device
from vit1d.probing.speed import benchmark
from vit1d.probing.tasks import limit_files, load_task, parse_file_caps, tasks_arg


def add_model_args(p: argparse.ArgumentParser) -> None:
    """Options naming the feature source, shared by ``vit1d embed`` and ``vit1d probe``."""
    g = p.add_argument_group("extraction")
    g.add_argument("--cache", help="embedding cache folder (default: <data>/.vit1d_cache/embed)")
    g.add_argument(
        "--window-s",
        type=float,
        default=ExtractSettings.window_s,
        help="window length, s (default %(default)s)",
    )
    g.add_argument(
        "--hop-s",
        type=float,
        default=ExtractSettings.hop_s,
        help="hop between windows of long files, s (default %(default)s)",
    )
    g.add_argument(
        "--batch-size", type=int, default=BATCH_SIZE, help="windows per forward pass (%(default)s)"
    )
    g.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    g.add_argument(
        "--precision",
        default="auto",
        help="auto (bf16 only where native and faster) | fp32 | bf16 | fp16",
    )
    g.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads for extraction (0 = all cores, or 1 when the machine is busy)",
    )
    g.add_argument("--no-progress", action="store_true", help="no progress bars")


def register(subparsers: Any) -> None:
    """``vit1d embed``: extract and cache features of a corpus's task audio."""
    p = subparsers.add_parser(
        "embed",
        help="extract and cache every layer's features of a corpus (for probing)",
        description=(
            "Run a model once over the audio of a corpus's task manifests and cache, per file "
            "and depth, the pooled class/sequence/average vectors (and per-frame tokens for "
            "local tasks) as memory-mapped float16 arrays. Re-running reuses the cache. "
            "With --benchmark, measure extraction speed (x real time) in fp32 and bf16 and "
            "the difference bf16 makes to probe results."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--data", help="corpus root holding <task>/manifest.csv")
    where.add_argument(
        "--audio",
        metavar="FOLDER",
        help="instead of a corpus: embed every audio file under FOLDER in the HEAR convention "
        "(vit1d.features.hear) into --out (scene.npy, files.csv, files/<path>.npz); needs --checkpoint",
    )
    p.add_argument("--tasks", default="all", help="comma-separated tasks, or all")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="checkpoint folder (model.safetensors + config.json)")
    src.add_argument(
        "--random-init",
        type=int,
        metavar="SEED",
        help="a randomly initialised ViT-1D (architecture from --config)",
    )
    src.add_argument("--logmel", action="store_true", help="the log-mel baseline")
    p.add_argument(
        "--config",
        default="default",
        help="for --random-init: a checkpoint folder or training preset giving the architecture",
    )
    p.add_argument(
        "--frames",
        choices=("auto", "yes", "no"),
        default="auto",
        help="store per-frame tokens: auto = for local tasks (chords, beats, onsets)",
    )
    p.add_argument(
        "--benchmark",
        metavar="OUT_JSON",
        help="measure x real time (fp32 and bf16) and the bf16 probe difference; write JSON",
    )
    p.add_argument("--bench-files", type=int, default=200, help="files timed by --benchmark")
    p.add_argument(
        "--max-local-files",
        default="200,50,150",
        help="local tasks: at most TRAIN,VALID,TEST files, the same choice as `vit1d probe` "
        "(0 = all)",
    )
    g = p.add_argument_group("--audio FOLDER (HEAR-style embeddings of a folder)")
    g.add_argument("--out", help="output folder for --audio")
    g.add_argument(
        "--layer", type=int, help="depth to embed from (default: vit1d.features.hear.default_layer)"
    )
    g.add_argument("--pooling", default="avg", choices=POOLINGS, help="scene pooling")
    g.add_argument(
        "--timestamps", action="store_true", help="also store per-frame embeddings (32 ms)"
    )
    add_model_args(p)
    p.set_defaults(func=_cli)


def _cli_audio(args: argparse.Namespace) -> int:
    if not args.checkpoint:
        raise UserError("--audio needs --checkpoint (a folder written by `vit1d pretrain`)")
    if not args.out:
        raise UserError("--audio needs --out, the folder to write the embeddings to")
    model = hear.load_model(args.checkpoint, layer=args.layer, pooling=args.pooling)
    model = model.to(select_device(args.device))
    report = hear.embed_folder(
        args.audio, args.out, model, timestamps=args.timestamps, progress=not args.no_progress
    )
    print(
        f"embedded {report['files']} files (layer {report['layer']}, {report['pooling']} "
        f"pooling, {report['scene_dim']} dims) into {args.out}; skipped {len(report['skipped'])}"
    )
    return 0


def _cli(args: argparse.Namespace) -> int:
    if args.audio:
        return _cli_audio(args)
    root = Path(args.data)
    if args.benchmark:
        if not args.checkpoint:
            raise UserError("--benchmark needs --checkpoint")
        tasks = [t for t in ("key", "instrument") if (root / t / "manifest.csv").is_file()]
        if args.tasks != "all":
            tasks = tasks_arg(args.tasks, root)
        report = benchmark(
            args.checkpoint,
            root,
            tasks=tasks or tasks_arg("all", root)[:1],
            max_files=args.bench_files,
            device=args.device,
            out=args.benchmark,
            threads=args.threads or None,
        )
        for prec, s in report["speed"].items():
            print(
                f"{prec}: {s['x_realtime']:.0f}x real time ({s['audio_seconds']:.0f} s of audio, "
                f"{s['threads']} thread(s))"
            )
        if "max_abs_diff" in report:
            print(
                f"bf16 - fp32 probe metric difference: median {report['median_abs_diff']:.4f}, "
                f"max {report['max_abs_diff']:.4f}; seed std (median) "
                f"{report['median_seed_std']:.4f}"
            )
        print(f"report: {args.benchmark}")
        return 0
    tasks = tasks_arg(args.tasks, root)
    if args.checkpoint:
        spec = ModelSpec("checkpoint", args.checkpoint, step=checkpoint_step(args.checkpoint))
    elif args.logmel:
        spec = ModelSpec("logmel")
    else:
        spec = ModelSpec(
            "random", seed=args.random_init, config=architecture_config(args.config), step=0
        )
    cache = Path(args.cache) if args.cache else root / ".vit1d_cache" / "embed"
    model = load_model(spec)
    for name in tasks:
        task = load_task(root / name / "manifest.csv", name)
        if task.spec.local:
            task = limit_files(task, parse_file_caps(args.max_local_files))
        frames = {"auto": task.spec.local, "yes": True, "no": False}[args.frames]
        t0 = time.perf_counter()
        emb = embed(
            spec,
            [ex.audio for ex in task.examples],
            cache_dir=cache,
            frames=frames,
            window_s=args.window_s,
            hop_s=args.hop_s,
            batch_size=args.batch_size,
            device=args.device,
            precision=args.precision,
            progress=not args.no_progress,
            model=model,
            threads=args.threads or None,
        )
        wall = time.perf_counter() - t0
        audio = float(emb.n_frames.sum()) / FRAME_RATE
        done = emb.provenance["computed_files"]
        speed = f", {audio / wall:.0f}x real time" if done else " (all cached)"
        print(
            f"{name}: {len(emb)} files, {audio / 60:.1f} min of audio, {done} computed in "
            f"{wall:.1f} s{speed}, {emb.provenance['precision']} -> {emb.provenance['cache']}"
        )
    return 0
