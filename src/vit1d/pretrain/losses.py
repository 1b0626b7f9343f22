r"""NT-Xent, the SimCLR contrastive loss, with gradients through views gathered across ranks.

Convention
----------
Two views ``z1, z2`` of shape ``(N, D)`` describe the same ``N`` items: row ``i`` of ``z1``
and row ``i`` of ``z2`` are a positive pair; every other row is a negative. Stack them into
``2N`` views :math:`u_1, \dots, u_{2N}` (first ``z1``, then ``z2``), so the positive of
view ``k`` is :math:`p(k) = k + N` for :math:`k \le N` and :math:`k - N` otherwise. With
cosine similarity and a temperature :math:`\tau > 0`,

.. math::

    s_{kj} = \frac{u_k^\top u_j}{\lVert u_k \rVert \, \lVert u_j \rVert \, \tau},
    \qquad
    \ell_k = -\log \frac{\exp s_{k\,p(k)}}{\sum_{j \ne k} \exp s_{kj}}
           = \operatorname{logsumexp}_{j \ne k} s_{kj} - s_{k\,p(k)},
    \qquad
    \mathcal{L} = \frac{1}{2N} \sum_{k=1}^{2N} \ell_k .

Each of the ``2N`` views is scored against the ``2N - 1`` others (its positive included,
itself excluded): it is a cross-entropy over ``2N - 1`` candidates with the positive as the
target. The loss is symmetric (both ``z1 -> z2`` and ``z2 -> z1`` directions are anchors)
and is the mean over the ``2N`` anchors. With ``N = 1`` the positive is the only candidate
and the loss is exactly 0. Self-similarity is excluded by setting :math:`s_{kk} = -\infty`
before the log-sum-exp; the masks are built from the actual batch size on every call.

Numerics: the views are L2-normalised (``F.normalize`` with an ``eps``, so a zero vector
gives no NaN) and the whole similarity / log-sum-exp runs in float32 (float64 inputs stay
float64) with autocast disabled, whatever the input dtype (bf16 / fp16 under autocast).

Distributed behaviour
---------------------
When ``torch.distributed`` is initialised with a world size above 1 and
``gather_distributed=True``, the normalised views of all ranks are gathered (ranks may hold
different batch sizes, e.g. a last smaller batch) into ``2 N_total`` candidates, ordered
``[z1 of rank 0, z1 of rank 1, ..., z2 of rank 0, z2 of rank 1, ...]``, so the global
candidate set is the single-process one on the concatenated batch. The gather is
differentiable: its backward all-reduces (sums) the gradient arriving at the gathered
tensor over ranks and hands each rank its own slice.

Each rank scores only its own ``2 N_local`` anchors against all ``2 N_total`` candidates,
sums their terms and divides by the *global* count ``2 N_total``; the per-rank parts thus
sum to the global loss. The value returned is ``local + (sum_over_ranks(local) - local)``
with the bracket detached, so on every rank

* the returned **value** equals the global single-process loss, and
* the **gradient** with respect to this rank's views equals the gradient of the global loss
  with respect to those views (every rank must call ``backward``: it is a collective).

Under ``DistributedDataParallel``, which *averages* parameter gradients over ranks, the
parameter gradient therefore comes out as the global-loss gradient divided by the world
size; multiply the loss by :func:`ddp_loss_scale` before ``backward`` to get the gradient
of the global loss itself (or keep the average and scale the learning rate instead)::

    loss = criterion(z1, z2)
    (loss * ddp_loss_scale()).backward()
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

__all__ = ["NTXent", "ddp_loss_scale"]

_NORM_EPS = 1e-12


def _distributed_world_size() -> int:
    """World size when ``torch.distributed`` is available and initialised, else 1."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def ddp_loss_scale() -> int:
    """Factor to multiply the NT-Xent loss by before ``backward`` under DDP.

    DDP averages parameter gradients over ranks; since every rank's view gradients already
    are those of the global loss, the average is the global gradient divided by the world
    size. Returns the world size when ``torch.distributed`` is initialised, else 1.
    """
    return _distributed_world_size()


