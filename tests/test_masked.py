"""The masked-modelling foil: masking, targets, loss, and that it can learn."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vit1d import ViT1D
from vit1d.pretrain.masked import (
    MaskedForward,
    RandomProjectionQuantizer,
    masked_prediction_loss,
    span_mask,
)
from vit1d.pretrain.train import pretrain


@pytest.mark.parametrize("ratio, span, frames", [(0.4, 5, 126), (0.15, 3, 50), (0.7, 10, 126)])
def test_span_mask_covers_requested_ratio(ratio: float, span: int, frames: int) -> None:
    mask = span_mask(16, frames, ratio, span, torch.Generator().manual_seed(0))
    assert mask.shape == (16, frames) and mask.dtype == torch.bool
    assert torch.all(mask.sum(1) == round(ratio * frames))
    # spans: far fewer runs of masked frames than masked frames
    runs = (mask[:, 1:] & ~mask[:, :-1]).sum(1) + mask[:, 0]
    assert torch.all(runs <= np.ceil(round(ratio * frames) / span) + 1)
    assert not torch.equal(mask[0], mask[1])  # rows differ
    again = span_mask(16, frames, ratio, span, torch.Generator().manual_seed(0))
    assert torch.equal(mask, again)
    with pytest.raises(ValueError, match="ratio"):
        span_mask(2, frames, 1.0, span, torch.Generator())


def test_codes_match_numpy_and_depend_on_seed() -> None:
    mel = torch.randn(3, 40, 128) * 20 - 40
    q = RandomProjectionQuantizer(seed=7)
    codes = q(mel)
    assert codes.shape == (3, 40) and codes.dtype == torch.int64
    torch.testing.assert_close(RandomProjectionQuantizer(seed=7)(mel), codes, rtol=0, atol=0)
    assert (RandomProjectionQuantizer(seed=8)(mel) != codes).float().mean() > 0.5
    # independent reference: nearest unit code by cosine, in float64 NumPy
    x = (mel.double().numpy() - (-40.0)) / 20.0
    z = x @ q.projection.double().numpy()
    z /= np.linalg.norm(z, axis=-1, keepdims=True)
    c = q.codebook.double().numpy()
    c /= np.linalg.norm(c, axis=-1, keepdims=True)
    np.testing.assert_array_equal(np.argmax(z @ c.T, axis=-1), codes.numpy())
    assert len(np.unique(codes.numpy())) > 20  # the codebook is used, not collapsed


def test_loss_only_on_masked_frames() -> None:
    torch.manual_seed(0)
    model = ViT1D(dim=32, depth=2, heads=2, head="linear", head_dims=[16], mask_token=True)
    predictor = MaskedForward(model)
    mel = torch.randn(2, 30, 128) * 20 - 40
    mask = span_mask(2, 30, 0.4, 4, torch.Generator().manual_seed(1))
    codes = torch.randint(0, 16, (2, 30), generator=torch.Generator().manual_seed(2))
    logits = predictor(mel, mask)
    loss = masked_prediction_loss(logits, codes[mask])
    # independent reference: mean negative log-softmax over masked frames, NumPy float64
    lg = logits.detach().double().numpy()
    logp = (
        lg
        - np.log(np.exp(lg - lg.max(1, keepdims=True)).sum(1, keepdims=True))
        - lg.max(1, keepdims=True)
    )
    ref = -np.mean(logp[np.arange(len(lg)), codes[mask].numpy()])
    assert loss.item() == pytest.approx(ref, rel=1e-5)
    # changing targets of visible frames changes nothing; of a hidden frame, the loss
    other = codes.clone()
    other[~mask] = (other[~mask] + 1) % 16
    assert masked_prediction_loss(logits, other[mask]).item() == pytest.approx(loss.item())
    hidden = mask.nonzero()[0]
    other[hidden[0], hidden[1]] = (other[hidden[0], hidden[1]] + 1) % 16
    assert masked_prediction_loss(logits, other[mask]).item() != pytest.approx(loss.item())
    # the visible frames' content reaches hidden positions only through attention:
    # the mask token really replaces the hidden frames' input
    changed = mel.clone()
    changed[mask] += 30.0
    torch.testing.assert_close(predictor(changed, mask), logits)


def test_model_that_sees_its_targets_can_fit_them() -> None:
    """No masking of the input: the codes are a function of the visible frame, so a tiny
    model must drive the loss toward zero; a bug in targets or loss would stop it."""
    torch.manual_seed(0)
    k = 16
    model = ViT1D(dim=48, depth=2, heads=2, head="linear", head_dims=[k], max_frames=24)
    quantizer = RandomProjectionQuantizer(codebook_size=k, seed=0)
    mel = torch.randn(4, 24, 128) * 20 - 40
    codes = quantizer(mel)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(150):
        logits = model.head(model(mel).tokens).reshape(-1, k)
        loss = masked_prediction_loss(logits, codes.reshape(-1))
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert first > 0.8 * np.log(k) and loss.item() < 0.1


def test_cli_masked_run_at_equal_compute(tmp_path: Path, audio_dir: Path) -> None:
    common = {"train": {"steps": 6, "checkpoint_every": 6, "num_threads": 1}}
    a = pretrain("smoke", audio_dir, tmp_path / "c", progress=False, overrides=common)
    b = pretrain(
        "smoke",
        audio_dir,
        tmp_path / "m",
        progress=False,
        overrides={**common, "loss": {"objective": "masked"}},
    )
    run_a = json.loads((a / "run.json").read_text())
    run_b = json.loads((b / "run.json").read_text())
    assert run_b["objective"] == "masked" and run_a["objective"] == "contrastive"
    for key in ("steps", "views_per_step", "frames_per_view"):
        assert run_a[key] == run_b[key]
    # the heads differ, the backbones do not: FLOPs counted on the backbone agree
    assert run_a["train_flops_per_step"] == pytest.approx(run_b["train_flops_per_step"])
    from vit1d import load_pretrained

    assert load_pretrained(b).mask_token is not None
