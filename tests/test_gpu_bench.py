"""vit1d.bench.gpu and vit1d.bench.timing: kernel categories, a step's busy time against its
wall time, the ceilings, the variants' table and the appendix's reading of GPU records (run
on a CPU, where operators stand in for kernels)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from vit1d.bench.gpu import breakdown_table, matrix_rates, record_row, step_variants
from vit1d.bench.timing import kernel_category, step_breakdown
from vit1d.bench.training import training_step
from vit1d.models.model import ViT1D

TINY = {"dim": 32, "depth": 2, "heads": 2, "head_dims": [64, 32], "max_frames": 16}


@pytest.mark.parametrize(
    "name, category",
    [
        (
            "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64_warpgroupsize1x1x1",
            "matrix products",
        ),
        ("nvjet_tst_128x64_64x8_1x2_h_bz_coopA_NTN", "matrix products"),
        ("aten::addmm", "matrix products"),
        ("void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<64, 128>>", "attention"),
        ("fmha_cutlassB_bf16_aligned_64x64_k64_sm80", "attention"),
        ("cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma_f16_knob_3", "attention"),
        ("void at::native::multi_tensor_apply_kernel<FusedAdamMathFunctor<float, 4>>", "optimizer"),
        ("triton_per_fused_native_layer_norm_0", "norm and reductions"),
        ("void at::native::(anonymous)::cunn_SoftMaxForward<4, float>", "norm and reductions"),
        ("triton_poi_fused_gelu_1", "element-wise"),
        (
            "void at::native::vectorized_elementwise_kernel<4, CUDAFunctor_add<float>>",
            "element-wise",
        ),
        (
            "void at::native::unrolled_elementwise_kernel<bfloat16_copy_kernel_cuda>",
            "copies and casts",
        ),
        ("Memcpy DtoD (Device -> Device)", "copies and casts"),
        ("some_custom_kernel", "other"),
    ],
)
def test_kernel_categories(name: str, category: str) -> None:
    assert kernel_category(name) == category


def test_step_breakdown_adds_up_on_a_cpu() -> None:
    torch.manual_seed(0)
    step = training_step(ViT1D(**TINY), torch.device("cpu"), "fp32", False, pairs=2)
    b = step_breakdown(step, torch.device("cpu"), calls=2)
    cats = b["categories"]
    assert b["wall_ms"] > 0 and b["kernels_per_step"] > 10
    assert sum(c["ms"] for c in cats.values()) == pytest.approx(b["busy_ms"], rel=0.01, abs=0.01)
    assert sum(c["share"] for c in cats.values()) == pytest.approx(1.0, abs=0.01)
    assert "matrix products" in cats and "optimizer" in cats
    # the operators run inside the step; the profiler's own cost per operator (timed in the
    # busy time, not in the wall time) can lift a tiny model's fraction a little above 1
    assert 0.2 < b["busy_fraction"] < 3
    assert b["busy_ms"] == pytest.approx(b["busy_fraction"] * b["wall_ms"], rel=0.01, abs=0.01)


def test_matrix_rates_intensity_is_the_formula() -> None:
    torch.manual_seed(0)
    model = ViT1D(**TINY)
    r = matrix_rates(model, pairs=2, device=torch.device("cpu"), square=128, copy_mib=1)
    rows = 2 * 2 * (1 + 16)
    assert (r["rows"], r["dim"], r["hidden"]) == (rows, 32, 128)
    m, k, n = rows, 32, 128
    assert r["mlp_up_flop_per_byte"] == round(m * k * n / (m * k + k * n + m * n), 1)
    assert r["square_flop_per_byte"] == round(128**3 / (3 * 128**2), 1)
    assert all(r[key] > 0 for key in ("mlp_up_tflops", "mlp_down_tflops", "square_tflops"))
    assert r["copy_gb_per_s"] > 0


def test_step_variants_are_ratios_to_the_reference() -> None:
    out = step_variants(
        torch.device("cpu"), pairs=2, steps=2, warmup=1, compile_modes=(), model_kwargs=TINY
    )
    views = out["views_per_s"]
    assert set(views) == {"fp32 eager (reference)", "bf16 eager", "bf16 eager, fused AdamW"}
    assert out["ratio_to_fp32_eager"]["fp32 eager (reference)"] == 1.0
    ref = views["fp32 eager (reference)"]
    for name, ratio in out["ratio_to_fp32_eager"].items():
        assert ratio == pytest.approx(views[name] / ref, rel=0.01)
    assert set(out["breakdown"]) == {"bf16 eager"}  # the compiled one was not run


def test_the_appendix_reads_both_record_layouts() -> None:
    """The first GPU record (benchmark in ``bench_compile``) and the current one
    (``variants`` with breakdowns, an eager real loop) give the same columns."""
    root = Path(__file__).resolve().parents[1]
    first = json.loads((root / "bench/records/gpu_check-h200-2026-11-26.json").read_text())
    row = record_row(first, paper_steps=511_488)
    assert row["views/s (median)"] == round(first["paper"]["views_per_s_median"])
    assert row["compiled vs fp32 eager"] == first["bench_compile"]["train_speedup"]
    hours = 511_488 * 256 / first["paper"]["views_per_s_median"] / 3600
    assert row["hours for the paper's steps"] == pytest.approx(hours, abs=0.05)
    assert breakdown_table(first) == {}

    variants = step_variants(
        torch.device("cpu"), pairs=2, steps=1, warmup=1, compile_modes=(), model_kwargs=TINY,
        breakdown_of=("bf16 eager, fused AdamW",),
    )  # fmt: skip
    variants["ratio_to_fp32_eager"]["bf16 compiled, fused AdamW"] = 2.5  # as if compiled
    variants["breakdown"]["bf16 compiled, fused AdamW"] = variants["breakdown"].pop(
        "bf16 eager, fused AdamW"
    )
    current = {**first, "variants": variants, "paper_eager": {"views_per_s_median": 9000.4}}
    current.pop("bench_compile")
    row2 = record_row(current, paper_steps=511_488)
    assert set(row2) == set(row)
    assert row2["compiled vs fp32 eager"] == 2.5 and row2["views/s eager"] == 9000
    b = variants["breakdown"]["bf16 compiled, fused AdamW"]
    assert row2["GPU busy (compiled step)"] == b["busy_fraction"]
    table = breakdown_table(current)["bf16 compiled, fused AdamW"]
    assert table["kernels' busy time"] == b["busy_ms"]
    assert sum(v for k, v in table.items() if k in b["categories"]) == pytest.approx(
        b["busy_ms"], abs=0.02
    )