class _GatherWithGrad(torch.autograd.Function):
    """All-gather rows of ``(n_r, ...)`` tensors of unequal ``n_r``, keeping gradients.

    Forward: pad this rank's tensor to the largest size, ``all_gather``, drop the padding and
    concatenate in rank order. Backward: sum the incoming gradient over all ranks
    (``all_reduce``) and return this rank's slice, so each rank's input receives the
    gradient of the sum of all ranks' objectives.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, sizes: list[int], rank: int) -> torch.Tensor:
        max_n = max(sizes)
        x = x.contiguous()
        if x.shape[0] < max_n:
            pad = x.new_zeros((max_n - x.shape[0], *x.shape[1:]))
            x = torch.cat([x, pad], dim=0)
        parts = [torch.empty_like(x) for _ in sizes]
        dist.all_gather(parts, x)
        ctx.sizes = sizes
        ctx.rank = rank
        return torch.cat([p[:n] for p, n in zip(parts, sizes, strict=True)], dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start : start + ctx.sizes[ctx.rank]], None, None


class NTXent(nn.Module):
    """NT-Xent (SimCLR) loss on two ``(N, D)`` views; see the module docstring.

    Args:
        temperature: softmax temperature :math:`\\tau > 0` dividing the cosine similarities.
        gather_distributed: under ``torch.distributed`` with more than one rank, use the views
            of all ranks as candidates (with gradients) and return the global loss.
    """

    def __init__(self, temperature: float = 0.1, gather_distributed: bool = True) -> None:
        super().__init__()
        temperature = float(temperature)
        if not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"NTXent temperature must be a finite number > 0, got {temperature}")
        self.temperature = temperature
        self.gather_distributed = bool(gather_distributed)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, gather_distributed={self.gather_distributed}"

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        """Return the scalar loss for positive pairs ``(z1[i], z2[i])``.

        Args:
            z1: ``(N, D)`` first views (any floating dtype, any device).
            z2: ``(N, D)`` second views, same shape as ``z1``.

        Returns:
            A 0-d float32 tensor (float64 for float64 inputs): the global loss.
        """
        if z1.dim() != 2 or z2.dim() != 2 or z1.shape != z2.shape:
            raise ValueError(
                "NTXent expects z1 and z2 as 2-D (N, D) tensors of the same shape, got "
                f"z1 {tuple(z1.shape)} and z2 {tuple(z2.shape)}"
            )
        dtype = torch.promote_types(torch.promote_types(z1.dtype, z2.dtype), torch.float32)
        with torch.autocast(device_type=z1.device.type, enabled=False):
            a1 = F.normalize(z1.to(dtype), dim=1, eps=_NORM_EPS)
            a2 = F.normalize(z2.to(dtype), dim=1, eps=_NORM_EPS)
            world = _distributed_world_size()
            if self.gather_distributed and world > 1:
                return self._distributed_loss(a1, a2)
            n = a1.shape[0]
            if n == 0:
                raise ValueError("NTXent needs at least one pair, got an empty batch")
            loss_sum = self._sum_terms(torch.cat([a1, a2]), a1, a2, n_total=n, offset=0)
            return loss_sum / (2 * n)

    def _distributed_loss(self, a1: torch.Tensor, a2: torch.Tensor) -> torch.Tensor:
        """Global loss with candidates gathered from all ranks (see module docstring)."""
        rank = dist.get_rank()
        n_local = torch.tensor([a1.shape[0]], device=a1.device, dtype=torch.long)
        gathered = [torch.zeros_like(n_local) for _ in range(dist.get_world_size())]
        dist.all_gather(gathered, n_local)
        sizes = [int(s.item()) for s in gathered]
        n_total = sum(sizes)
        if n_total == 0:
            raise ValueError("NTXent needs at least one pair over all ranks, got none")
        offset = sum(sizes[:rank])
        g1 = _GatherWithGrad.apply(a1, sizes, rank)
        g2 = _GatherWithGrad.apply(a2, sizes, rank)
        candidates = torch.cat([g1, g2])
        local = self._sum_terms(candidates, a1, a2, n_total=n_total, offset=offset)
        local = local / (2 * n_total)
        total = local.detach().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return local + (total - local.detach())

    def _sum_terms(
        self,
        candidates: torch.Tensor,
        a1: torch.Tensor,
        a2: torch.Tensor,
        n_total: int,
        offset: int,
    ) -> torch.Tensor:
        """Sum of the per-anchor terms of the local anchors ``[a1; a2]``.

        ``candidates`` is ``(2 n_total, D)``, ordered ``[all z1; all z2]``; local row ``i`` of
        ``a1`` sits at ``offset + i`` and its positive at ``n_total + offset + i``.
        """
        n = a1.shape[0]
        anchors = torch.cat([a1, a2])
        logits = anchors @ candidates.T / self.temperature
        idx = torch.arange(n, device=anchors.device) + offset
        self_idx = torch.cat([idx, idx + n_total])
        pos_idx = torch.cat([idx + n_total, idx])
        rows = torch.arange(2 * n, device=anchors.device)
        self_mask = torch.zeros_like(logits, dtype=torch.bool)
        self_mask[rows, self_idx] = True
        logits = logits.masked_fill(self_mask, float("-inf"))
        positive = logits[rows, pos_idx]
        return (torch.logsumexp(logits, dim=1) - positive).sum()
