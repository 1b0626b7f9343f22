"""The audio grid every stage shares: sample rate, FFT, hop, mel bands and frame rate.

The paper's front end (docs/design.md, "Model and training facts"): mono audio at 16 kHz,
an STFT of 1024 samples every 512 (31.25 frames per second), 128 mel bands. Frame ``t`` is
centred at ``t / FRAME_RATE`` seconds. Kept free of torch and librosa so that the corpus
builder, the metrics and the analyses can read it without loading either; the front end
(:mod:`vit1d.audio.frontend`) computes on this grid.
"""

from __future__ import annotations

SAMPLE_RATE = 16_000
N_FFT = 1024
HOP_LENGTH = 512
N_MELS = 128
FRAME_RATE = SAMPLE_RATE / HOP_LENGTH  # 31.25 frames per second
