"""ViT1D: the contract of the design notes' section Public API, attention paths, sizes."""

from __future__ import annotations

import pytest
import torch

from vit1d import ViT1D


@pytest.fixture(scope="module")
def model() -> ViT1D:
    torch.manual_seed(0)
    return ViT1D().eval()


def _mel(b: int = 2, t: int = 126) -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(b, t, 128) * 20 - 40


def test_parameter_count(model: ViT1D) -> None:
    n = model.num_parameters()
    assert 5.2e6 <= n <= 5.6e6
    # independent count from the architecture's formula
    d, h, t, depth = 192, 768, 126, 12
    block = 3 * d * d + 3 * d + d * d + d + d * h + h + h * d + d + 4 * d
    assert n == 128 * d + d + d + (1 + t) * d + depth * block + 2 * d
    assert model.num_parameters(include_head=True) > n


def test_output_shapes(model: ViT1D) -> None:
    out = model(_mel(), output_hidden_states=True, output_attentions=True)
    assert out.cls.shape == (2, 192) and out.tokens.shape == (2, 126, 192)
    assert len(out.hidden_states) == 13
    assert all(h.shape == (2, 127, 192) for h in out.hidden_states)
    assert len(out.attentions) == 12
    assert all(a.shape == (2, 3, 127, 127) for a in out.attentions)
    plain = model(_mel())
    assert plain.hidden_states is None and plain.attentions is None
    # cls and tokens are the final norm of the last hidden state
    last = model.norm(out.hidden_states[-1])
    torch.testing.assert_close(out.cls, last[:, 0])
    torch.testing.assert_close(out.tokens, last[:, 1:])


def test_attention_rows_sum_to_one(model: ViT1D) -> None:
    out = model(_mel(), output_attentions=True)
    for attn in out.attentions:
        assert torch.all(attn >= 0)
        torch.testing.assert_close(attn.sum(-1), torch.ones(attn.shape[:-1]), atol=1e-5, rtol=0)


def test_fused_and_explicit_paths_agree(model: ViT1D) -> None:
    x = _mel(3)
    with torch.no_grad():
        fused = model(x, output_hidden_states=True)
        explicit = model(x, output_hidden_states=True, fused=False)
        with_maps = model(x, output_attentions=True)
    for a, b in zip(fused.hidden_states, explicit.hidden_states, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    torch.testing.assert_close(fused.cls, with_maps.cls, atol=1e-5, rtol=0)
    torch.testing.assert_close(fused.tokens, with_maps.tokens, atol=1e-5, rtol=0)


def test_class_token_is_vector_plus_frame_mean(model: ViT1D) -> None:
    x = _mel(1, 50)
    emb = model.embed(x)
    frames = model.frame_proj((x - model.input_mean) / model.input_std)
    expected = model.cls_token[:, 0] + frames.mean(1) + model.pos_embed[:, 0]
    torch.testing.assert_close(emb[:, 0], expected)


def test_shorter_ok_longer_rejected(model: ViT1D) -> None:
    out = model(_mel(1, 40))
    assert out.tokens.shape == (1, 40, 192)
    with pytest.raises(ValueError, match="126"):
        model(_mel(1, 127))
    with pytest.raises(ValueError, match="128"):
        model(torch.zeros(1, 10, 64))


def test_gradients_flow_and_head() -> None:
    m = ViT1D(dim=32, depth=2, heads=2, head="mlp", head_dims=[64, 16])
    z = m.project(m(_mel(2, 20)).cls)
    assert z.shape == (2, 16)
    z.square().sum().backward()
    assert all(p.grad is not None for p in m.parameters())
    assert ViT1D(dim=32, depth=2, heads=2, head="none").head is None
    with pytest.raises(TypeError, match="unknown argument"):
        ViT1D(width=3)
