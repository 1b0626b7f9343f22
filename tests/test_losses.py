"""Tests for :mod:`vit1d.pretrain.losses` (NT-Xent) against an independent NumPy reference.

The reference below is written from the SimCLR formula, in float64, without calling the
module. The distributed tests spawn two ``gloo`` processes on 127.0.0.1 and compare each
rank's loss value and gradients with the single-process loss on the concatenated batch.
"""

from __future__ import annotations

import datetime
import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from vit1d.models.model import ViT1D
from vit1d.pretrain.config import load_config
from vit1d.pretrain.losses import NTXent, ddp_loss_scale
from vit1d.pretrain.objectives import Contrastive, ContrastiveForward

# --------------------------------------------------------------------------------------
# Independent reference
# --------------------------------------------------------------------------------------


def ntxent_numpy(z1: np.ndarray, z2: np.ndarray, temperature: float) -> float:
    """NT-Xent from the formula: each of the 2N views against the 2N-1 others, mean."""
    z = np.concatenate([z1, z2]).astype(np.float64)
    norms = np.sqrt((z**2).sum(axis=1, keepdims=True))
    u = z / np.maximum(norms, 1e-12)
    n = z1.shape[0]
    total = 0.0
    for k in range(2 * n):
        positive = (k + n) % (2 * n)
        sims = np.array([u[k] @ u[j] / temperature for j in range(2 * n) if j != k])
        m = sims.max()
        log_denominator = m + np.log(np.exp(sims - m).sum())
        total += log_denominator - u[k] @ u[positive] / temperature
    return total / (2 * n)


def _views(n: int, d: int, seed: int, dtype: torch.dtype = torch.float64):
    g = torch.Generator().manual_seed(seed)
    z1 = torch.randn(n, d, generator=g, dtype=torch.float64).to(dtype)
    z2 = torch.randn(n, d, generator=g, dtype=torch.float64).to(dtype)
    return z1, z2


def test_reference_is_sensitive():
    """Sanity check of the reference itself: identical views give a lower loss."""
    z1, z2 = _views(6, 8, 0)
    a = ntxent_numpy(z1.numpy(), z2.numpy(), 0.1)
    b = ntxent_numpy(z1.numpy(), z1.numpy() + 1e-3 * z2.numpy(), 0.1)
    assert b < a
    # N = 1: the positive is the only candidate.
    assert ntxent_numpy(z1[:1].numpy(), z2[:1].numpy(), 0.5) == pytest.approx(0.0, abs=1e-12)


# --------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [0.1, 0.5, 1.0])
@pytest.mark.parametrize("n", [1, 2, 7, 128])
@pytest.mark.parametrize(
    ("dtype", "rtol"), [(torch.float64, 1e-5), (torch.float32, 1e-4)], ids=["f64", "f32"]
)
def test_matches_numpy(temperature: float, n: int, dtype: torch.dtype, rtol: float):
    d = 16 if n % 2 else 32
    z1, z2 = _views(n, d, seed=1000 + n, dtype=dtype)
    loss = NTXent(temperature=temperature)(z1, z2)
    expected = ntxent_numpy(z1.double().numpy(), z2.double().numpy(), temperature)
    assert loss.dim() == 0
    assert loss.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert loss.item() == pytest.approx(expected, rel=rtol, abs=1e-6 if n == 1 else 0)


def test_single_pair_is_exactly_zero():
    z1, z2 = _views(1, 8, 3, dtype=torch.float32)
    z1.requires_grad_(True)
    z2.requires_grad_(True)
    loss = NTXent(0.1)(z1, z2)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(z1.grad).all() and torch.isfinite(z2.grad).all()


def test_batch_size_changes_between_calls():
    """Masks are built per call: one module, several batch sizes."""
    crit = NTXent(0.2)
    for n in [4, 9, 1, 4, 3]:
        z1, z2 = _views(n, 12, seed=n)
        expected = ntxent_numpy(z1.numpy(), z2.numpy(), 0.2)
        assert crit(z1, z2).item() == pytest.approx(expected, rel=1e-10, abs=1e-12)


def test_known_value_orthogonal_views():
    """Hand-computable case: two pairs of identical one-hot views, t = 1."""
    z = torch.eye(2, dtype=torch.float64)
    # Each anchor: positive sim 1, the two others 0 -> log(e + 2) - 1.
    expected = np.log(np.e + 2.0) - 1.0
    assert NTXent(1.0)(z, z.clone()).item() == pytest.approx(expected, rel=1e-12)


