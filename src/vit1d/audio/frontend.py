"""The log-mel front end and the audio loader.

The paper's input is mono audio at 16 kHz turned into a log-mel spectrogram with 128 bands,
hop 512 samples (31.25 frames/s), FFT size 1024, Slaney mel scale (docs/design.md, "Model and
training facts"). A 4 s segment (64 000 samples) with centred frames gives
``T = 1 + 64000 // 512 = 126`` frames.

:class:`LogMel` computes it in torch, batched, on whatever device its input lives on, so the
training loop never leaves the accelerator. Its mel power (before the log) is the same as
``librosa.feature.melspectrogram(y, sr=16000, n_fft=1024, hop_length=512, n_mels=128)``: a
centred STFT with zero padding and a periodic Hann window, magnitude squared, then librosa's
own Slaney filterbank (``librosa.filters.mel``), never a hand-written one.

The log is ``10 log10(max(P, amin))`` with ``amin = 1e-10``: a fixed floor at -100 dB
relative to a full-scale power of 1, i.e. the 100 dB dynamic range of the authors' front end,
made absolute so that a crop of a long spectrogram equals the spectrogram of the crop.
Used by: every notebook (``notebooks/01_method.ipynb`` shows it).
"""

from __future__ import annotations

from pathlib import Path

import librosa
import numpy as np
import soundfile as sf
import soxr
import torch
from torch import nn

# the grid's names stay importable from here (``from vit1d.audio.frontend import FRAME_RATE``)
from vit1d.audio.grid import FRAME_RATE as FRAME_RATE
from vit1d.audio.grid import HOP_LENGTH, N_FFT, N_MELS, SAMPLE_RATE
from vit1d.core.errors import UserError

AMIN = 1e-10  # power floor: -100 dB


def n_frames(n_samples: int, hop_length: int = HOP_LENGTH) -> int:
    """Number of centred STFT frames for ``n_samples`` samples: ``1 + n_samples // hop``."""
    return 1 + n_samples // hop_length


