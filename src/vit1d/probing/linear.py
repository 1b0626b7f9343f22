"""Linear probes on frozen features (:class:`LinearProbes`) and their settings
(:class:`ProbeConfig`): the exact solver (full-batch L-BFGS for each weight of an L2 grid, the
weight of lowest validation loss kept) and the group's Adam protocol, each probe an independent
linear layer of one stacked product (the protocol is in :mod:`vit1d.probing.probe`'s docstring).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from vit1d.models.device import torch_threads

# ----------------------------------------------------------------------------------------------
# The probes
# ----------------------------------------------------------------------------------------------


@dataclass
class ProbeConfig:
    """Probe settings: the exact solver by default, the group's Adam protocol as an option."""

    lr: float = 1e-3
    batch_size: int = 128
    steps_per_epoch: int = 128
    max_epochs: int = 50
    patience: int = 5
    min_delta: float = 0.0  # a validation loss must fall by more than this to count as better
    max_train_frames: int = 100_000  # local tasks: frames drawn from the training files
    max_valid_frames: int = 20_000  # local tasks: frames for the early-stopping loss
    # local tasks: at most this many train, valid and test files (0 = all): frame tokens of
    # every layer take L * 31.25 * D * 2 bytes per second of audio (4.7 MB/min for ViT-Tiny)
    max_local_files: tuple[int, int, int] = (200, 50, 150)
    # global tasks: the same cap (0 = all files; lowers extraction time on large corpora)
    max_global_files: tuple[int, int, int] = (0, 0, 0)
    memory_mb: int = 1024  # features held at once; local tasks train layers in chunks
    n_boot: int = 1000  # bootstrap replicates of the summary
    n_boot_tagging: int = 500  # tagging recomputes macro AUC/AP per replicate (slower)
    # torch threads while training: 1, because these small matrix products run 10-100x slower
    # with two threads on a busy 2-core machine (threads wait on each other); 0 = leave as is
    threads: int = 1
    # tasks fitted at once, each in its own thread with ``threads`` torch threads (the
    # matrix products release the GIL), and the processes that decode a local task's tracks
    # (vit1d.probing.scoring); 0 = one per CPU core. Results do not depend on it.
    workers: int = 0
    # "lbfgs" (exact, LinearProbes docs; one fit per view) or "adam" (the group's protocol:
    # the epoch, batch and patience settings above, one fit per seed); vit1d.probing.solvers compares
    solver: str = "lbfgs"
    # the solver of local (frame-level) tasks: their ~1e5 training frames make every L-BFGS
    # iteration a pass over all of them (400 passes per probe: over 9 minutes for one model's
    # chords and beats on a 2-core CPU), where Adam's epochs see 128 batches of 128 frames
    local_solver: str = "adam"
    l2: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1)  # lbfgs: L2 weights tried, best on valid
    max_iter: int = 100  # lbfgs: L-BFGS iterations at most per L2 weight


# L-BFGS curvature pairs kept by the exact solver: its memory is 2 x this many copies of the
# stacked weights (torch's default of 100 would hold 200, over 100 MB for a large stack)
LBFGS_HISTORY = 20


def standardise(x: Any) -> tuple[Any, Any]:
    """Mean and standard deviation (floored at 1e-6) over rows of ``(N, D)``, in float64."""
    x64 = x.double()
    return x64.mean(0).float(), x64.std(0, unbiased=False).clamp_min(1e-6).float()