# --------------------------------------------------------------------------------------
# Gradients
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [0.1, 0.7])
def test_gradcheck(temperature: float):
    z1, z2 = _views(3, 5, seed=7)
    z1.requires_grad_(True)
    z2.requires_grad_(True)
    crit = NTXent(temperature)
    assert torch.autograd.gradcheck(lambda a, b: crit(a, b), (z1, z2), eps=1e-6, atol=1e-6)


def test_gradient_matches_finite_differences_of_reference():
    """Gradient of the module vs central differences of the NumPy reference."""
    z1, z2 = _views(4, 3, seed=11)
    z1.requires_grad_(True)
    z2.requires_grad_(True)
    NTXent(0.3)(z1, z2).backward()
    a, b = z1.detach().numpy().copy(), z2.detach().numpy().copy()
    h = 1e-6
    for arr, grad in [(a, z1.grad.numpy()), (b, z2.grad.numpy())]:
        for idx in np.ndindex(arr.shape):
            old = arr[idx]
            arr[idx] = old + h
            up = ntxent_numpy(a, b, 0.3)
            arr[idx] = old - h
            down = ntxent_numpy(a, b, 0.3)
            arr[idx] = old
            assert grad[idx] == pytest.approx((up - down) / (2 * h), abs=1e-6)


# --------------------------------------------------------------------------------------
# Low precision, autocast, degenerate rows
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("dtype", "tol"), [(torch.bfloat16, 5e-2), (torch.float16, 5e-3)])
def test_low_precision_inputs(dtype: torch.dtype, tol: float):
    z1, z2 = _views(32, 16, seed=5, dtype=torch.float32)
    crit = NTXent(0.1)
    ref = crit(z1, z2)
    l1 = z1.to(dtype).requires_grad_(True)
    l2 = z2.to(dtype).requires_grad_(True)
    loss = crit(l1, l2)
    assert loss.dtype == torch.float32
    assert torch.isfinite(loss)
    # Computed in fp32: identical to the loss of the up-cast rounded inputs...
    rounded = crit(l1.detach().float(), l2.detach().float())
    assert loss.item() == pytest.approx(rounded.item(), rel=1e-6)
    # ...and close to the fp32 loss, up to the input rounding.
    assert loss.item() == pytest.approx(ref.item(), abs=tol)
    loss.backward()
    assert l1.grad.dtype == dtype and l2.grad.dtype == dtype
    assert torch.isfinite(l1.grad.float()).all() and torch.isfinite(l2.grad.float()).all()


def test_autocast_is_disabled_inside():
    """Under CPU bf16 autocast the similarities must still be computed in fp32."""
    z1, z2 = _views(64, 32, seed=9, dtype=torch.float32)
    crit = NTXent(0.05)
    ref = crit(z1, z2)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        loss = crit(z1, z2)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_zero_and_tiny_rows_give_no_nan(dtype: torch.dtype):
    z1, z2 = _views(5, 8, seed=2, dtype=torch.float32)
    z1[0] = 0.0
    z2[3] = 0.0
    z2[1] = 1e-4  # its squares underflow in fp16; fp32 normalisation must survive
    z1 = z1.to(dtype).requires_grad_(True)
    z2 = z2.to(dtype).requires_grad_(True)
    loss = NTXent(0.1)(z1, z2)
    assert torch.isfinite(loss)
    loss.backward()
    g1, g2 = z1.grad.float(), z2.grad.float()
    assert not torch.isnan(g1).any() and not torch.isnan(g2).any()
    # Nonzero rows get finite gradients. An exactly zero row sits where x / max(|x|, eps) has
    # slope 1 / eps: its gradient is finite but huge in fp32/bf16 and overflows fp16 (inf).
    assert torch.isfinite(g1[1:]).all() and torch.isfinite(g2[[0, 1, 2, 4]]).all()
    if dtype != torch.float16:
        assert torch.isfinite(g1).all() and torch.isfinite(g2).all()
    # A zero view has cosine 0 with everything: check against the reference.
    expected = ntxent_numpy(z1.detach().double().numpy(), z2.detach().double().numpy(), 0.1)
    assert loss.item() == pytest.approx(expected, rel=1e-4)


# --------------------------------------------------------------------------------------
# Symmetries and validation
# --------------------------------------------------------------------------------------


def test_swap_symmetry():
    z1, z2 = _views(10, 16, seed=4)
    crit = NTXent(0.1)
    assert crit(z1, z2).item() == pytest.approx(crit(z2, z1).item(), rel=1e-12)