def frame_times(n: int, hop_length: int = HOP_LENGTH, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Centre time in seconds of each of ``n`` frames (frame ``t`` is centred on ``t * hop``)."""
    return np.arange(n) * hop_length / sr


class LogMel(nn.Module):
    """Waveform ``(B, samples)`` at 16 kHz -> log-mel ``(B, T, n_mels)`` in dB.

    ``T = 1 + samples // hop_length``. The filterbank and window are buffers, so
    ``LogMel().to(device)`` runs on that device; the transform runs in float32 whatever the
    autocast state, because a half-precision power spectrum loses the quiet bands.
    """

    def __init__(
        self,
        sample_rate: int = SAMPLE_RATE,
        n_fft: int = N_FFT,
        hop_length: int = HOP_LENGTH,
        n_mels: int = N_MELS,
        amin: float = AMIN,
    ) -> None:
        super().__init__()

        self.sample_rate = sample_rate
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.n_mels = n_mels
        self.amin = amin
        fb = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels)
        self.register_buffer("mel_fb", torch.from_numpy(fb).float(), persistent=False)
        self.register_buffer("window", torch.hann_window(n_fft, periodic=True), persistent=False)

    def mel_power(self, wave: torch.Tensor) -> torch.Tensor:
        """Mel power spectrogram ``(B, n_mels, T)``, librosa's layout and scale."""
        if wave.dim() == 1:
            wave = wave.unsqueeze(0)
        if wave.dim() != 2:
            raise ValueError(
                f"LogMel expects a waveform (B, samples), got shape {tuple(wave.shape)}"
            )
        with torch.autocast(wave.device.type, enabled=False):
            spec = torch.stft(
                wave.float(),
                n_fft=self.n_fft,
                hop_length=self.hop_length,
                window=self.window,
                center=True,
                pad_mode="constant",
                return_complex=True,
            )
            power = spec.real.square() + spec.imag.square()
            return torch.matmul(self.mel_fb, power)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        power = self.mel_power(wave)
        with torch.autocast(power.device.type, enabled=False):
            db = 10.0 * torch.log10(power.clamp_min(self.amin))
        return db.transpose(1, 2).contiguous()


#: Shortest audio accepted, in samples at 16 kHz: one analysis window (64 ms). A shorter
#: file has no frame that is not mostly zero padding.
MIN_SAMPLES = N_FFT
#: First bytes of each audio container, by file suffix; a file whose suffix is listed but whose
#: content starts with none of them is not audio (a web page, an image, a text file renamed).
MAGIC = {
    ".wav": (b"RIFF", b"RIFX", b"RF64", b"BW64", b"riff"),
    ".flac": (b"fLaC", b"ID3"),
    ".ogg": (b"OggS",),
    ".opus": (b"OggS",),
    ".mp3": (b"ID3",),  # or a bare MPEG frame: see _content_error
    ".aiff": (b"FORM",),
    ".aif": (b"FORM",),
}


def _content_error(path: Path) -> UserError | None:
    """A UserError when the bytes of ``path`` cannot be audio: an empty file, or a suffix whose
    container signature is missing. Checked before decoding, because decoders (mpg123) can
    resynchronise on arbitrary bytes and print noise instead of failing."""
    size = path.stat().st_size
    if size == 0:
        return UserError(
            f"audio file {path} is empty (0 bytes): an interrupted copy or export; "
            "copy or export it again, or remove it from the manifest"
        )
    signatures = MAGIC.get(path.suffix.lower())
    if signatures is None:
        return None
    with open(path, "rb") as fh:
        head = fh.read(16)
    if head.startswith(signatures):
        return None
    if path.suffix.lower() == ".mp3" and len(head) > 1 and head[0] == 0xFF and head[1] >= 0xE0:
        return None  # an MP3 without ID3 tag starts with an 11-bit frame sync
    return UserError(
        f"{path} is not audio: its name ends in {path.suffix} but it starts with {head[:8]!r}, "
        f"not the header of a {path.suffix} file (a web page, image or text saved under an "
        "audio name?); replace it with the real audio file, or remove it from the manifest"
    )


def load_audio(path: str | Path, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Read an audio file as mono float32 at ``sr`` Hz.

    Accepted and converted: any channel count (channels are averaged), any sample rate
    (converted with soxr, high quality), any sample format libsndfile reads (8/16/24/32-bit
    integer or float, scaled to [-1, 1]). Raises :class:`UserError` naming the file, the
    problem and the fix when it is missing, empty, not audio, damaged, holds non-finite
    samples or is shorter than one analysis window (:data:`MIN_SAMPLES` at 16 kHz). Silence is
    valid audio (a pause in a pool, a silent intro): :class:`LogMel` maps it to its dB floor.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"audio file not found: {path} (check the path, or the manifest that names it)"
        )
    not_audio = _content_error(path)
    if not_audio is not None:
        raise not_audio
    try:
        data, file_sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises several types for corrupt files
        reason = str(exc).strip().rstrip(".")
        raise UserError(
            f"cannot decode audio file {path}: it is damaged or in a format libsndfile cannot "
            f"read ({reason}); re-export it from its source, or convert it to WAV or FLAC "
            "(for example with ffmpeg or sox), or remove it from the manifest"
        ) from None
    if data.size == 0:
        raise UserError(f"audio file {path} is empty (0 samples); remove it or re-export it")
    mono = data.mean(axis=1)
    if not np.all(np.isfinite(mono)):
        raise UserError(
            f"audio file {path} contains NaN or infinite samples; re-export it from its "
            "source, or remove it from the manifest"
        )
    if file_sr != sr:
        mono = soxr.resample(mono, file_sr, sr, quality="HQ")
    # compare durations at 16 kHz whatever ``sr`` the caller asked for
    if len(mono) * SAMPLE_RATE < MIN_SAMPLES * sr:
        raise UserError(
            f"audio file {path} is too short: {len(mono) / sr * 1000:.1f} ms, less than one "
            f"analysis window ({MIN_SAMPLES / SAMPLE_RATE * 1000:.0f} ms); remove it from the "
            "manifest or replace it with a longer recording"
        )
    return np.ascontiguousarray(mono, dtype=np.float32)