class LinearProbes:
    """``G`` independent linear probes ``logits = x W[g] + b[g]`` on views of the features.

    ``views[g]`` says which feature matrix group ``g`` reads, ``seeds[g]`` seeds its
    initialisation (PyTorch's ``nn.Linear`` default, uniform in +-1/sqrt(D)) and its batch
    order. ``loss``: ``softmax`` (cross-entropy, targets -1 ignored) or ``sigmoid`` (binary
    cross-entropy on targets in [0, 1], optionally with a positive weight).

    :meth:`fit` with ``solver="lbfgs"`` solves each group exactly instead: for every ``l2`` of
    ``cfg.l2``, ``min_{W,b} mean_n loss(x_n W + b, y_n) + l2 * ||W||_F^2`` (bias not
    penalised) by full-batch L-BFGS, keeping the ``l2`` of lowest validation loss. The problem
    is convex, so it can be solved to convergence rather than approached by epochs of Adam
    (the L2 weight chosen on valid takes the place of early stopping); the groups' objectives
    are separable, so one L-BFGS over their sum solves them all at once.
    """

    def __init__(
        self,
        views: Sequence[int],
        seeds: Sequence[int],
        dim: int,
        n_out: int,
        loss: str,
        pos_weight: float | None = None,
    ) -> None:
        if loss not in ("softmax", "sigmoid"):
            raise ValueError(f"unknown probe loss {loss!r}")
        self.views = torch.as_tensor(list(views), dtype=torch.long)
        self.seeds = [int(s) for s in seeds]
        self.loss = loss
        self.dim, self.n_out = dim, n_out
        self.pos_weight = None if pos_weight is None else torch.tensor(float(pos_weight))
        bound = 1.0 / math.sqrt(dim)
        weights, biases = [], []
        for s in self.seeds:
            g = torch.Generator().manual_seed(s)
            weights.append((torch.rand(dim, n_out, generator=g) * 2 - 1) * bound)
            biases.append((torch.rand(n_out, generator=g) * 2 - 1) * bound)
        self.weight = torch.stack(weights)
        self.bias = torch.stack(biases)
        self.best_epoch = np.zeros(len(self.seeds), dtype=int)
        self.epochs_run = 0
        self.chosen_l2 = np.full(len(self.seeds), np.nan)  # lbfgs only: the L2 weight kept

    @property
    def n_groups(self) -> int:
        return len(self.seeds)

    def view_groups(self) -> list[tuple[int, list[int]]]:
        """``(view, groups reading it)`` for every view: groups of one view share its input,
        so their logits come from one product."""
        return [
            (v, torch.nonzero(self.views == v).flatten().tolist())
            for v in torch.unique(self.views).tolist()
        ]

    def _group_loss(self, logits: Any, y: Any, dtype: Any = None) -> Any:
        """Mean loss per group: ``logits`` ``(G, B, C)``, targets ``(G, B)`` or ``(G, B, C)``.

        ``dtype``: average the per-example losses in this dtype (the exact solver's float64:
        near the minimum, a float32 mean cannot resolve the decreases L-BFGS looks for).
        """
        if self.loss == "softmax":
            g, b, c = logits.shape
            per = F.cross_entropy(
                logits.reshape(g * b, c), y.reshape(-1), ignore_index=-1, reduction="none"
            ).reshape(g, b)
            valid = (y >= 0).float()
            if dtype is not None:
                per, valid = per.to(dtype), valid.to(dtype)
            return (per * valid).sum(1) / valid.sum(1).clamp_min(1.0)
        if y.dim() == logits.dim() - 1:
            y = y.unsqueeze(-1)
        per = F.binary_cross_entropy_with_logits(
            logits, y, pos_weight=self.pos_weight, reduction="none"
        )
        if dtype is not None:
            per = per.to(dtype)
        return per.mean(dim=(1, 2))

    def logits(self, x: Any, groups: Sequence[int]) -> Any:
        """``(len(groups), N, C)`` logits of groups that share the input ``x`` ``(N, D)``."""
        idx = torch.as_tensor(list(groups), dtype=torch.long)
        return torch.einsum("nd,gdc->gnc", x, self.weight[idx]) + self.bias[idx][:, None, :]

    def view_blocks(self, n_rows: int, memory_mb: int) -> list[tuple[Any, Any]]:
        """The groups as ``(views (V,), groups (V, K))`` blocks: ``K`` groups read each view of
        a block, so one batched product ``(V, N, D) x (V, D, K*C)`` gives all their logits with
        no copy of the input. Blocks are cut so that their logits (and the gradients of them)
        take about ``memory_mb``; views read by different numbers of groups go to different
        blocks."""
        by_k: dict[int, list[tuple[int, list[int]]]] = {}
        for v, groups in self.view_groups():
            by_k.setdefault(len(groups), []).append((v, groups))
        blocks = []
        for k, members in sorted(by_k.items()):
            per_view = 3 * 4 * n_rows * k * self.n_out  # logits, their gradient, the loss terms
            size = max(1, int(memory_mb * 2**20 // max(per_view, 1)))
            for start in range(0, len(members), size):
                part = members[start : start + size]
                vs = torch.as_tensor([v for v, _ in part], dtype=torch.long)
                blocks.append((vs, torch.as_tensor([g for _, g in part], dtype=torch.long)))
        return blocks

    def _block_loss(self, x: Any, y: Any, weight: Any, bias: Any, views: Any, groups: Any) -> Any:
        """Float64 mean loss of every group of one :meth:`view_blocks` block, ``(V*K,)`` in
        the order of ``groups.flatten()``: ``x`` ``(V_all, N, D)``, targets ``y`` shared."""
        v, k = groups.shape
        c = self.n_out
        # (V, K, D, C) -> (V, D, K*C): the K groups' weights side by side
        w = weight[groups].permute(0, 2, 1, 3).reshape(v, weight.shape[1], k * c)
        logits = torch.bmm(x[views], w).reshape(v, -1, k, c) + bias[groups][:, None, :, :]
        logits = logits.permute(0, 2, 1, 3).reshape(v * k, -1, c)
        targets = y.unsqueeze(0).expand(v * k, *y.shape)
        return self._group_loss(logits, targets, torch.float64)

    def valid_loss(self, xva: Any, yva: Any) -> Any:
        """Loss of every group on the whole validation set ``(V, N, D)``."""
        out = torch.empty(self.n_groups)
        with torch.no_grad():
            for v, groups in self.view_groups():
                logits = self.logits(xva[v], groups)
                y = yva.unsqueeze(0).expand(len(groups), *yva.shape)
                out[groups] = self._group_loss(logits, y)
        return out

    def fit(
        self, xtr: Any, ytr: Any, xva: Any, yva: Any, cfg: ProbeConfig, desc: str | None = None
    ) -> None:
        """Train every group at once with ``cfg.solver``.

        ``adam``: epochs of ``steps_per_epoch`` batches, early stopping per group on the
        validation loss; each group ends with its best epoch's weights. ``lbfgs``: the exact
        solution for each L2 weight of ``cfg.l2``; each group ends with the one of lowest
        validation loss (``chosen_l2``; ``best_epoch`` and ``epochs_run`` then count L-BFGS
        iterations).

        ``xtr`` ``(V, N, D)`` and ``xva`` standardised float32; ``ytr``/``yva`` targets.
        ``desc``: show a progress bar with this label. Runs with ``cfg.threads`` torch threads.
        """
        if cfg.solver not in ("adam", "lbfgs"):
            raise ValueError(f"unknown probe solver {cfg.solver!r}; use 'adam' or 'lbfgs'")
        with torch_threads(cfg.threads):
            if cfg.solver == "adam":
                self._fit(xtr, ytr, xva, yva, cfg, desc)
            else:
                self._fit_exact(xtr, ytr, xva, yva, cfg, desc)

    def _fit(self, xtr: Any, ytr: Any, xva: Any, yva: Any, cfg: ProbeConfig, desc: str | None):
        n = xtr.shape[1]
        batch = min(cfg.batch_size, n)
        weight = torch.nn.Parameter(self.weight.clone())
        bias = torch.nn.Parameter(self.bias.clone())
        opt = torch.optim.Adam([weight, bias], lr=cfg.lr)
        best_w, best_b = self.weight.clone(), self.bias.clone()
        best = torch.full((self.n_groups,), float("inf"))
        bad = np.zeros(self.n_groups, dtype=int)
        stopped = np.zeros(self.n_groups, dtype=bool)
        unique_seeds = sorted(set(self.seeds))
        rngs = {s: np.random.default_rng(s) for s in unique_seeds}
        pending = {s: np.zeros(0, dtype=np.int64) for s in unique_seeds}
        seed_row = {s: k for k, s in enumerate(unique_seeds)}
        rows = torch.as_tensor([seed_row[s] for s in self.seeds])
        need = cfg.steps_per_epoch * batch
        flat = xtr.reshape(-1, xtr.shape[-1])
        bar = tqdm(total=cfg.max_epochs, desc=desc, unit="epoch", disable=desc is None, leave=False)
        for epoch in range(cfg.max_epochs):
            order = []
            for s in unique_seeds:  # each seed's own stream of shuffled passes over the data
                while len(pending[s]) < need:
                    pending[s] = np.concatenate([pending[s], rngs[s].permutation(n)])
                order.append(pending[s][:need])
                pending[s] = pending[s][need:]
            order_t = torch.from_numpy(np.stack(order))[rows]  # (G, need)
            for step in range(cfg.steps_per_epoch):
                idx = order_t[:, step * batch : (step + 1) * batch]  # (G, B)
                # rows of the flattened (V N, D) features: index_select copies them several
                # times faster than indexing (V, N, D) with two index tensors
                x = flat.index_select(0, (self.views[:, None] * n + idx).flatten())
                x = x.view(*idx.shape, -1)  # (G, B, D)
                logits = torch.baddbmm(bias[:, None, :], x, weight)
                loss = self._group_loss(logits, ytr[idx]).sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            self.weight, self.bias = weight.detach(), bias.detach()
            current = self.valid_loss(xva, yva)
            improved = (current < best - cfg.min_delta) & torch.from_numpy(~stopped)
            for g in torch.nonzero(improved).flatten().tolist():
                best[g] = current[g]
                best_w[g], best_b[g] = weight.detach()[g], bias.detach()[g]
                self.best_epoch[g] = epoch + 1
                bad[g] = 0
            not_improved = ~improved.numpy() & ~stopped
            bad[not_improved] += 1
            stopped |= bad >= cfg.patience
            self.epochs_run = epoch + 1
            bar.update(1)
            bar.set_postfix(active=int((~stopped).sum()))
            if stopped.all():
                break
        bar.close()
        self.weight, self.bias = best_w, best_b

    def _fit_exact(
        self, xtr: Any, ytr: Any, xva: Any, yva: Any, cfg: ProbeConfig, desc: str | None
    ) -> None:
        """Full-batch L-BFGS of every group's penalised mean loss, once per L2 weight.

        The weights go from the largest L2 weight to the smallest, each solve warm-started
        from the previous solution (the first from the seeded initialisation): a strongly
        penalised problem is well conditioned and its solution is a good start for the next.
        """
        grid = sorted({float(a) for a in cfg.l2}, reverse=True)
        if not grid or grid[-1] < 0 or not all(math.isfinite(a) for a in grid):
            raise ValueError(f"lbfgs needs finite L2 weights >= 0, got {cfg.l2!r}")
        if cfg.max_iter < 1:
            raise ValueError(f"lbfgs needs max_iter >= 1, got {cfg.max_iter}")
        weight = torch.nn.Parameter(self.weight.clone())
        bias = torch.nn.Parameter(self.bias.clone())
        blocks = self.view_blocks(xtr.shape[1], cfg.memory_mb)

        def objective(l2: float) -> Any:
            # float32 products, float64 sums: the value's rounding must stay below the
            # decreases of the last iterations, or the line search stops L-BFGS early
            loss = torch.zeros((), dtype=torch.float64)
            for vs, idx in blocks:
                part = self._block_loss(xtr, ytr, weight, bias, vs, idx).sum()
                part.backward()  # one block's graph at a time
                loss += part.detach()
            penalty = l2 * weight.double().pow(2).sum()
            penalty.backward()
            return loss + penalty.detach()

        best_w, best_b = self.weight.clone(), self.bias.clone()
        best = torch.full((self.n_groups,), float("inf"))
        self.chosen_l2 = np.full(self.n_groups, np.nan)
        iterations = 0
        bar = tqdm(total=len(grid), desc=desc, unit="l2", disable=desc is None, leave=False)
        for l2 in grid:
            # a fresh curvature history: the objective changed with the L2 weight
            opt = torch.optim.LBFGS(
                [weight, bias],
                lr=1.0,
                max_iter=cfg.max_iter,
                history_size=LBFGS_HISTORY,
                line_search_fn="strong_wolfe",
            )

            def closure(l2: float = l2, opt: Any = opt) -> Any:
                opt.zero_grad(set_to_none=True)
                return objective(l2)

            # torch's tolerances: stops when the gradient (1e-7) or the change of the value or
            # of the step (1e-9) vanishes, or after max_iter iterations
            opt.step(closure)
            iterations += int(opt.state[weight].get("n_iter", 0))
            self.weight, self.bias = weight.detach(), bias.detach()
            current = self.valid_loss(xva, yva)
            for g in torch.nonzero(current < best).flatten().tolist():
                best[g] = current[g]
                best_w[g], best_b[g] = weight.detach()[g], bias.detach()[g]
                self.chosen_l2[g] = l2
                self.best_epoch[g] = iterations
            self.epochs_run = iterations
            bar.update(1)
        bar.close()
        self.weight, self.bias = best_w, best_b
