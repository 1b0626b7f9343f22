"""Run-time precision choice and the benchmark's report."""

from __future__ import annotations

import json
import os
from dataclasses import replace

import pytest
import torch

from vit1d import UserError
from vit1d.bench.suite import table
from vit1d.bench.training import run
from vit1d.models import device


@pytest.fixture
def fake_cpu(monkeypatch):
    def _set(avx512_bf16: bool, amx: bool, speedup: float) -> None:
        info = replace(device.cpu_info(), avx512_bf16=avx512_bf16, amx=amx)
        monkeypatch.setattr(device, "cpu_info", lambda: info)
        monkeypatch.setattr(device, "cpu_bf16_speedup", lambda: speedup)

    return _set


def test_avx2_only_cpu_stays_fp32(fake_cpu) -> None:
    fake_cpu(avx512_bf16=False, amx=False, speedup=5.0)  # flags decide before any probe
    assert device.choose_precision(torch.device("cpu")) == "fp32"


@pytest.mark.parametrize("speedup, expected", [(2.0, "bf16"), (1.1, "fp32"), (0.01, "fp32")])
def test_native_bf16_needs_measured_gain(fake_cpu, speedup: float, expected: str) -> None:
    fake_cpu(avx512_bf16=False, amx=True, speedup=speedup)
    assert device.choose_precision(torch.device("cpu")) == expected


def test_explicit_precision_and_errors() -> None:
    cpu = torch.device("cpu")
    assert device.choose_precision(cpu, "bf16") == "bf16"
    with pytest.raises(UserError, match="CUDA"):
        device.choose_precision(cpu, "fp16")
    with pytest.raises(UserError, match="precision"):
        device.choose_precision(cpu, "int8")


def test_cpu_info_is_recorded() -> None:
    info = device.cpu_info()
    assert info.model and info.cores >= 1
    summary = device.hardware_summary(torch.device("cpu"))
    assert summary["cpu"]["model"] == info.model and summary["threads"] >= 1


def test_bench_writes_json_and_table(tmp_path) -> None:
    result = run(
        tmp_path,
        pairs=2,
        steps=2,
        warmup=1,
        clips=2,
        reps=2,
        model_kwargs={"dim": 32, "depth": 1, "heads": 2, "head_dims": [32]},
    )
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["hardware"]["cpu"]["model"] == device.cpu_info().model
    for key in ("train_speedup", "inference_speedup"):
        assert saved[key] > 0
    ratio = saved["train_views_per_s"]["project"] / saved["train_views_per_s"]["reference"]
    assert saved["train_speedup"] == pytest.approx(ratio, rel=1e-2)
    assert "training views/s" in table(result)


def test_attention_path_choice() -> None:
    cpu = torch.device("cpu")
    assert device.choose_fused_attention(cpu, "fp32") is True
    assert device.choose_fused_attention(cpu, "bf16") is False
    assert device.choose_fused_attention(torch.device("cuda"), "bf16") is True


TINY_MODEL = {"dim": 32, "depth": 1, "heads": 2, "head_dims": [32]}


def test_activation_memory_grows_linearly_with_the_batch() -> None:
    from vit1d.bench.training import saved_activation_bytes
    from vit1d.models.model import ViT1D

    cpu = torch.device("cpu")
    torch.manual_seed(0)
    model = ViT1D(**TINY_MODEL)
    sizes = {}
    for n in (4, 8, 16):
        x = torch.randn(n, model.max_frames, model.n_mels)
        sizes[n] = saved_activation_bytes(model, x, cpu, "fp32", False)
    # every saved activation has a batch dimension: doubling the batch doubles the bytes
    assert sizes[8] == pytest.approx(2 * sizes[4], rel=0.02)
    assert sizes[16] == pytest.approx(2 * sizes[8], rel=0.02)
    # at least the input of the first linear layer (n x frames x mels floats) is saved
    assert sizes[4] >= 4 * model.max_frames * model.n_mels * 4
    # and nothing is left switched off: autograd still records afterwards
    assert model(torch.randn(1, 10, 128)).cls.requires_grad


