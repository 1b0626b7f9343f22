"""The masked-modelling foil: BEST-RQ-style prediction of quantised masked frames.

The paper argues that local MIR tasks do not need masked modelling, but never trains a
masked model under the same conditions. This module supplies one for the same backbone.

Why BEST-RQ (Chiu et al., 2022), the objective MusicFM uses for music: its targets come from
a *frozen random-projection quantiser*, so it needs no teacher, no second network and no
extra compute beyond one matrix product, which keeps the comparison at equal compute honest;
and it is a classification loss, as robust in bf16 as NT-Xent. Reconstruction (MAE-style)
of log-mel frames would push the model toward loudness detail that no probe asks for.

* **Targets.** Each log-mel frame ``x_t`` (standardised with the model's fixed input
  statistics) is projected by a frozen random matrix ``P`` (``n_mels x code_dim``, Xavier
  normal) and assigned the index of the nearest code of a frozen random codebook ``C``
  (``codebook_size x code_dim``, standard normal) after l2 normalisation of both:
  ``y_t = argmax_k <P^T x_t / |P^T x_t|, C_k / |C_k|>``. ``P`` and ``C`` are drawn from a
  seeded generator, so targets are a pure function of (seed, audio).
* **Masking.** Spans of ``mask_span`` consecutive frames are replaced by a learned mask
  token after the frame projection, until exactly ``round(mask_ratio * T)`` frames are masked.
* **Loss.** The backbone's output tokens at masked positions go through a linear head to
  ``codebook_size`` logits; cross-entropy with ``y_t``, averaged over masked frames only.

Used by ``vit1d pretrain --objective masked`` (:mod:`vit1d.pretrain.train`) and the book's
"beyond the paper" chapter.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def span_mask(
    batch: int,
    frames: int,
    ratio: float,
    span: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """Boolean mask ``(batch, frames)`` with exactly ``round(ratio * frames)`` True per row,
    made of spans of ``span`` frames at random positions (the last span may be cut short)."""
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"mask ratio must be in (0, 1), got {ratio}")
    target = max(1, round(ratio * frames))
    span = max(1, min(span, frames))
    mask = torch.zeros(batch, frames, dtype=torch.bool)
    n_slots = -(-frames // span)
    for b in range(batch):
        # spans on a grid of slots, shifted by a random phase so boundaries vary per row
        phase = int(torch.randint(0, span, (1,), generator=generator))
        order = torch.randperm(n_slots + 1, generator=generator)
        count = 0
        for slot in order.tolist():
            start = slot * span - phase
            lo, hi = max(0, start), min(frames, start + span)
            if hi <= lo:
                continue
            fresh = (~mask[b, lo:hi]).nonzero().flatten() + lo
            take = fresh[: target - count]
            mask[b, take] = True
            count += len(take)
            if count >= target:
                break
    return mask


class RandomProjectionQuantizer(nn.Module):
    """Frozen BEST-RQ quantiser: log-mel frames -> code indices (see module docstring)."""

    def __init__(
        self,
        n_mels: int = 128,
        code_dim: int = 16,
        codebook_size: int = 1024,
        seed: int = 0,
        input_mean: float = -40.0,
        input_std: float = 20.0,
    ) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        std = (2.0 / (n_mels + code_dim)) ** 0.5  # Xavier normal
        self.register_buffer("projection", torch.randn(n_mels, code_dim, generator=g) * std)
        codebook = torch.randn(codebook_size, code_dim, generator=g)
        self.register_buffer("codebook", F.normalize(codebook, dim=-1))
        self.input_mean, self.input_std = input_mean, input_std

    @torch.no_grad()
    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """``(B, T, n_mels)`` dB -> ``(B, T)`` int64 codes (computed in fp32)."""
        x = (mel.float() - self.input_mean) / self.input_std
        z = F.normalize(x @ self.projection, dim=-1)
        return (z @ self.codebook.T).argmax(dim=-1)


class MaskedForward(nn.Module):
    """Views with hidden frames -> code logits ``(M, K)`` at the ``M`` hidden positions.

    Wraps a :class:`vit1d.ViT1D` built with ``mask_token=True`` and a linear head to the
    codebook (``vit1d.pretrain.config.model_config`` builds it so)."""

    def __init__(self, model: nn.Module, fused: bool = True) -> None:
        super().__init__()
        self.model = model
        self.fused = fused

    def forward(self, mel: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out = self.model(mel, frame_mask=mask, fused=self.fused)
        return self.model.head(out.tokens[mask])


def masked_prediction_loss(logits: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy (in fp32) between the logits ``(M, K)`` of the ``M`` masked frames
    and their codes ``(M,)``; unmasked frames never reach it (the caller selects with the
    mask before the head, which also spares the head's compute on visible frames)."""
    if logits.shape[0] == 0:
        raise ValueError("the mask selects no frame; the masked loss would be undefined")
    return F.cross_entropy(logits.float(), codes)
