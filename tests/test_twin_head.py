"""Twins as a third view with their own projection head (``loss.twin_head``).

The sampler draws the same twins as with the twin as second view, only placing them in a
third view; the model's twin head is a head like the first, left out of the backbone's
parameter count, fingerprint and the analyses' weights; a run embeds three views per track
and resumes exactly. The loss itself is checked against the NumPy NT-Xent in test_losses.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tone_pool_with_twins
from safetensors.torch import load_file

from vit1d.core.errors import UserError
from vit1d.core.provenance import weights_fingerprint
from vit1d.models.checkpoint import load_pretrained, save_pretrained
from vit1d.models.model import ViT1D
from vit1d.pretrain.config import load_config
from vit1d.pretrain.data import PairSampler
from vit1d.pretrain.train import pretrain

TINY = {"dim": 16, "depth": 1, "heads": 2, "head_dims": [12], "n_mels": 16, "max_frames": 8}


def test_third_view_takes_the_twin_draws_and_keeps_the_papers_second_view() -> None:
    lengths, counts = np.full(40, 600), np.array([2, 1, 0, 3] * 10)
    kwargs = dict(twin_counts=counts, twin_prob=0.7, twin_max_distance=10)
    plain = PairSampler(lengths, 16, 126, 126, seed=5)
    second = PairSampler(lengths, 16, 126, 126, seed=5, **kwargs)
    third = PairSampler(lengths, 16, 126, 126, seed=5, third_view=True, **kwargs)
    for step in range(20):
        p, s, t = plain.batch(step), second.batch(step), third.batch(step)
        np.testing.assert_array_equal(t.tracks, p.tracks)
        np.testing.assert_array_equal(t.starts_a, p.starts_a)
        np.testing.assert_array_equal(t.starts_b, p.starts_b)  # a crop of the same render
        assert not t.source.any()
        np.testing.assert_array_equal(t.source_c, s.source)  # the same twins ...
        twin = s.source > 0
        np.testing.assert_array_equal(t.starts_c[twin], s.starts_b[twin])  # ... at their times
        # without a twin draw, the third view repeats the second (never the anchor's crop)
        np.testing.assert_array_equal(t.starts_c[~twin], t.starts_b[~twin])
        assert (counts[t.tracks][twin] > 0).all()
    assert plain.batch(3).starts_c is None


def test_the_twin_head_is_a_head_like_the_first_and_not_part_of_the_backbone(
    tmp_path: Path,
) -> None:
    torch.manual_seed(0)
    one = ViT1D(**TINY)
    two = ViT1D(**TINY, twin_head=True)
    two.load_state_dict(one.state_dict(), strict=False)
    assert [p.shape for p in two.twin_head.parameters()] == [p.shape for p in two.head.parameters()]
    assert two.num_parameters() == one.num_parameters()
    assert two.num_parameters(include_head=True) > one.num_parameters(include_head=True)
    assert weights_fingerprint(two) == weights_fingerprint(one)
    cls = torch.randn(3, 16)
    assert not torch.allclose(two.project(cls), two.project(cls, twin=True))
    with pytest.raises(ValueError, match="no twin head"):
        one.project(cls, twin=True)
    save_pretrained(two, tmp_path / "ckpt", {"note": "test"})
    back = load_pretrained(tmp_path / "ckpt")
    torch.testing.assert_close(back.project(cls, twin=True), two.project(cls, twin=True))
    bare = load_pretrained(tmp_path / "ckpt", head=False)
    assert bare.head is None and bare.twin_head is None
    assert weights_fingerprint(bare) == weights_fingerprint(two)


@pytest.mark.parametrize(
    "overrides",
    [
        {"loss": {"twin_head": True}},
        {"loss": {"twin_head": True, "objective": "masked"}, "data": {"twin_prob": 1.0}},
    ],
)
def test_a_twin_head_without_twin_views_is_refused(overrides: dict) -> None:
    with pytest.raises(UserError, match="loss.twin_head needs"):
        load_config("smoke", overrides)


def test_a_twin_head_run_embeds_three_views_and_resumes_exactly(tmp_path: Path) -> None:
    manifest = tone_pool_with_twins(tmp_path / "pool", 6, with_twins=list(range(6)), seconds=3.0)
    over = {
        "model": {"dim": 32, "depth": 1, "heads": 2, "head_dims": [32]},
        "data": {"twin_prob": 1.0},
        "loss": {"twin_head": True},
        "train": {
            "steps": 4,
            "batch_size": 4,
            "checkpoint_every": 2,
            "num_threads": 1,
            "precision": "fp32",
        },
    }
    out = pretrain("smoke", manifest, tmp_path / "run", progress=False, overrides=over)
    record = json.loads((out / "run.json").read_text())
    assert record["views_per_step"] == 12 and record["data"]["tracks_with_twins"] == 6
    weights = load_file(str(out / "model.safetensors"))
    assert any(k.startswith("twin_head.") for k in weights)
    # cut after step 2 and resumed: the weights of the uninterrupted run
    (out / "checkpoints" / "latest").write_text("step-00000002\n")
    (out / "model.safetensors").unlink()
    again = pretrain("smoke", manifest, out, progress=False, overrides=over)
    resumed = load_file(str(again / "model.safetensors"))
    for k in weights:
        torch.testing.assert_close(resumed[k], weights[k], rtol=0, atol=0)
    plain = dict(over, loss={"twin_head": False})
    other = load_file(
        str(
            pretrain("smoke", manifest, tmp_path / "plain", progress=False, overrides=plain)
            / "model.safetensors"
        )
    )
    assert not any(k.startswith("twin_head.") for k in other)
    assert any(not torch.equal(other[k], weights[k]) for k in other)