def test_permutation_invariance():
    z1, z2 = _views(10, 16, seed=4)
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(0))
    crit = NTXent(0.1)
    assert crit(z1, z2).item() == pytest.approx(crit(z1[perm], z2[perm]).item(), rel=1e-12)
    # A permutation of one view only breaks the pairs and changes the loss.
    assert crit(z1, z2).item() != pytest.approx(crit(z1, z2[perm]).item(), rel=1e-6)


def test_scale_invariance():
    z1, z2 = _views(6, 16, seed=8)
    crit = NTXent(0.1)
    assert crit(z1, z2).item() == pytest.approx(crit(3.0 * z1, 0.25 * z2).item(), rel=1e-12)


@pytest.mark.parametrize(
    ("s1", "s2"),
    [((4, 8), (4, 9)), ((4, 8), (5, 8)), ((8,), (8,)), ((2, 4, 8), (2, 4, 8)), ((4, 8), (8,))],
)
def test_bad_shapes_raise(s1, s2):
    with pytest.raises(ValueError, match="shape"):
        NTXent()(torch.randn(*s1), torch.randn(*s2))


def test_empty_batch_raises():
    with pytest.raises(ValueError):
        NTXent()(torch.randn(0, 8), torch.randn(0, 8))


@pytest.mark.parametrize("temperature", [0.0, -0.1, float("nan"), float("inf")])
def test_bad_temperature_raises(temperature: float):
    with pytest.raises(ValueError, match="temperature"):
        NTXent(temperature=temperature)


def test_ddp_loss_scale_without_distributed():
    if dist.is_available() and dist.is_initialized():
        pytest.skip("a process group is already initialised in this process")
    assert ddp_loss_scale() == 1


# --------------------------------------------------------------------------------------
# Two-process gloo tests
# --------------------------------------------------------------------------------------

WORLD = 2
D_EMB = 6
D_IN = 5
TEMPERATURE = 0.2
SPLITS = {"equal": (4, 4), "unequal": (5, 3), "one": (1, 6)}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _global_data(n_total: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "z1": torch.randn(n_total, D_EMB, generator=g, dtype=torch.float64),
        "z2": torch.randn(n_total, D_EMB, generator=g, dtype=torch.float64),
        "x1": torch.randn(n_total, D_IN, generator=g, dtype=torch.float64),
        "x2": torch.randn(n_total, D_IN, generator=g, dtype=torch.float64),
    }


def _encoder() -> nn.Linear:
    torch.manual_seed(123)
    return nn.Linear(D_IN, D_EMB).double()