@pytest.mark.slow  # the profiler and every benchmark of the quick suite
def test_bench_suite_writes_every_part(tmp_path) -> None:
    from vit1d.bench.suite import run_suite

    result = run_suite(tmp_path, quick=True, model_kwargs=TINY_MODEL, corpus=False, variants=True)
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["suite"] == "quick" and saved["hardware"]["cpu"]["model"]
    rows = saved["scaling"]
    assert [r["axis"] for r in rows] == ["batch"] * 3 + ["frames"] * 2
    assert all(r["views_per_s"] > 0 for r in rows)
    by_frames = {r["frames"]: r["activation_mib"] for r in rows if r["axis"] == "frames"}
    assert by_frames[126] > 2 * by_frames[32]  # longer sequences save more activations
    prof = saved["profile"]
    shares = [e["share"] for e in prof["top"]]
    assert shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 1.0 + 1e-6
    # the categories partition the profiled time: a training step multiplies matrices
    assert sum(c["share"] for c in prof["categories"].values()) == pytest.approx(1.0, abs=1e-3)
    assert prof["categories"]["matrix products"]["ms"] > 0
    pf = saved["probe_fitting"]
    assert pf["probes"] == 8 and pf["speedup"] == pytest.approx(
        pf["seconds"]["reference"] / pf["seconds"]["project"], rel=0.05
    )
    tv = saved["training_variants"]
    assert tv["ratio_to_fp32_eager"]["fp32 eager"] == 1.0
    assert set(tv["views_per_s"]) >= {"autocast bf16", "pure bf16, fp32 masters"}
    assert tv["matmul_ceiling"]["bf16_to_fp32"] > 0
    cs = saved["chord_scoring"]
    assert cs["tracks"] == 4 and cs["max_abs_difference"] < 1e-12 and cs["speedup"] > 0
    text = table(result)
    assert "probe fitting" in text and "activation MiB" in text and "fp32 masters" in text
    assert "chord scoring" in text and "matrix products" in text and "1024 x 1024" in text


def test_matmul_ceiling_times_the_models_mlp_products() -> None:
    """The products are the MLP's of a training batch, and the ratio is that of the rates."""
    from vit1d.bench.training import matmul_ceiling
    from vit1d.models.model import ViT1D

    model = ViT1D(**TINY_MODEL)
    out = matmul_ceiling(model, pairs=2, reps=3, warmup=1, square=64)
    rows, hidden = 2 * 2 * (1 + model.max_frames), int(model.dim * model.config["mlp_ratio"])
    assert out["shapes"] == {"up": [rows, model.dim, hidden], "down": [rows, hidden, model.dim]}
    rates = out["gflop_per_s"]
    assert rates["fp32"] > 0 and rates["bf16"] > 0
    assert out["bf16_to_fp32"] == pytest.approx(rates["bf16"] / rates["fp32"], rel=0.02)
    square = out["square_gflop_per_s"]
    assert out["square"] == 64 and square["fp32"] > 0 and square["bf16"] > 0
    assert out["square_bf16_to_fp32"] == pytest.approx(square["bf16"] / square["fp32"], rel=0.02)


def test_pure_bf16_step_updates_fp32_masters_and_casts_them_back() -> None:
    """After a step the bf16 weights are the fp32 masters rounded, and the masters moved."""
    from vit1d.bench.training import pure_bf16_training_step
    from vit1d.models.model import ViT1D

    torch.manual_seed(0)
    model = ViT1D(**TINY_MODEL)
    before = [p.detach().clone() for p in model.parameters()]
    step = pure_bf16_training_step(model, pairs=2, fused=False)
    step()
    params = list(model.parameters())
    assert all(p.dtype == torch.bfloat16 for p in params)
    assert all(m.dtype == torch.float32 for m in step.masters)
    assert any(not torch.equal(m.detach(), b) for m, b in zip(step.masters, before, strict=True))
    for m, p in zip(step.masters, params, strict=True):
        assert torch.equal(m.detach().to(torch.bfloat16), p.detach())


