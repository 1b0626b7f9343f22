"""The attention and self-similarity explorer (ipywidgets), in two faces.

* :func:`live_explorer`: pick a clip, a 4 s window, a layer, a head (or their mean, or the
  attention rollout) and an onset curve; the view is recomputed in the kernel (Jupyter,
  Voila). The picture is a ``widgets.Image`` whose PNG is replaced on every change.
* :func:`static_explorer`: the same view pre-rendered for every layer of one clip window
  and head, in an ``ipywidgets.Stack`` driven by an ``IntSlider`` through
  ``ipywidgets.jslink`` (:func:`vit1d.viz.plots.image_stack`). The link runs in the browser, so
  it works in the built HTML book with no kernel (docs/design.md, "The book").

Both show (:func:`vit1d.viz.analysis_plots.explorer_figure`) the log-mel with the labelled
onsets, the frame-to-frame attention map, the onset curve read from it with its picked
peaks, the layer's token SSM, and an audio player of the window.

Used by: ``notebooks/06_attention.ipynb``, ``notebooks/07_self_similarity.ipynb`` and
``notebooks/10_explorer.ipynb``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from vit1d.analysis import attention as att
from vit1d.analysis import ssm as sm
from vit1d.audio.frontend import LogMel
from vit1d.audio.grid import FRAME_RATE, SAMPLE_RATE
from vit1d.core.extras import missing
from vit1d.viz import analysis_plots, plots

try:
    import ipywidgets as w
except ImportError as exc:  # the viz extra is optional
    raise missing("vit1d.viz.widgets", "viz", exc) from exc


@dataclass
class ClipView:
    """One clip ready to explore: audio, log-mel ``(T, 128)``, labelled onsets (seconds)
    and the model's outputs per 4 s window (:func:`vit1d.analysis.attention.run_windows`)."""

    name: str
    y: np.ndarray
    mel: np.ndarray
    onsets: np.ndarray
    windows: list[att.WindowOutput] = field(default_factory=list)

    @property
    def n_layers(self) -> int:
        return self.windows[0].attentions.shape[0]

    @property
    def heads(self) -> list[str]:
        """Head choices: each head's number, ``mean`` and ``rollout``."""
        return [str(h) for h in range(self.windows[0].attentions.shape[1])] + ["mean", "rollout"]


def prepare_clip(
    model: Any, y: np.ndarray, onsets: Sequence[float] = (), name: str = ""
) -> ClipView:
    """Compute the log-mel of audio ``y`` (16 kHz) and run ``model`` on it window by window,
    keeping attention maps and hidden states."""
    y = np.asarray(y, dtype=np.float32).reshape(-1)
    with torch.no_grad():
        mel = LogMel()(torch.from_numpy(y)[None])[0].numpy()
    windows = att.run_windows(model, mel, attentions=True, hidden=True)
    return ClipView(name or "clip", y, mel, np.asarray(onsets, dtype=float), windows)


def view_data(
    view: ClipView, window: int, layer: int, head: str = "mean", method: str = "row_change"
) -> dict[str, Any]:
    """What the explorer draws for one window, layer (1..L) and head: ``mel`` ``(T, 128)``,
    ``attention`` ``(T, T)`` (frame block; for ``rollout``, the rollout to ``layer``),
    ``curve`` ``(T,)`` (:func:`vit1d.analysis.attention.onset_curve`), ``peaks`` and ``onsets`` (s,
    relative to the window start), ``ssm`` ``(T, T)`` (cosine SSM of the layer's tokens),
    ``audio`` (the window's samples) and ``start`` (s)."""
    win = view.windows[window]
    t = win.attentions.shape[-1] - 1
    maps = att.head_maps(win.attentions)
    if head not in maps:
        raise ValueError(f"unknown head {head!r}; choose from {list(maps)}")
    a = maps[head][layer - 1]
    curve = att.onset_curve(a, method)
    start = win.start / FRAME_RATE
    end = (win.start + t) / FRAME_RATE
    on = view.onsets[(view.onsets >= start) & (view.onsets < end)] - start
    s0, s1 = int(round(start * SAMPLE_RATE)), int(round(end * SAMPLE_RATE))
    return {
        "mel": view.mel[win.start : win.start + t],
        "attention": att.frame_attention(a),
        "curve": curve,
        "peaks": att.pick_peaks(curve, FRAME_RATE),
        "onsets": on,
        "ssm": sm.cosine_ssm(win.hidden[layer]),
        "audio": view.y[s0:s1],
        "start": start,
    }


