"""GPU check: the ``paper`` preset for a few hundred steps on one GPU, with its numbers.

Run it before committing a GPU to a week-long ``paper`` run::

    python scripts/gpu_check.py --out gpu-check            # a synthetic pool it writes itself
    python scripts/gpu_check.py --data ~/pool --out gpu-check   # your own folder or manifest

It does, in one process on one device, writing ``gpu_check.json`` after each part (so that a
run stopped early keeps what it measured):

1. **matrix**: the model's own products and a large square one in bf16 (TFLOP/s) and the copy
   bandwidth, the ceilings for the step;
2. **scaling**: views/s of the eager step against the batch (fixed costs per step show as
   views/s that grow with the batch);
3. ``vit1d pretrain --preset paper`` for ``--steps`` steps on the pool (the real loop: log-mel
   cache, pair sampler, batches built ahead in a thread into pinned memory, fused AdamW,
   checkpoint), compiled as the preset says and eager (``--eager-steps``), and a few steps with
   ``train.precision=fp16`` (the GradScaler path of older cards);
4. **variants** (:func:`vit1d.bench.gpu.step_variants`): training views/s at the paper's batch
   (128 pairs) of the fp32 eager reference and the project's step (bf16 autocast, fused
   attention) on a fixed batch, eager and with ``torch.compile`` (default and
   ``reduce-overhead``, CUDA graphs), with AdamW's per-tensor kernels or its fused kernel, and
   where a step's time goes (kernels' busy time against wall time, by category);
5. **summary**: what bounds the step (the real loop against the fixed-batch step: data and
   host work; the busy fraction: launches; TFLOP/s against the products' ceilings: kernels).

The paper's warm-up lasts 5120 steps, so a few hundred steps measure speed, not learning.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

SR = 16_000


def write_synthetic_pool(folder: Path, tracks: int, seconds: float, seed: int = 0) -> Path:
    """``tracks`` WAV files of random harmonic notes (a stand-in pool when none is given)."""
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    for i in range(tracks):
        path = folder / f"synthetic-{i:04d}.wav"
        if path.exists():
            continue
        rng = np.random.default_rng([seed, i])
        onsets = np.cumsum(rng.uniform(0.15, 0.6, size=int(seconds / 0.15) + 1))
        onsets = onsets[onsets < seconds]
        note = np.searchsorted(onsets, t, side="right") - 1  # the note sounding at each sample
        f0 = 55.0 * 2 ** (rng.integers(0, 48, size=len(onsets)) / 12)
        since = t - onsets[np.maximum(note, 0)]
        env = np.where(note >= 0, np.minimum(since / 0.01, 1.0) * np.exp(-3.0 * since), 0.0)
        phase = 2 * np.pi * f0[np.maximum(note, 0)] * since
        y = sum(0.3 / h * np.sin(h * phase) for h in range(1, 6)) * env
        y += 0.005 * rng.standard_normal(n)
        sf.write(path, (0.5 * y / np.max(np.abs(y))).astype(np.float32), SR)
    return folder


def summary(report: dict) -> dict:
    """What bounds the step, from the parts measured: the real loop against the same step on
    a fixed batch (data and host work), the GPU's busy fraction (launches), the achieved
    TFLOP/s against the model's own products and the square product (kernels)."""
    variants = report["variants"]
    out: dict = {}
    best = max(variants["views_per_s"], key=variants["views_per_s"].get)
    out["fastest_step"] = {"variant": best, "views_per_s": variants["views_per_s"][best]}
    for name, b in variants["breakdown"].items():
        out[f"busy_fraction: {name}"] = b["busy_fraction"]
    paper = report.get("paper")
    if paper:
        views = paper["views_per_s_median"]
        flops_per_view = paper["train_flops_per_step"] / paper["views_per_step"]
        out["paper_views_per_s"] = views
        out["paper_tflops"] = round(views * flops_per_view / 1e12, 1)
        out["paper_over_fixed_batch_step"] = {
            name: round(views / v, 3)
            for name, v in variants["views_per_s"].items()
            if "compiled" in name
        }
        out["paper_tflops_over_square_product"] = round(
            out["paper_tflops"] / report["matrix"]["square_tflops"], 3
        )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="gpu-check", help="folder for the results")
    p.add_argument("--data", help="a folder of audio or a manifest.csv (default: synthetic)")
    p.add_argument("--tracks", type=int, default=256, help="synthetic pool: number of tracks")
    p.add_argument("--seconds", type=float, default=30.0, help="synthetic pool: track length")
    p.add_argument("--steps", type=int, default=300, help="paper-preset training steps")
    p.add_argument("--pairs", type=int, default=128, help="benchmark: pairs per step (paper: 128)")
    p.add_argument("--bench-steps", type=int, default=20, help="benchmark: timed steps")
    p.add_argument("--eager-steps", type=int, default=150, help="steps of the eager run")
    p.add_argument("--fp16-steps", type=int, default=30, help="steps of the fp16 + scaler run")
    p.add_argument(
        "--compile-modes",
        default="default,reduce-overhead",
        help="torch.compile modes of the variants, comma-separated ('' for none)",
    )
    p.add_argument("--scaling-pairs", default="32,64,128,256,512,1024", help="batch sizes")
    p.add_argument("--square", type=int, default=8192, help="matrix: the square product's size")
    p.add_argument("--copy-mib", type=int, default=1024, help="matrix: MiB copied")
    p.add_argument("--device", default="cuda")
    args = p.parse_args(argv)

    import torch

    from vit1d.bench.gpu import matrix_rates, step_variants
    from vit1d.bench.training import scaling
    from vit1d.models.model import ViT1D
    from vit1d.pretrain.train import pretrain

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device visible to torch; pass --device cpu to try the path on a CPU")
        return 2
    t0 = time.time()
    data = Path(args.data) if args.data else None
    if data is None:
        data = write_synthetic_pool(out / "pool", args.tracks, args.seconds)
    print(f"pool ready in {time.time() - t0:.0f} s: {data}", flush=True)

    report: dict = {"argv": sys.argv[1:], "data": str(data)}
    device = torch.device(args.device)

    def save() -> None:
        tmp = out / "gpu_check.json.tmp"
        tmp.write_text(json.dumps(report, indent=2))
        tmp.replace(out / "gpu_check.json")

    torch.manual_seed(0)
    report["matrix"] = matrix_rates(ViT1D(), args.pairs, device, args.square, args.copy_mib)
    print(report["matrix"], flush=True)
    save()
    scaling_pairs = [int(p) for p in args.scaling_pairs.split(",") if p]
    report["scaling"] = scaling(device, "bf16", True, scaling_pairs, [], args.pairs)
    print(report["scaling"], flush=True)
    save()

    runs = {
        "paper": ([], args.steps),
        "paper_eager": (["train.compile=false"], args.eager_steps),
        "paper_fp16": (["train.precision=fp16"], args.fp16_steps),
    }
    for name, (extra, steps) in runs.items():
        if steps <= 0:
            continue
        run_dir = out / name
        sets = [
            f"train.steps={steps}",
            f"train.checkpoint_every={steps}",
            "train.snapshot_fractions=[]",
            f"train.device={args.device}",
            *extra,
        ]
        if args.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        t1 = time.time()
        pretrain(
            "paper", data, run_dir, overrides=sets, resume="auto", progress=sys.stderr.isatty()
        )
        run = json.loads((run_dir / "run.json").read_text())
        run["wall_s_including_cache_and_compile"] = round(time.time() - t1, 1)
        report[name] = run
        print(
            f"{name}: {run['views_per_s_median']:.0f} views/s median ({run['precision']}, "
            f"{run['attention']} attention), peak GPU memory "
            f"{run.get('gpu_peak_memory_gib', 'n/a')} GiB, loss {run['first_loss']:.3f} -> "
            f"{run['final_loss']:.3f}",
            flush=True,
        )
        save()
    modes = tuple(m for m in args.compile_modes.split(",") if m)
    report["variants"] = step_variants(device, args.pairs, args.bench_steps, compile_modes=modes)
    print(json.dumps(report["variants"]["views_per_s"], indent=1), flush=True)
    save()
    report["summary"] = summary(report)
    print(json.dumps(report["summary"], indent=1))
    save()
    print(f"written: {out / 'gpu_check.json'} ({time.time() - t0:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
