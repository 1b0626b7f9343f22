"""Provenance: one model identity (features, HEAR embeddings and analyses record the same
fingerprint) and one collector of library versions."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from vit1d.analysis import analyses
from vit1d.core.provenance import library_versions, weights_fingerprint
from vit1d.features import hear
from vit1d.features.embed import embed
from vit1d.models.checkpoint import load_pretrained, save_pretrained
from vit1d.models.device import select_device
from vit1d.models.model import ViT1D

TINY = dict(n_mels=128, dim=32, depth=2, heads=2, head="mlp", head_dims=[16, 8])


def test_features_hear_and_analyses_record_one_fingerprint(tmp_path: Path) -> None:
    torch.manual_seed(0)
    ckpt = save_pretrained(ViT1D(**TINY), tmp_path / "ckpt")
    audio = tmp_path / "audio"
    audio.mkdir()
    rng = np.random.default_rng(0)
    sf.write(audio / "a.wav", (0.1 * rng.standard_normal(16_000)).astype(np.float32), 16_000)

    features = embed(ckpt, [audio / "a.wav"], cache_dir=tmp_path / "cache", progress=False)
    hear.embed_folder(audio, tmp_path / "hear", hear.load_model(str(ckpt)), progress=False)
    recorded_hear = json.loads((tmp_path / "hear" / "embed.json").read_text())
    model = load_pretrained(ckpt, head=False)
    recorded_analyses = analyses.provenance(ckpt, tmp_path, 0, select_device("cpu"), {}, model)

    expected = weights_fingerprint(load_pretrained(ckpt))  # the head does not count
    assert features.provenance["weights_sha256"] == expected
    assert recorded_hear["weights_sha256"] == expected
    assert recorded_analyses["checkpoint"]["weights_sha256"] == expected


def test_the_fingerprint_sees_one_changed_weight_and_ignores_dtype() -> None:
    torch.manual_seed(1)
    model = ViT1D(**TINY)
    before = weights_fingerprint(model)
    copy = ViT1D(**TINY)
    copy.load_state_dict(model.state_dict())
    assert weights_fingerprint(copy) == before
    with torch.no_grad():
        model.blocks[0].mlp[0].weight[0, 0] += 1e-3
    assert weights_fingerprint(model) != before
    # float64 copies of the same float32 weights: the same identity
    assert weights_fingerprint(model.double()) == weights_fingerprint(model.float())


def test_one_collector_of_library_versions(tmp_path: Path) -> None:
    """The installed distributions' versions (numpy's own __version__ as the independent
    check), python's, and "not installed" for an absent package; the analyses record it."""
    versions = library_versions(("numpy", "no-such-package-vit1d"))
    assert versions == {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "no-such-package-vit1d": "not installed",
    }
    torch.manual_seed(0)
    ckpt = save_pretrained(ViT1D(**TINY), tmp_path / "ckpt")
    prov = analyses.provenance(
        ckpt, tmp_path, 0, select_device("cpu"), {}, load_pretrained(ckpt, head=False)
    )
    assert prov["versions"] == library_versions()
    assert prov["versions"]["torch"] in (torch.__version__, torch.__version__.split("+")[0])
