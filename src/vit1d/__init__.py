"""vit1d: a companion library to Kong et al. (ISMIR 2025), "Emergent musical properties of a
transformer under contrastive self-supervised learning".

Public names (docs/design.md, "Public API"): :class:`LogMel`, :func:`load_audio`, :class:`ViT1D`,
:class:`NTXent`, :func:`load_pretrained`. They are imported lazily so that ``vit1d --help``
and the corpus builder start without loading torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "LogMel": "vit1d.audio.frontend",
    "load_audio": "vit1d.audio.frontend",
    "ViT1D": "vit1d.models.model",
    "ViTOutput": "vit1d.models.model",
    "NTXent": "vit1d.pretrain.losses",
    "load_pretrained": "vit1d.models.checkpoint",
    "save_pretrained": "vit1d.models.checkpoint",
    "UserError": "vit1d.core.errors",
}

__all__ = [
    "LogMel",
    "NTXent",
    "UserError",
    "ViT1D",
    "ViTOutput",
    "load_audio",
    "load_pretrained",
    "save_pretrained",
]

if TYPE_CHECKING:  # pragma: no cover
    from vit1d.audio.frontend import LogMel, load_audio
    from vit1d.core.errors import UserError
    from vit1d.models.checkpoint import load_pretrained, save_pretrained
    from vit1d.models.model import ViT1D, ViTOutput
    from vit1d.pretrain.losses import NTXent


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'vit1d' has no attribute {name!r}")
