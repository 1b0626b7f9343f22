"""The optimisation recipe of pretraining (docs/design.md, "Model and training facts"): per step
``s`` of ``S``, the learning rate rises linearly over ``warmup_steps`` then follows a cosine
from ``lr`` to ``min_lr``; weight decay follows a cosine from ``weight_decay`` to
``weight_decay_end``, on weight matrices only."""

from __future__ import annotations

import math
from typing import Any

from torch import nn

from vit1d.pretrain.config import Config


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
