"""Embeddings in the HEAR 2021 convention (Turian et al., "HEAR: Holistic Evaluation of Audio
Representations"): :func:`load_model`, :func:`get_scene_embeddings`,
:func:`get_timestamp_embeddings`, so a ViT-1D checkpoint can be evaluated by ``hear-eval-kit``
or used by any code written for that API.

**HEAR API.** ::

    import torch
    from vit1d import hear

    model = hear.load_model()                     # the reference checkpoint, layer 8, avg pooling
    model = hear.load_model("runs/default/pretrain", layer=6, pooling="cls")   # or any folder
    audio = torch.zeros(3, 10 * model.sample_rate)                 # (n_sounds, n_samples)
    scene = hear.get_scene_embeddings(audio, model)                # (3, 192)
    emb, ts = hear.get_timestamp_embeddings(audio, model)          # (3, 313, 192), (3, 313) ms

**Reference checkpoint.** ``load_model()`` with no path loads the committed reference
checkpoint, found by :func:`vit1d.core.paths.reference_checkpoint`: the folder named by the
environment variable ``VIT1D_REFERENCE``, else ``checkpoints/reference`` of the source
checkout the package runs from. An installed wheel does not carry it: set
``VIT1D_REFERENCE`` to the ``checkpoints/reference`` folder of a clone of the repository.

Audio is mono float at 16 kHz, one row per sound (HEAR gives every sound of a batch the same
length). ``model`` is a :class:`torch.nn.Module`: ``model.to("cuda")`` moves the log-mel front
end and the backbone together.

**Layer.** Embeddings are the hidden states of one depth (0 = the embeddings, ``l`` = the
output of block ``l``, before the final norm: the numbering of ``vit1d embed`` and of the
``layer`` column of the probe results). The default is :func:`default_layer`,
``2 * depth // 3`` (block 8 of 12 at the paper's sizes), a middle-to-late layer: the last
blocks are shaped most directly by the contrastive loss, which sees only the class token
through the projection head, while the best layer for a probe depends on the task (claim C5 of
the book). Pass ``layer=`` to follow the probe results of your task.

**Scene embeddings** (``pooling``): per 4 s window, ``avg`` (default) = ``(cls + seq) / 2``,
the average of the class token and the mean of the sequence tokens (the mean over all
``1 + T`` tokens would give the class token a weight of ``1 / (1 + T)``); ``cls`` = the class
token; ``seq`` = the mean of the sequence tokens. The window vectors are then averaged over
the windows of the sound (:func:`vit1d.features.windows.pool_window`, the pooling of ``vit1d embed``).

**Timestamp embeddings**: the sequence tokens of the chosen layer, one per log-mel frame
(31.25 per second, 32 ms apart), put back on the sound's frame grid.

**Windows.** The model has positions for ``max_frames`` = 126 frames (4 s). The log-mel of the
whole sound is computed once (a crop of it equals the log-mel of the crop, up to the edges)
and cut as the feature cache cuts files with its defaults (:meth:`vit1d.features.windows.ExtractSettings.windows`):
windows of 4 s (126 frames) starting every 4 s (125 frames), the last one aligned to the end of
the sound, so every window has real audio as context and none is padded. Each frame is taken
from the first window that covers it (:func:`vit1d.features.windows.frame_spans`; no frame is averaged),
so the timestamp embeddings equal the frame tokens of ``vit1d embed`` at the same layer. A
sound of 4 s or less is one window of its own length. The scene embedding averages the pooled
vectors of all windows, the end-aligned one included.

**Timestamps** are frame centres in milliseconds: ``LogMel`` frames are centred STFT frames,
frame ``i`` centred on sample ``i * hop`` (offset 0), so ``t_i = 1000 * (i * 512 + 0) / 16000
= 32 i`` ms. They are computed from the frame index, never by adding window offsets in
floating point, so they do not drift however long the sound is (returned as float32, exact
integers up to 2**24 ms, 4.6 h). A sound of ``n`` samples has ``1 + n // 512`` frames.

Inputs are checked (a 2-D floating-point tensor, mono, 16 kHz, finite): a wrong one raises
:class:`vit1d.core.errors.UserError` naming the fix. Computation runs under
``torch.inference_mode`` (the caller's grad mode is untouched) in float32 on the model's
device; outputs are ordinary tensors (not inference tensors) on the device of the input.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from torch import nn
from tqdm.auto import tqdm

from vit1d import __version__
from vit1d.audio.frontend import HOP_LENGTH, SAMPLE_RATE, LogMel, load_audio
from vit1d.core import atomic
from vit1d.core.errors import UserError
from vit1d.core.paths import reference_checkpoint
from vit1d.core.provenance import weights_fingerprint
from vit1d.features.windows import POOLINGS, ExtractSettings, pool_window
from vit1d.models.checkpoint import atomic_write_text, load_pretrained
from vit1d.models.model import ViT1D
from vit1d.pretrain.data import AUDIO_SUFFIXES

#: Frame ``i`` is centred on sample ``i * HOP_LENGTH + FRAME_OFFSET`` (centred STFT).
FRAME_OFFSET = 0


def default_layer(depth: int) -> int:
    """The default depth of the embeddings: ``2 * depth // 3`` (8 of 12), at least block 1."""
    return min(depth, max(1, 2 * depth // 3))


def timestamps_ms(n_frames: int, n_sounds: int = 1) -> torch.Tensor:
    """``(n_sounds, n_frames)`` float32 frame centres in ms, ``1000 (i hop + offset) / sr``,
    computed from the index in float64 (no accumulated rounding)."""
    i = torch.arange(n_frames, dtype=torch.float64)
    t = (i * HOP_LENGTH + FRAME_OFFSET) * 1000.0 / SAMPLE_RATE
    return t.to(torch.float32).expand(n_sounds, n_frames).contiguous()


class HEARModel(nn.Module):
    """A frozen ViT-1D with its log-mel front end, as :func:`load_model` returns it.

    ``layer``: the depth embedded; ``pooling``: ``avg``, ``cls`` or ``seq`` for scene
    embeddings; ``batch_size``: windows per forward pass (memory, not results).
    """

    sample_rate = SAMPLE_RATE

    def __init__(
        self, backbone: ViT1D, layer: int | None = None, pooling: str = "avg", batch_size: int = 64
    ) -> None:
        super().__init__()
        depth = backbone.depth
        if layer is None:
            layer = default_layer(depth)
        valid = isinstance(layer, (int, np.integer)) and not isinstance(layer, bool)
        if not valid or not -depth - 1 <= layer <= depth:
            raise UserError(
                f"layer must be an integer from 0 (embeddings) to {depth} (last block), or a "
                f"negative index; got {layer!r}"
            )
        if pooling not in POOLINGS:
            raise UserError(f"pooling must be one of {', '.join(POOLINGS)}; got {pooling!r}")
        if batch_size < 1:
            raise UserError(f"batch_size must be at least 1; got {batch_size}")
        self.backbone = backbone.eval()
        self.logmel = LogMel()
        self.layer = int(layer) % (depth + 1)
        self.pooling = pooling
        self.batch_size = batch_size
        self.scene_embedding_size = backbone.dim
        self.timestamp_embedding_size = backbone.dim

    def hidden(self, mel: torch.Tensor) -> torch.Tensor:
        """``(B, 1 + T, dim)`` hidden state of :attr:`layer` for log-mel windows ``mel``.

        Only blocks up to ``layer`` run (the later ones cannot change it); this equals
        ``backbone(mel, output_hidden_states=True).hidden_states[layer]`` (tested)."""
        x = self.backbone.embed(mel)
        for block in self.backbone.blocks[: self.layer]:
            x, _ = block(x)
        return x

    def embed_audio(
        self, audio: torch.Tensor, frames: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Checked audio ``(N, samples)`` -> scene ``(N, dim)`` and (when ``frames``) frame
        tokens ``(N, T, dim)``, both on the model's device (see the module docstring)."""
        device = next(self.backbone.parameters()).device
        mel = self.logmel(audio.to(device=device, dtype=torch.float32))  # (N, T, n_mels)
        n, t = mel.shape[:2]
        # cut as the feature cache cuts with its defaults (4 s windows every 4 s)
        window, starts, spans = ExtractSettings().windows(t, self.backbone.max_frames)
        pool_i = POOLINGS.index(self.pooling)
        scene = torch.zeros(n, self.backbone.dim, device=device)
        out = torch.empty(n, t, self.backbone.dim, device=device) if frames else None
        # rows are (window, sound) pairs, all of the same length: batch them across both
        items = [(k, j) for k in range(len(starts)) for j in range(n)]
        for b in range(0, len(items), self.batch_size):
            batch = items[b : b + self.batch_size]
            x = torch.stack([mel[j, starts[k] : starts[k] + window] for k, j in batch])
            h = self.hidden(x).float()
            pooled = pool_window(h[None])[0, :, pool_i]  # (B, dim)
            for r, (k, j) in enumerate(batch):
                scene[j] += pooled[r]
                if out is not None:
                    a, e = spans[k]
                    out[j, a:e] = h[r, 1 + a - starts[k] : 1 + e - starts[k]]
        return scene / len(starts), out


def _resolve_checkpoint(model_file_path: str | Path) -> Path:
    """The checkpoint folder meant by ``model_file_path`` (see :func:`load_model`)."""
    if not str(model_file_path):
        return reference_checkpoint()
    path = Path(model_file_path).expanduser()
    if path.is_file() and path.name in ("model.safetensors", "config.json"):
        path = path.parent  # HEAR passes a "model file": accept a file of the folder too
    if not path.exists():
        raise UserError(
            f"checkpoint not found: {path}; pass a folder holding model.safetensors and "
            "config.json (written by `vit1d pretrain` or `make reference`)"
        )
    return path


def load_model(
    model_file_path: str = "", layer: int | None = None, pooling: str = "avg"
) -> HEARModel:
    """A :class:`HEARModel` from a checkpoint folder (or its ``model.safetensors``); ``""``
    loads the committed reference checkpoint (``VIT1D_REFERENCE``, else the checkout's).
    ``layer`` defaults to :func:`default_layer`; ``pooling`` (``avg``, ``cls``, ``seq``)
    chooses the scene embedding. On the CPU, in eval mode: move it with ``.to(device)``."""

    backbone = load_pretrained(_resolve_checkpoint(model_file_path), head=False)
    return HEARModel(backbone, layer=layer, pooling=pooling).eval()


def _check(audio: torch.Tensor, model: HEARModel, sample_rate: int | None) -> None:
    """Raise :class:`UserError` naming the fix for input the model cannot embed."""
    if not isinstance(model, HEARModel):
        raise UserError(
            f"model must be what vit1d.features.hear.load_model returns, got {type(model).__name__}; "
            "wrap a checkpoint with load_model(folder)"
        )
    if sample_rate is not None and sample_rate != SAMPLE_RATE:
        raise UserError(
            f"audio must be at {SAMPLE_RATE} Hz, got {sample_rate} Hz; resample it first "
            "(e.g. torchaudio.functional.resample(audio, sr, 16000) or soxr.resample)"
        )
    if isinstance(audio, np.ndarray):
        raise UserError("audio must be a torch.Tensor; convert with torch.from_numpy(audio)")
    if not isinstance(audio, torch.Tensor):
        raise UserError(f"audio must be a torch.Tensor (n_sounds, n_samples), got {type(audio)}")
    if audio.dim() == 1:
        raise UserError(
            f"audio must be 2-D (n_sounds, n_samples), got 1-D {tuple(audio.shape)}; "
            "for one sound pass audio[None]"
        )
    if audio.dim() == 3:
        raise UserError(
            f"audio must be mono (n_sounds, n_samples), got {tuple(audio.shape)}; mix the "
            "channels down first, e.g. audio.mean(dim=1)"
        )
    if audio.dim() != 2:
        raise UserError(f"audio must be 2-D (n_sounds, n_samples), got {tuple(audio.shape)}")
    if not audio.is_floating_point():
        raise UserError(
            f"audio must be floating point in [-1, 1], got {audio.dtype}; for 16-bit PCM use "
            "audio.float() / 32768"
        )
    n, samples = audio.shape
    if n == 0 or samples == 0:
        raise UserError(f"audio is empty {tuple(audio.shape)}: give at least one sound and sample")
    if samples <= 2 < n:
        raise UserError(
            f"audio of shape {tuple(audio.shape)} looks like (n_samples, channels); pass mono "
            "(n_sounds, n_samples), e.g. audio.mean(dim=1)[None]"
        )
    if not bool(torch.isfinite(audio).all()):
        raise UserError("audio contains NaN or infinite samples; clean or re-export it")


def get_scene_embeddings(
    audio: torch.Tensor, model: HEARModel, *, sample_rate: int | None = None
) -> torch.Tensor:
    """``(n_sounds, scene_embedding_size)``: the ``model.pooling`` vector of ``model.layer``
    averaged over 4 s windows. ``sample_rate``, if given, is checked to be 16 000."""
    _check(audio, model, sample_rate)
    with torch.inference_mode():
        scene, _ = model.embed_audio(audio, frames=False)
    # a clone outside inference mode is an ordinary tensor: callers may modify it in place
    # or feed it to autograd, which inference tensors refuse
    return scene.clone().to(audio.device)


def get_timestamp_embeddings(
    audio: torch.Tensor, model: HEARModel, *, sample_rate: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(n_sounds, n_frames, timestamp_embedding_size)`` sequence tokens of ``model.layer``
    and ``(n_sounds, n_frames)`` their frame centres in ms (``32 i``), ``n_frames = 1 +
    n_samples // 512``. ``sample_rate``, if given, is checked to be 16 000."""
    _check(audio, model, sample_rate)
    with torch.inference_mode():
        _, frames = model.embed_audio(audio, frames=True)
    assert frames is not None
    n, t = frames.shape[:2]
    return frames.clone().to(audio.device), timestamps_ms(t, n).to(audio.device)


def embed_folder(
    folder: str | Path,
    out: str | Path,
    model: HEARModel,
    timestamps: bool = False,
    progress: bool = True,
) -> dict[str, object]:
    """Embed every audio file under ``folder`` (recursive; the formats of a pretraining pool)
    with ``model`` and write, per file, ``out/files/<relative path>.npz`` holding ``scene``
    ``(D,)`` and, with ``timestamps``, ``embeddings`` ``(T, D)`` and ``timestamps_ms``
    ``(T,)``; then ``out/scene.npy`` ``(N, D)`` with ``out/files.csv`` naming its rows, and
    ``out/embed.json`` (the weights' SHA-256, layer, pooling, skipped files). A folder holding
    another model's, layer's or pooling's embeddings is refused.

    Resumable: a file whose ``.npz`` exists (written atomically) is not recomputed. A file
    that cannot be decoded is skipped and listed with its reason in ``files.csv``.
    """
    folder, out = Path(folder), Path(out)
    if not folder.is_dir():
        raise UserError(f"--audio {folder} is not a folder; pass a folder of audio files")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise UserError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) under {folder}")
    identity = {
        "weights_sha256": weights_fingerprint(model.backbone),
        "layer": model.layer,
        "pooling": model.pooling,
    }
    _claim_folder(out, identity)
    rows, scenes = [], []
    for path in tqdm(files, desc="embed", unit="file", disable=not progress):
        rel = path.relative_to(folder).as_posix()
        target = out / "files" / f"{rel}.npz"
        if not _complete(target, timestamps):
            problem = _embed_file(path, target, model, timestamps)
            if problem:
                rows.append({"row": "", "file": rel, "seconds": "", "skipped": problem})
                continue
        with np.load(target) as saved:
            scenes.append(saved["scene"])
        rows.append(
            {"row": len(scenes) - 1, "file": rel, "seconds": _duration(path), "skipped": ""}
        )
    if not scenes:
        raise UserError(f"none of the {len(files)} audio files under {folder} could be decoded")
    with atomic.replacing(out / "scene.npy", suffix=".npy") as tmp:
        np.save(tmp, np.stack(scenes).astype(np.float32))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, ["row", "file", "seconds", "skipped"])
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "files.csv", buffer.getvalue())
    report = {
        **identity,
        "complete": True,
        "vit1d_version": __version__,
        "folder": str(folder),
        "files": len(scenes),
        "skipped": [r["file"] for r in rows if r["skipped"]],
        "scene_dim": int(scenes[0].shape[0]),
        "timestamps": timestamps,
        "frame_period_ms": 1000 * HOP_LENGTH / SAMPLE_RATE,
    }
    atomic_write_text(out / "embed.json", json.dumps(report, indent=2))
    return report


def _claim_folder(out: Path, identity: dict[str, Any]) -> None:
    """Refuse ``out`` when it holds another model's, layer's or pooling's embeddings; mark a
    new one with ``identity`` first, so that an interrupted run is recognised on resuming."""
    earlier = out / "embed.json"
    if earlier.is_file():
        saved = json.loads(earlier.read_text())
        if {k: saved.get(k) for k in identity} != identity:
            raise UserError(
                f"{out} holds embeddings of another model, layer or pooling "
                f"(layer {saved.get('layer')}, {saved.get('pooling')} pooling); pass another "
                "--out, or delete that folder to start again"
            )
    else:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(earlier, json.dumps({**identity, "complete": False}, indent=2))


def _embed_file(path: Path, target: Path, model: HEARModel, timestamps: bool) -> str:
    """Write ``target`` (``.npz``, atomically) with the file's scene embedding and, with
    ``timestamps``, its frame embeddings; returns why the file was skipped, or ``""``."""
    device = next(model.parameters()).device
    try:
        wave = torch.from_numpy(load_audio(path))[None].to(device)
    except UserError as exc:
        return str(exc)
    arrays = {"scene": get_scene_embeddings(wave, model)[0].cpu().numpy()}
    if timestamps:
        emb, ts = get_timestamp_embeddings(wave, model)
        arrays["embeddings"] = emb[0].cpu().numpy()
        arrays["timestamps_ms"] = ts[0].cpu().numpy()
    with atomic.replacing(target, suffix=".npz") as tmp:  # np.savez adds no suffix then
        np.savez(tmp, **arrays)
    return ""


def _complete(target: Path, timestamps: bool) -> bool:
    """Whether ``target`` holds what this run writes (an earlier run may lack timestamps)."""
    if not target.is_file():
        return False
    if not timestamps:
        return True
    with np.load(target) as saved:
        return "embeddings" in saved


def _duration(path: Path) -> float:
    return round(float(sf.info(str(path)).duration), 3)
