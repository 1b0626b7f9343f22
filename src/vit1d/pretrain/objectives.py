"""The two pretraining objectives behind one interface, so the training loop has no branch on
which one it runs (docs/design.md, "Model and training facts").

An :class:`Objective` gives the module a step runs (the unit DDP and ``torch.compile`` wrap)
and the loss of one batch of ``2n`` views, the first ``n`` and the last ``n`` being the two
views of ``n`` tracks:

* :class:`Contrastive`: both views through the backbone, the projected class tokens, NT-Xent
  against the other tracks of the (global) batch (:class:`vit1d.pretrain.losses.NTXent`);
  with ``loss.twin_head`` a batch holds ``3n`` views (the anchor, a crop of the same render,
  a twin render) and the loss is the mean of two NT-Xent terms, anchor against crop through
  the first head and anchor against twin through the twin head (LooC's separate embedding
  spaces per invariance; Xiao et al., "What should not be contrastive in contrastive
  learning", ICLR 2021);
* :class:`MaskedPrediction`: the foil (:mod:`vit1d.pretrain.masked`): spans of frames masked,
  the backbone predicts the codes a frozen random-projection quantiser gives the masked
  frames; same views, steps and sequence length, so equal compute by construction.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from vit1d.models.device import autocast
from vit1d.models.model import ViT1D
from vit1d.pretrain.config import Config
from vit1d.pretrain.losses import NTXent, ddp_loss_scale
from vit1d.pretrain.masked import (
    MaskedForward,
    RandomProjectionQuantizer,
    masked_prediction_loss,
    span_mask,
)


class ContrastiveForward(nn.Module):
    """Both views in one batch -> projected class tokens (the unit DDP and compile wrap).

    With the model's twin head, ``3n`` views (anchor, crop, twin) -> the anchors and crops
    through the first head, then the anchors and twins through the twin head (``4n`` rows)."""

    def __init__(self, model: ViT1D, fused: bool = True) -> None:
        super().__init__()
        self.model = model
        self.fused = fused

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        cls = self.model(mel, fused=self.fused).cls
        if self.model.twin_head is None:
            return self.model.project(cls)
        n = len(cls) // 3
        twin_pairs = torch.cat([cls[:n], cls[2 * n :]])
        return torch.cat([self.model.project(cls[: 2 * n]), self.model.project(twin_pairs, True)])


class Objective:
    """What a pretraining step optimises; subclasses give the module and the batch loss."""

    def __init__(self, device: torch.device, precision: str) -> None:
        self.device = device
        self.precision = precision

    def module(self, model: ViT1D, fused: bool) -> nn.Module:
        raise NotImplementedError

    def loss(self, step_fn: nn.Module, views: torch.Tensor, n: int, step: int) -> torch.Tensor:
        """The loss of ``views`` (``2n`` log-mel crops on the device) at ``step``."""
        raise NotImplementedError

    def backward_scale(self) -> float:
        """Factor on the loss before ``backward``, so DDP's gradient average is the loss's."""
        return 1.0


class Contrastive(Objective):
    """NT-Xent on the projected class tokens of the two views (with ``loss.twin_head``: of
    the anchor and the crop through the first head, of the anchor and the twin through the
    twin head, averaged)."""

    def __init__(self, cfg: Config, device: torch.device, precision: str) -> None:
        super().__init__(device, precision)
        self.nt_xent = NTXent(cfg.loss.temperature)
        self.twin_head = cfg.loss.twin_head

    def module(self, model: ViT1D, fused: bool) -> nn.Module:
        return ContrastiveForward(model, fused=fused)

    def loss(self, step_fn: nn.Module, views: torch.Tensor, n: int, step: int) -> torch.Tensor:
        with autocast(self.device, self.precision):
            z = step_fn(views)
        if self.twin_head:  # z: (anchor, crop) through the first head, (anchor, twin) the twin's
            return 0.5 * (
                self.nt_xent(z[:n], z[n : 2 * n]) + self.nt_xent(z[2 * n : 3 * n], z[3 * n :])
            )
        return self.nt_xent(z[:n], z[n:])

    def backward_scale(self) -> float:
        # NT-Xent returns the global loss (vit1d.pretrain.losses): DDP's average needs a scale
        return ddp_loss_scale()


class MaskedPrediction(Objective):
    """Codes of masked spans predicted from the rest (BEST-RQ style, the foil)."""

    def __init__(self, cfg: Config, device: torch.device, precision: str, rank: int) -> None:
        super().__init__(device, precision)
        self.cfg = cfg
        self.rank = rank
        self.quantizer = RandomProjectionQuantizer(
            cfg.model.n_mels,
            cfg.loss.code_dim,
            cfg.loss.codebook_size,
            cfg.seed,
            cfg.model.input_mean,
            cfg.model.input_std,
        ).to(device)

    def module(self, model: ViT1D, fused: bool) -> nn.Module:
        return MaskedForward(model, fused=fused)

    def loss(self, step_fn: nn.Module, views: torch.Tensor, n: int, step: int) -> torch.Tensor:
        codes = self.quantizer(views)
        # the mask is a pure function of (seed, step, rank), like the batch: exact resume
        seed = int(np.random.default_rng([self.cfg.seed, step, self.rank]).integers(2**62))
        gen = torch.Generator().manual_seed(seed)
        loss_cfg = self.cfg.loss
        mask = span_mask(2 * n, views.shape[1], loss_cfg.mask_ratio, loss_cfg.mask_span, gen)
        mask = mask.to(self.device)
        with autocast(self.device, self.precision):
            logits = step_fn(views, mask)
        return masked_prediction_loss(logits, codes[mask])


def make_objective(cfg: Config, device: torch.device, precision: str, rank: int) -> Objective:
    """The objective ``cfg.loss.objective`` names (``contrastive`` or ``masked``)."""
    if cfg.loss.objective == "masked":
        return MaskedPrediction(cfg, device, precision, rank)
    return Contrastive(cfg, device, precision)