def render_png(
    view: ClipView,
    window: int,
    layer: int,
    head: str = "mean",
    method: str = "row_change",
    dpi: int = 80,
) -> bytes:
    """PNG bytes of :func:`vit1d.viz.analysis_plots.explorer_figure` for one choice."""
    d = view_data(view, window, layer, head, method)
    title = f"{view.name}, {d['start']:.1f} s: layer {layer}, head {head}, curve '{method}'"
    fig = analysis_plots.explorer_figure(
        d["mel"], d["attention"], d["curve"], d["ssm"], FRAME_RATE, d["onsets"], d["peaks"], title
    )
    return plots.fig_to_png(fig, dpi=dpi)


def _audio_html(samples: np.ndarray) -> str:
    """The HTML of an embedded audio player (:func:`vit1d.viz.plots.audio_player`)."""
    if samples.size == 0:
        return ""
    return plots.audio_player(samples, SAMPLE_RATE).data


def live_explorer(
    clips: Sequence[ClipView],
    method: str = "row_change",
    width: str = "720px",
) -> Any:
    """The kernel-backed explorer over prepared clips (:func:`prepare_clip`): dropdowns
    for clip, head and onset curve, sliders for window and layer; every change re-renders
    the picture and the audio player."""
    if not clips:
        raise ValueError("live_explorer needs at least one clip")
    by_name = {c.name: c for c in clips}
    first = clips[0]
    clip_dd = w.Dropdown(options=list(by_name), value=first.name, description="clip")
    win_sl = w.IntSlider(value=0, min=0, max=len(first.windows) - 1, description="window")
    layer_sl = w.IntSlider(value=1, min=1, max=first.n_layers, description="layer")
    head_dd = w.Dropdown(options=first.heads, value="mean", description="head")
    curve_dd = w.Dropdown(options=list(att.CURVES), value=method, description="onset curve")
    image = w.Image(format="png", layout=w.Layout(width=width))
    audio = w.HTML()

    def update(_change: Any = None) -> None:
        view = by_name[clip_dd.value]
        win_sl.max = len(view.windows) - 1
        layer_sl.max = view.n_layers
        image.value = render_png(view, win_sl.value, layer_sl.value, head_dd.value, curve_dd.value)
        win = view.windows[win_sl.value]
        s0 = int(round(win.start / FRAME_RATE * SAMPLE_RATE))
        s1 = int(round((win.start + win.attentions.shape[-1] - 1) / FRAME_RATE * SAMPLE_RATE))
        audio.value = _audio_html(view.y[s0:s1])

    for control in (clip_dd, win_sl, layer_sl, head_dd, curve_dd):
        control.observe(update, names="value")
    update()
    controls = w.VBox([w.HBox([clip_dd, win_sl]), w.HBox([layer_sl, head_dd, curve_dd])])
    box = w.VBox([controls, audio, image])
    box.add_class("vit1d-live-explorer")
    return box


def static_explorer(
    view: ClipView,
    window: int = 0,
    head: str = "mean",
    method: str = "row_change",
    layers: Sequence[int] | None = None,
    width: str = "720px",
    dpi: int = 80,
) -> Any:
    """The kernel-free explorer: one pre-rendered picture per layer of one window and head,
    a layer slider ``jslink``-ed to an ``ipywidgets.Stack`` (:func:`vit1d.viz.plots.image_stack`),
    and the window's audio player above it."""
    layers = list(layers) if layers is not None else list(range(1, view.n_layers + 1))
    images = [render_png(view, window, layer, head, method, dpi=dpi) for layer in layers]
    labels = [f"layer {layer}" for layer in layers]
    stack = plots.image_stack(images, labels, description="layer", width=width)
    audio = w.HTML(_audio_html(view_data(view, window, layers[0], head, method)["audio"]))
    box = w.VBox([audio, stack])
    box.add_class("vit1d-static-explorer")
    return box
