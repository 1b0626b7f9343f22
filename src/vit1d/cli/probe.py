"""``vit1d probe``: linear probes of a checkpoint and its baselines on a corpus's tasks. The
work is :func:`vit1d.probing.runner.probe_corpus`'s."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from vit1d.cli.embed import add_model_args
from vit1d.core.errors import UserError
from vit1d.probing.linear import ProbeConfig
from vit1d.probing.runner import ExtractOptions, probe_corpus
from vit1d.probing.tasks import int_list, parse_file_caps


def register(subparsers: Any) -> None:
    """``vit1d probe``: linear probes of a checkpoint and baselines on a corpus."""
    p = subparsers.add_parser(
        "probe",
        help="linear probes per task, layer, pooling and seed; results CSV + summary",
        description=(
            "Extract features (cached) and train one linear probe per (task, layer, pooling, "
            "seed) on a corpus in the manifest format (<data>/<task>/manifest.csv); score "
            "them with the field's metrics and merge the rows into <out>/probes.csv, "
            "<out>/probes_summary.csv (mean over seeds, 95%% bootstrap CI) and "
            "<out>/probes_runs.json (provenance). Examples:\n"
            "  vit1d probe --data data/smoke --checkpoint runs/smoke/pretrain --baselines\n"
            "  vit1d probe --data data/smoke --checkpoint runs/smoke/pretrain --emergence "
            "--tasks key,tempo --no-final"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_corpus_args(p)
    _add_source_args(p)
    _add_view_args(p)
    _add_output_args(p)
    _add_training_args(p)
    add_model_args(p)
    p.set_defaults(func=_cli)


def _add_corpus_args(p: argparse.ArgumentParser) -> None:
    """The corpus and its tasks to probe."""
    p.add_argument("--data", help="corpus root holding <task>/manifest.csv")
    p.add_argument("--manifest", help="one manifest.csv instead of --data (task = its folder)")
    p.add_argument("--tasks", default="all", help="comma-separated tasks or all (default)")


def _add_source_args(p: argparse.ArgumentParser) -> None:
    """The models probed: a checkpoint, its snapshots and the baselines."""
    p.add_argument("--checkpoint", help="checkpoint folder (model.safetensors + config.json)")
    p.add_argument("--label", default="", help="model name in the results (default contrastive)")
    p.add_argument(
        "--emergence",
        action="store_true",
        help="also probe every snapshots/step-* folder of the --checkpoint run",
    )
    p.add_argument(
        "--no-final",
        action="store_true",
        help="with --emergence: skip the final model (probe only the snapshots)",
    )
    p.add_argument(
        "--random-init",
        type=int,
        default=0,
        metavar="N",
        help="random-init baseline with init seeds 0..N-1 (paired with probe seeds)",
    )
    p.add_argument("--logmel", action="store_true", help="log-mel baseline")
    p.add_argument(
        "--baselines",
        action="store_true",
        help="shorthand for --random-init <number of seeds> --logmel",
    )
    p.add_argument(
        "--config",
        default="",
        help="architecture for --random-init without --checkpoint: a preset name "
        "or checkpoint folder",
    )


def _add_view_args(p: argparse.ArgumentParser) -> None:
    """The probes of each task: seeds, layers and poolings."""
    p.add_argument(
        "--seeds", type=int_list, default="0,1,2", help="probe seeds (default: %(default)s)"
    )
    p.add_argument("--layers", default="all", help="depths to probe: all or e.g. 0,4,8,12")
    p.add_argument(
        "--poolings", default="cls,seq,avg", help="global poolings (default: %(default)s)"
    )


def _add_output_args(p: argparse.ArgumentParser) -> None:
    """Where the results go and the corpus name they carry."""
    p.add_argument("--out", default="results", help="results folder (default results/)")
    p.add_argument("--corpus", default="", help="corpus name in the results (default: its own)")


def _add_training_args(p: argparse.ArgumentParser) -> None:
    """Probe fitting (the ``probe training`` group; defaults from :class:`ProbeConfig`)."""
    g = p.add_argument_group("probe training")
    d = ProbeConfig()
    g.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate (%(default)s)")
    g.add_argument(
        "--max-epochs", type=int, default=d.max_epochs, help="Adam: epochs at most (%(default)s)"
    )
    g.add_argument(
        "--steps-per-epoch",
        type=int,
        default=d.steps_per_epoch,
        help="Adam: batches per epoch (%(default)s)",
    )
    g.add_argument(
        "--patience",
        type=int,
        default=d.patience,
        help="Adam: early stopping after this many epochs without gain (%(default)s)",
    )
    g.add_argument(
        "--solver",
        choices=("adam", "lbfgs"),
        default=d.solver,
        help=f"lbfgs (exact solution, L2 weight chosen on valid) or adam (the group's "
        f"protocol, one fit per seed) for global tasks; default {d.solver}",
    )
    g.add_argument(
        "--local-solver",
        choices=("adam", "lbfgs"),
        default=d.local_solver,
        help=f"the same for local (frame-level) tasks; default {d.local_solver}",
    )
    g.add_argument(
        "--max-train-frames",
        type=int,
        default=d.max_train_frames,
        help="local tasks: training frames drawn (%(default)s)",
    )
    g.add_argument(
        "--max-local-files",
        default=",".join(map(str, d.max_local_files)),
        help="local tasks: at most TRAIN,VALID,TEST files (0 = all; default %(default)s)",
    )
    g.add_argument(
        "--max-global-files",
        default="0",
        help="global tasks: at most TRAIN,VALID,TEST files (default 0 = all)",
    )
    g.add_argument(
        "--n-boot", type=int, default=d.n_boot, help="bootstrap replicates (%(default)s)"
    )
    g.add_argument(
        "--workers",
        type=int,
        default=d.workers,
        help="tasks fitted at once, one thread each, and processes decoding a local task's "
        "tracks (0 = one per CPU core; same results)",
    )


def _cli(args: argparse.Namespace) -> int:
    if args.manifest:
        manifest = Path(args.manifest)
        data, tasks = manifest.parent.parent, manifest.parent.name
    elif args.data:
        data, tasks = Path(args.data), args.tasks
    else:
        raise UserError("give --data (a corpus root) or --manifest (one task's manifest.csv)")
    if args.emergence and not args.checkpoint:
        raise UserError("--emergence needs --checkpoint (the pretraining run folder)")
    cfg = ProbeConfig(
        lr=args.lr,
        max_epochs=args.max_epochs,
        steps_per_epoch=args.steps_per_epoch,
        patience=args.patience,
        solver=args.solver,
        local_solver=args.local_solver,
        max_train_frames=args.max_train_frames,
        max_local_files=parse_file_caps(args.max_local_files),
        max_global_files=parse_file_caps(args.max_global_files),
        n_boot=args.n_boot,
        workers=args.workers,
    )
    ext = ExtractOptions(
        cache_dir=args.cache,
        window_s=args.window_s,
        hop_s=args.hop_s,
        batch_size=args.batch_size,
        device=args.device,
        precision=args.precision,
        threads=args.threads or None,
    )
    t0 = time.perf_counter()
    out = probe_corpus(
        data,
        args.out,
        checkpoint=args.checkpoint,
        tasks=tasks,
        label=args.label,
        random_init=len(args.seeds) if args.baselines else args.random_init,
        logmel=args.logmel or args.baselines,
        emergence=args.emergence,
        final=not args.no_final,
        architecture=args.config or None,
        seeds=args.seeds,
        layers=None if args.layers == "all" else int_list(args.layers),
        poolings=[p.strip() for p in args.poolings.split(",") if p.strip()],
        config=cfg,
        extract=ext,
        corpus=args.corpus or None,
        progress=not args.no_progress,
    )
    print(f"done in {time.perf_counter() - t0:.0f} s: {out['probes']}, {out['summary']}")
    return 0
