"""The explorer's two faces: the live one recomputes on a change; the static one is
a slider jslink-ed to a Stack of pre-rendered pictures, with no Python callback at all."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")
w = pytest.importorskip("ipywidgets")

from vit1d.models.model import ViT1D  # noqa: E402
from vit1d.viz import widgets  # noqa: E402

SR = 16_000


@pytest.fixture(scope="module")
def view() -> widgets.ClipView:
    torch.manual_seed(0)
    model = ViT1D(dim=16, depth=2, heads=2, head="none").eval()
    rng = np.random.default_rng(0)
    y = 0.01 * rng.standard_normal(int(5.0 * SR))
    onsets = [0.5, 1.5, 2.5, 4.5]
    t = np.arange(int(0.3 * SR)) / SR
    for o in onsets:
        s = int(o * SR)
        y[s : s + t.size] += np.sin(2 * np.pi * 440 * t) * np.exp(-t / 0.05)
    return widgets.prepare_clip(model, y.astype(np.float32), onsets, name="test clip")


def test_view_data_window_two(view: widgets.ClipView):
    assert len(view.windows) == 2 and view.heads == ["0", "1", "mean", "rollout"]
    d = widgets.view_data(view, window=1, layer=2, head="1", method="cls")
    t = 157 - 126
    assert d["mel"].shape == (t, 128) and d["attention"].shape == (t, t)
    assert d["ssm"].shape == (t, t)
    np.testing.assert_allclose(d["curve"], view.windows[1].attentions[1, 1, 0, 1:])
    # the onset at 4.5 s is 4.5 - 126 / 31.25 s into the second window
    np.testing.assert_allclose(d["onsets"], [4.5 - 126 / 31.25])
    assert d["audio"].size == 5 * SR - 126 * 512  # from the window start to the clip end
    with pytest.raises(ValueError, match="unknown head"):
        widgets.view_data(view, 0, 1, head="7")


def test_live_explorer_recomputes(view: widgets.ClipView):
    box = widgets.live_explorer([view])
    image = next(c for c in box.children if isinstance(c, w.Image))
    first = image.value
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    sliders = [c for c in box.children[0].children[1].children if isinstance(c, w.IntSlider)]
    sliders[0].value = 2  # layer 2
    assert image.value != first
    audio = next(c for c in box.children if isinstance(c, w.HTML))
    assert "<audio" in audio.value


def test_static_explorer_links_in_the_browser(view: widgets.ClipView):
    from ipywidgets.embed import dependency_state

    box = widgets.static_explorer(view, window=0, head="mean")
    state = dependency_state([box])
    models = [s["model_name"] for s in state.values()]
    stacks = [s for s in state.values() if s["model_name"] == "StackModel"]
    images = [s for s in state.values() if s["model_name"] == "ImageModel"]
    assert len(images) == view.n_layers
    assert any(len(s["state"]["children"]) == view.n_layers for s in stacks)
    # the slider drives the stack through a front-end link, not a Python callback
    assert models.count("LinkModel") >= 1
    slider = next(s for s in state.values() if s["model_name"] == "IntSliderModel")
    assert slider["state"]["max"] == view.n_layers - 1


def test_live_explorer_switches_clips(view: widgets.ClipView):
    short = widgets.ClipView("short", view.y[: 2 * SR], view.mel[:63], view.onsets[:2])
    short.windows = [
        widgets.att.WindowOutput(
            0, view.windows[0].attentions[..., :64, :64], view.windows[0].hidden[:, :63]
        )
    ]
    box = widgets.live_explorer([view, short])
    clip_dd, win_sl = box.children[0].children[0].children
    image = box.children[2]
    before = image.value
    clip_dd.value = "short"
    assert win_sl.max == 0 and image.value != before
    with pytest.raises(ValueError, match="at least one clip"):
        widgets.live_explorer([])
