"""The HEAR 2021 API under its public module name: ``hear-eval-kit --module vit1d.hear``.

The implementation and its documentation live in :mod:`vit1d.features.hear`; this module only
gives the three functions the convention requires a stable, short home.
"""

from vit1d.features.hear import get_scene_embeddings, get_timestamp_embeddings, load_model

__all__ = ["get_scene_embeddings", "get_timestamp_embeddings", "load_model"]
