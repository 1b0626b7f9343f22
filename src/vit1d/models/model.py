"""ViT-1D: a vision transformer whose patches are single spectrogram frames.

Architecture (ViT-Tiny sizes; docs/design.md, "Model and training facts"):

* each log-mel frame (all ``n_mels`` bands) is one token, linearly projected to ``dim``;
* the class token is a learned vector **plus the mean of the projected frame tokens**,
  prepended at position 0;
* learned absolute positional embeddings for ``1 + max_frames`` positions;
* ``depth`` pre-norm blocks ``x + MHSA(LN(x))``, ``x + MLP(LN(x))`` with GELU and MLP ratio 4;
* a final LayerNorm; ``.cls`` and ``.tokens`` are read after it.

An optional projection head (``head="mlp"`` or ``"linear"``) maps the class token to the
space the contrastive loss sees (:meth:`ViT1D.project`); it is not part of the backbone and
the analyses never use it. ``twin_head=True`` adds a second head of the same shape for the
twin pairs of a run whose twin renders are a third view (``loss.twin_head``,
:mod:`vit1d.pretrain.objectives`).

Attention has two paths that give the same outputs: PyTorch's fused
``scaled_dot_product_attention`` when attention maps are not requested, and an explicit
softmax path that returns them. Used by: every notebook; ``notebooks/01_method.ipynb``
describes it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vit1d.core.provenance import is_head_parameter


@dataclass
class ModelConfig:
    """Constructor arguments of :class:`ViT1D` and their defaults: the paper's model (about
    5.4 M backbone parameters, 8.7 M with the default projection head). The training config's
    ``model`` section is this dataclass."""

    n_mels: int = 128
    dim: int = 192
    depth: int = 12
    heads: int = 3
    mlp_ratio: float = 4.0
    max_frames: int = 126
    head: str = "mlp"  # projection head for the loss: none | linear | mlp
    head_dims: list[int] = field(default_factory=lambda: [1024, 1024, 2048])
    input_mean: float = -40.0  # fixed standardisation of the dB input: (x - mean) / std
    input_std: float = 20.0
    mask_token: bool = False  # a learned token for masked frames (set by the masked objective)
    twin_head: bool = False  # a second projection head for twin pairs (set by loss.twin_head)


#: :class:`ModelConfig`'s defaults as a dict (what ``ViT1D()`` builds).
DEFAULTS: dict[str, Any] = asdict(ModelConfig())


@dataclass
class ViTOutput:
    """What :meth:`ViT1D.forward` returns.

    ``cls`` ``(B, dim)`` and ``tokens`` ``(B, T, dim)`` come after the final LayerNorm.
    ``hidden_states`` (when asked) holds ``depth + 1`` tensors ``(B, 1 + T, dim)``: the
    embeddings, then the output of each block (before the final norm), as in HF transformers.
    ``attentions`` (when asked) holds ``depth`` tensors ``(B, heads, 1 + T, 1 + T)`` whose rows
    sum to 1; index 0 of the last two axes is the class token.
    """

    cls: torch.Tensor
    tokens: torch.Tensor
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


class Attention(nn.Module):
    """Multi-head self-attention with a fused path and an explicit path."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
        self.heads = heads
        self.head_dim = dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(
        self, x: torch.Tensor, return_attention: bool = False, fused: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        attn = None
        if return_attention or not fused:
            scores = torch.matmul(q, k.transpose(-2, -1)) * (self.head_dim**-0.5)
            # softmax in fp32: under bf16 autocast the rows would not sum to 1 within 1e-3
            attn = scores.float().softmax(dim=-1)
            out = torch.matmul(attn.to(v.dtype), v)
        else:
            out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(1, 2).reshape(b, n, d)
        return self.proj(out), (attn if return_attention else None)


class Block(nn.Module):
    """Pre-norm transformer block: ``x + MHSA(LN(x))`` then ``x + MLP(LN(x))``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(
        self, x: torch.Tensor, return_attention: bool = False, fused: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        h, attn = self.attn(self.norm1(x), return_attention=return_attention, fused=fused)
        x = x + h
        x = x + self.mlp(self.norm2(x))
        return x, attn


def projection_head(dim: int, kind: str, dims: list[int]) -> nn.Module | None:
    """The contrastive projection head: ``none``, ``linear`` (to ``dims[-1]``) or ``mlp``.

    The MLP is Linear-GELU between the widths in ``dims`` (the group's earlier contrastive
    code used 1024-1024-2048), with no activation after the last layer.
    """
    if kind == "none":
        return None
    if kind == "linear":
        return nn.Linear(dim, dims[-1])
    if kind == "mlp":
        layers: list[nn.Module] = []
        widths = [dim, *dims]
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            layers.append(nn.Linear(a, b))
            if i < len(dims) - 1:
                layers.append(nn.GELU())
        return nn.Sequential(*layers)
    raise ValueError(f"unknown projection head {kind!r}: use 'none', 'linear' or 'mlp'")


class ViT1D(nn.Module):
    """The ViT-1D backbone (plus an optional projection head), see the module docstring.

    Input: log-mel in dB, ``(B, T, n_mels)`` with ``T <= max_frames`` (as
    :class:`vit1d.LogMel` returns it); it is standardised with the fixed ``input_mean`` and
    ``input_std`` before the frame projection.
    """

    def __init__(self, **config: Any) -> None:
        super().__init__()
        unknown = set(config) - set(DEFAULTS)
        if unknown:
            raise TypeError(
                f"ViT1D got unknown argument(s) {sorted(unknown)}; valid: {sorted(DEFAULTS)}"
            )
        cfg = {**DEFAULTS, **config}
        cfg["head_dims"] = list(cfg["head_dims"])
        self.config = cfg
        dim = cfg["dim"]
        self.n_mels = cfg["n_mels"]
        self.max_frames = cfg["max_frames"]
        self.register_buffer("input_mean", torch.tensor(float(cfg["input_mean"])), persistent=False)
        self.register_buffer("input_std", torch.tensor(float(cfg["input_std"])), persistent=False)
        self.frame_proj = nn.Linear(self.n_mels, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.max_frames, dim))
        self.blocks = nn.ModuleList(
            Block(dim, cfg["heads"], cfg["mlp_ratio"]) for _ in range(cfg["depth"])
        )
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = projection_head(dim, cfg["head"], cfg["head_dims"])
        self.twin_head = (
            projection_head(dim, cfg["head"], cfg["head_dims"]) if cfg["twin_head"] else None
        )
        # learned stand-in for masked frames (masked-modelling objective only)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim)) if cfg["mask_token"] else None
        self.reset_parameters()

    @property
    def depth(self) -> int:
        return len(self.blocks)

    @property
    def dim(self) -> int:
        return self.config["dim"]

    def reset_parameters(self) -> None:
        """ViT initialisation: truncated normal (std 0.02) weights, zero biases."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        if self.mask_token is not None:
            nn.init.trunc_normal_(self.mask_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def num_parameters(self, include_head: bool = False) -> int:
        """Parameter count of the backbone (and the projection heads if asked)."""
        return sum(
            p.numel()
            for name, p in self.named_parameters()
            if include_head or not is_head_parameter(name)
        )

    def embed(self, mel: torch.Tensor, frame_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Frame projection, class token and positions: ``(B, T, n_mels) -> (B, 1 + T, dim)``.

        ``frame_mask`` ``(B, T)`` (True = hidden) replaces those projected frames by the
        learned mask token before the class token is formed (masked-modelling objective)."""
        if mel.dim() != 3 or mel.shape[-1] != self.n_mels:
            raise ValueError(
                f"ViT1D expects log-mel (B, T, {self.n_mels}), got shape {tuple(mel.shape)}"
            )
        t = mel.shape[1]
        if t < 1:
            raise ValueError("ViT1D needs at least one frame")
        if t > self.max_frames:
            raise ValueError(
                f"input has {t} frames but this model has positions for {self.max_frames} "
                f"({self.max_frames / 31.25:.2f} s); cut longer audio into windows "
                "(vit1d's embedding code does this) instead of feeding it whole"
            )
        x = self.frame_proj((mel - self.input_mean) / self.input_std)
        if frame_mask is not None:
            if self.mask_token is None:
                raise ValueError("this model has no mask token; build it with mask_token=True")
            x = torch.where(frame_mask[..., None], self.mask_token.to(x.dtype), x)
        cls = self.cls_token.expand(x.shape[0], -1, -1) + x.mean(dim=1, keepdim=True)
        x = torch.cat([cls, x], dim=1)
        return x + self.pos_embed[:, : 1 + t]

    def forward(
        self,
        mel: torch.Tensor,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        fused: bool = True,
        frame_mask: torch.Tensor | None = None,
    ) -> ViTOutput:
        """Run the backbone; ``fused=False`` forces the explicit attention path;
        ``frame_mask`` hides frames behind the mask token (see :meth:`embed`)."""
        x = self.embed(mel, frame_mask)
        hidden = [x] if output_hidden_states else None
        attentions = [] if output_attentions else None
        for block in self.blocks:
            x, attn = block(x, return_attention=output_attentions, fused=fused)
            if hidden is not None:
                hidden.append(x)
            if attentions is not None:
                attentions.append(attn)
        x = self.norm(x)
        return ViTOutput(
            cls=x[:, 0],
            tokens=x[:, 1:],
            hidden_states=tuple(hidden) if hidden is not None else None,
            attentions=tuple(attentions) if attentions is not None else None,
        )

    def project(self, cls: torch.Tensor, twin: bool = False) -> torch.Tensor:
        """The vector the contrastive loss sees: the class token through the head (if any);
        ``twin=True``: through the twin pairs' head."""
        head = self.twin_head if twin else self.head
        if twin and self.twin_head is None and self.head is not None:
            raise ValueError("this model has no twin head: build it with twin_head=True")
        return cls if head is None else head(cls)


def flops_per_view(config: dict[str, Any], frames: int | None = None) -> float:
    """Approximate forward FLOPs for one view (multiply-adds counted as 2), for throughput
    reports: the frame projection, attention and MLP matmuls of every block."""
    cfg = {**DEFAULTS, **config}
    n = 1 + (frames or cfg["max_frames"])
    d = cfg["dim"]
    hidden = int(d * cfg["mlp_ratio"])
    per_block = 2 * n * d * (3 * d + d + 2 * hidden) + 2 * 2 * n * n * d
    return float(2 * n * cfg["n_mels"] * d + cfg["depth"] * per_block)
