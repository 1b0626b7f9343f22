"""Provenance helpers shared by every step that records where its results came from."""

from __future__ import annotations

import hashlib
import os
from typing import Any


def weights_fingerprint(model: Any) -> str:
    """The model's identity in every provenance record (features, HEAR embeddings, analyses):
    SHA-256 over the backbone's parameters and buffers, sorted by name, each as its name then
    its float32 bytes; the projection head (``head.*``), which no feature reads, is left out.
    The same weights give the same fingerprint whatever file, dtype or device they came from.
    """
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if name.startswith("head."):
            continue
        h.update(name.encode())
        h.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks (weights, manifests, SoundFonts)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