def test_torch_threads_sets_and_restores() -> None:
    before = torch.get_num_threads()
    with device.torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with device.torch_threads(0):  # 0: leave it as it is
        assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), device.torch_threads(1):
        raise RuntimeError("restored even on error")
    assert torch.get_num_threads() == before


def test_precision_env_fixes_what_auto_means_on_the_cpu(fake_cpu, monkeypatch) -> None:
    """``VIT1D_PRECISION`` overrides the measurement (the book holds one decision for all
    chapters); a bad value is refused with the values it takes."""
    cpu = torch.device("cpu")
    fake_cpu(avx512_bf16=True, amx=False, speedup=5.0)
    monkeypatch.setenv(device.PRECISION_ENV, "fp32")
    assert device.choose_precision(cpu) == "fp32"
    assert device.choose_precision(cpu, "bf16") == "bf16"  # an explicit choice still wins
    fake_cpu(avx512_bf16=True, amx=False, speedup=1.0)
    monkeypatch.setenv(device.PRECISION_ENV, "bf16")
    assert device.choose_precision(cpu) == "bf16"
    monkeypatch.setenv(device.PRECISION_ENV, "half")
    with pytest.raises(UserError, match="use fp32 or bf16"):
        device.choose_precision(cpu)
    monkeypatch.delenv(device.PRECISION_ENV)
    assert device.choose_precision(cpu) == "fp32"  # measured: 1.0x is not worth bf16


def test_pipeline_holds_one_precision_for_every_chapter(monkeypatch) -> None:
    """The book's pipeline measures once and sets ``VIT1D_PRECISION`` while it runs; a value
    the user set is kept."""
    from vit1d.book.execute import one_precision

    calls = []
    monkeypatch.setattr(device, "choose_precision", lambda d, p: calls.append(p) or "bf16")
    monkeypatch.setattr(device, "select_device", lambda name: torch.device("cpu"))
    monkeypatch.delenv(device.PRECISION_ENV, raising=False)
    with one_precision(lambda msg: None):
        assert os.environ[device.PRECISION_ENV] == "bf16"
    assert device.PRECISION_ENV not in os.environ and calls == ["auto"]
    monkeypatch.setenv(device.PRECISION_ENV, "fp32")
    with one_precision(lambda msg: None):
        assert os.environ[device.PRECISION_ENV] == "fp32"
    assert calls == ["auto"]  # nothing measured when the user chose


def test_scaling_measures_a_point_on_both_axes_once(monkeypatch) -> None:
    from vit1d.bench import training
    from vit1d.models.model import ViT1D

    calls = []
    real = training._scaling_point

    def counted(model, *args):
        calls.append(model.max_frames)
        return real(model, *args)

    monkeypatch.setattr(training, "_scaling_point", counted)
    frames = ViT1D(**TINY_MODEL).max_frames
    rows = training.scaling(
        torch.device("cpu"), "fp32", False, pairs=[1, 2], frames=[8, frames], base_pairs=2,
        steps=1, warmup=0, model_kwargs=TINY_MODEL,
    )  # fmt: skip
    assert [(r["axis"], r["pairs"], r["frames"]) for r in rows] == [
        ("batch", 1, frames), ("batch", 2, frames), ("frames", 2, 8), ("frames", 2, frames)
    ]  # fmt: skip
    assert len(calls) == 3  # (2 pairs, default frames) is timed for the batch axis only
    shared = [{k: v for k, v in r.items() if k != "axis"} for r in (rows[1], rows[3])]
    assert shared[0] == shared[1]