def _dist_worker(rank: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=WORLD,
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        results: dict[str, torch.Tensor] = {"scale": torch.tensor(ddp_loss_scale())}
        crit = NTXent(TEMPERATURE)
        for name, sizes in SPLITS.items():
            data = _global_data(sum(sizes), seed=len(name))
            lo = sum(sizes[:rank])
            hi = lo + sizes[rank]
            # (a, b) loss value and view gradients.
            z1 = data["z1"][lo:hi].clone().requires_grad_(True)
            z2 = data["z2"][lo:hi].clone().requires_grad_(True)
            loss = crit(z1, z2)
            loss.backward()
            results[f"{name}/loss"] = loss.detach()
            results[f"{name}/g1"] = z1.grad
            results[f"{name}/g2"] = z2.grad
            # gather_distributed=False: a purely local loss.
            results[f"{name}/local"] = NTXent(TEMPERATURE, gather_distributed=False)(
                z1.detach(), z2.detach()
            )
            # (c) DDP: parameter gradients of the global loss.
            ddp = nn.parallel.DistributedDataParallel(_encoder())
            x = torch.cat([data["x1"][lo:hi], data["x2"][lo:hi]])
            e1, e2 = ddp(x).split(hi - lo)
            (crit(e1, e2) * ddp_loss_scale()).backward()
            results[f"{name}/ddp_w"] = ddp.module.weight.grad.clone()
            results[f"{name}/ddp_b"] = ddp.module.bias.grad.clone()
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def dist_results(tmp_path_factory) -> list[dict[str, torch.Tensor]]:
    if not (dist.is_available() and dist.is_gloo_available()):
        pytest.skip("torch.distributed with gloo is not available")
    out_dir = tmp_path_factory.mktemp("ntxent_dist")
    mp.spawn(_dist_worker, args=(_free_port(), str(out_dir)), nprocs=WORLD, join=True)
    return [torch.load(out_dir / f"rank{r}.pt") for r in range(WORLD)]


def _single_process(name: str) -> dict[str, torch.Tensor]:
    sizes = SPLITS[name]
    data = _global_data(sum(sizes), seed=len(name))
    z1 = data["z1"].clone().requires_grad_(True)
    z2 = data["z2"].clone().requires_grad_(True)
    loss = NTXent(TEMPERATURE)(z1, z2)
    loss.backward()
    enc = _encoder()
    x = torch.cat([data["x1"], data["x2"]])
    e1, e2 = enc(x).split(sum(sizes))
    NTXent(TEMPERATURE)(e1, e2).backward()
    return {
        "loss": loss.detach(),
        "numpy": torch.tensor(ntxent_numpy(data["z1"].numpy(), data["z2"].numpy(), TEMPERATURE)),
        "g1": z1.grad,
        "g2": z2.grad,
        "ddp_w": enc.weight.grad,
        "ddp_b": enc.bias.grad,
    }


@pytest.mark.slow  # dist_results spawns two gloo processes
def test_distributed_scale(dist_results):
    for res in dist_results:
        assert int(res["scale"]) == WORLD


@pytest.mark.slow  # dist_results spawns two gloo processes
@pytest.mark.parametrize("name", list(SPLITS))
def test_distributed_matches_single_process(dist_results, name: str):
    ref = _single_process(name)
    assert ref["loss"].item() == pytest.approx(ref["numpy"].item(), rel=1e-10)
    sizes = SPLITS[name]
    for rank, res in enumerate(dist_results):
        lo = sum(sizes[:rank])
        hi = lo + sizes[rank]
        # (a) every rank returns the global loss value.
        torch.testing.assert_close(res[f"{name}/loss"], ref["loss"], rtol=0, atol=1e-6)
        # (b) gradient of the global loss w.r.t. this rank's slice.
        torch.testing.assert_close(res[f"{name}/g1"], ref["g1"][lo:hi], rtol=0, atol=1e-6)
        torch.testing.assert_close(res[f"{name}/g2"], ref["g2"][lo:hi], rtol=0, atol=1e-6)
        # gather_distributed=False gives this rank's own single-process loss.
        data = _global_data(sum(sizes), seed=len(name))
        local = ntxent_numpy(data["z1"][lo:hi].numpy(), data["z2"][lo:hi].numpy(), TEMPERATURE)
        assert res[f"{name}/local"].item() == pytest.approx(local, rel=1e-10, abs=1e-12)
        # (c) DDP with the loss scaled by ddp_loss_scale(): global-loss parameter gradients.
        torch.testing.assert_close(res[f"{name}/ddp_w"], ref["ddp_w"], rtol=0, atol=1e-6)
        torch.testing.assert_close(res[f"{name}/ddp_b"], ref["ddp_b"], rtol=0, atol=1e-6)


def test_twin_head_loss_is_the_mean_of_two_nt_xent_terms():
    """``loss.twin_head``: views (anchor, crop, twin); the loss is the mean of NT-Xent of
    (anchor, crop) through the first head and of (anchor, twin) through the twin head."""
    torch.manual_seed(0)
    model = ViT1D(n_mels=16, dim=16, depth=1, heads=2, max_frames=8, head_dims=[12], twin_head=True)
    n = 5
    views = torch.randn(3 * n, 8, 16) * 20 - 40
    cfg = load_config(
        "smoke", {"loss": {"temperature": 0.2, "twin_head": True}, "data": {"twin_prob": 1.0}}
    )
    got = Contrastive(cfg, torch.device("cpu"), "fp32").loss(
        ContrastiveForward(model), views, n, step=0
    )
    with torch.no_grad():
        cls = model(views).cls
        z = model.head(cls).double().numpy()
        t = model.twin_head(cls).double().numpy()
    expected = 0.5 * (ntxent_numpy(z[:n], z[n : 2 * n], 0.2) + ntxent_numpy(t[:n], t[2 * n :], 0.2))
    assert got.item() == pytest.approx(expected, rel=1e-5)
    # the twin head is used: the same views through the first head only give another loss
    one_head = 0.5 * (ntxent_numpy(z[:n], z[n : 2 * n], 0.2) + ntxent_numpy(z[:n], z[2 * n :], 0.2))
    assert abs(one_head - expected) > 1e-3
    got.backward()
    assert all(p.grad is not None for p in model.twin_head.parameters())
