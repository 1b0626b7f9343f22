"""The analyses' figures as PNG files (``vit1d analyses --figures``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vit1d.audio.grid import FRAME_RATE
from vit1d.core import atomic
from vit1d.viz import analysis_plots


def write_figures(results: dict[str, Any], out: Path) -> dict[str, Path]:
    """PNG figures of the summaries (layer x head onset heatmap, layer x dimension SSM
    heatmap, novelty per layer) into ``out``. Each figure is closed once saved; no backend is
    forced (headless, matplotlib falls back to Agg by itself)."""
    written = {}
    if "onsets" in results:
        fig = analysis_plots.onset_heatmap(results["onsets"]["summary"])
        written["onset_heatmap"] = _save(fig, out / "onset_heatmap.png")
    if "ssm" in results:
        fig = analysis_plots.ssm_score_heatmap(results["ssm"]["summary"])
        written["ssm_heatmap"] = _save(fig, out / "ssm_heatmap.png")
        fig = analysis_plots.novelty_layers_figure(results["ssm"]["novelty_summary"])
        written["novelty_layers"] = _save(fig, out / "novelty_layers.png")
        for i, (clip, mats) in enumerate(results["ssm"].get("examples", {}).items()):
            fig = analysis_plots.ssm_panels(mats, FRAME_RATE, ncols=5, title=f"{clip}, first 4 s")
            written[f"ssm_example_{i}"] = _save(fig, out / f"ssm_example_{i}.png")
    return written


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    try:
        with atomic.replacing(path, suffix=path.suffix) as tmp:  # matplotlib reads the suffix
            fig.savefig(tmp, dpi=100, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path
