"""The whole benchmark suite (what ``make bench`` and the reproducibility appendix run) and
its printed tables."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from vit1d.bench.tasks import chord_scoring, corpus_rendering, probe_fitting
from vit1d.bench.timing import step_breakdown
from vit1d.bench.training import run, scaling, training_step, training_variants
from vit1d.models.device import select_device
from vit1d.models.model import ViT1D


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
    result["profile"] = step_breakdown(
        training_step(ViT1D(**(model_kwargs or {})), device, precision, fused, 4 if quick else 16),
        device,
        calls=2,
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


def category_shares(breakdown: dict[str, Any]) -> str:
    """A :func:`~vit1d.bench.timing.step_breakdown`'s categories and their shares, in a line."""
    return ", ".join(f"{c} {v['share']:.0%}" for c, v in breakdown["categories"].items())


def variants_table(tv: dict[str, Any]) -> list[str]:
    """The lines of :func:`table` for :func:`~vit1d.bench.training.training_variants`: each
    step's views/s and ratio, the matrix units' ceilings, and where the steps' time goes."""
    lines = [
        "",
        "| training step on the CPU | views/s | ratio to fp32 eager |",
        "|---|---|---|",
    ]
    lines += [
        f"| {name} | {v:.1f} | {tv['ratio_to_fp32_eager'][name]:.2f}x |"
        for name, v in tv["views_per_s"].items()
    ]
    mc = tv.get("matmul_ceiling")
    if mc:
        lines.append(
            f"| (the model's matrix products: fp32 {mc['gflop_per_s']['fp32']:.0f}, bf16 "
            f"{mc['gflop_per_s']['bf16']:.0f} GFLOP/s) | | {mc['bf16_to_fp32']:.2f}x |"
        )
    if mc and "square_gflop_per_s" in mc:
        n, rates = mc["square"], mc["square_gflop_per_s"]
        lines.append(
            f"| (a {n} x {n} product: fp32 {rates['fp32']:.0f}, bf16 {rates['bf16']:.0f} "
            f"GFLOP/s) | | {mc['square_bf16_to_fp32']:.2f}x |"
        )
    if tv.get("products_bound"):
        lines.append(
            "| (autocast bf16 if all but its matrix products took no time) | | "
            f"{tv['products_bound']:.2f}x |"
        )
    for name, b in tv.get("breakdown", {}).items():
        lines.append(f"\nwhere a {name} step's time goes: {category_shares(b)}")
    return lines


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
        lines += variants_table(result["training_variants"])
    if result.get("scaling"):
        lines += ["", "| pairs | frames | views/s | activation MiB |", "|---|---|---|---|"]
        lines += [
            f"| {r['pairs']} | {r['frames']} | {r['views_per_s']:.1f} | {r['activation_mib']} |"
            for r in result["scaling"]
        ]
    if result.get("profile"):
        prof = result["profile"]
        lines += ["", f"where a training step's time goes: {category_shares(prof)}"]
        lines += [f"  {e['share']:6.1%}  {e['kernel']}" for e in prof["top"][:6]]
    return "\n".join(lines)
