"""A scrolling log-mel spectrogram of live audio, as PNG images, in constant memory, and its axes.

Frames go into a ring buffer holding the last few seconds, so an hour of audio costs what a few
seconds do. Pictures are drawn straight from the array with a fixed colour scale (no matplotlib
figure per update), cheap enough to redraw several times a second. The axes (frequency beside the
picture, seconds before now under it) are HTML, so their labels keep their size however wide the
picture is drawn.
"""

from __future__ import annotations

import html
import io

import numpy as np
import soxr
from matplotlib import colormaps
from PIL import Image

from asrkit.audio import SAMPLE_RATE, to_mono
from asrkit.features import FRAMES_PER_SECOND, LOG_FLOOR, FeatureConfig, StreamingFeatureExtractor
from asrkit.plotting import frequency_label, mel_position

# Seconds of audio shown.
WINDOW_S = 8.0
# Natural-log mel energies mapped to the ends of the colour scale: digital silence sits at
# log(LOG_FLOOR) = -13.8, loud speech peaks near +2 to +4.
LOG_RANGE = (-13.0, 2.0)
COLORMAP = "magma"
# Each mel band is drawn this many pixels tall.
ROW_PIXELS = 2
# Frequencies marked beside the live picture, Hz: few, so that they stay apart on a phone's narrow picture.
AXIS_FREQUENCIES_HZ = (500, 1000, 2000, 4000, 8000)
# A frequency label closer than this to the picture's top (percent of its height) hangs from the top.
TOP_MARGIN_PERCENT = 5.0
# Seconds between the time axis's marks.
AXIS_STEP_S = 2.0


def frequency_axis_html(config: FeatureConfig = FeatureConfig()) -> str:
    """Labels of :data:`AXIS_FREQUENCIES_HZ`, each centred at its height on the picture (percent from the bottom)."""
    top = config.fmax or config.sample_rate / 2
    marks = []
    for frequency in (f for f in AXIS_FREQUENCIES_HZ if f <= top):
        height = 100 * (mel_position(frequency, config=config) + 0.5) / config.n_mels
        # a label centred on the picture's top edge would be cut in half: it hangs from the edge instead
        where = "top:0" if height > 100 - TOP_MARGIN_PERCENT else f"bottom:{height:.1f}%"
        marks.append(f'<span style="{where}">{html.escape(frequency_label(frequency))}</span>')
    return f'<div class="asrkit-axis-frequency" title="frequency">{"".join(marks)}</div>'


def time_axis_html(window_s: float = WINDOW_S) -> str:
    """Labels of seconds before now under a picture of the last ``window_s`` seconds ("now" at the right).

    Examples
    --------
    >>> import re
    >>> re.findall(r">([^<]+)</span>", time_axis_html(4.0))
    ['−4 s', '−2 s', 'now']
    """
    marks, ago = [], window_s
    while ago > 1e-9:
        marks.append(f'<span style="left:{100 * (1 - ago / window_s):.1f}%">−{ago:g} s</span>')
        ago -= AXIS_STEP_S
    marks.append('<span class="asrkit-axis-now" style="right:0">now</span>')
    return f'<div class="asrkit-axis-time" title="seconds before now">{"".join(marks)}</div>'


class LiveSpectrogram:
    """The last ``window_s`` seconds of log-mel frames of audio fed in pieces.

    Parameters
    ----------
    window_s : float
        Seconds shown; older frames are overwritten.
    config : FeatureConfig
        Framing and filterbank (16 kHz log-mel).

    Examples
    --------
    >>> spectrogram = LiveSpectrogram(window_s=2.0)
    >>> spectrogram.accept_waveform(48000, np.zeros(48000, np.int16))
    >>> spectrogram.frames_seen, spectrogram.png()[:4]
    (96, b'\\x89PNG')
    """

    def __init__(self, *, window_s: float = WINDOW_S, config: FeatureConfig = FeatureConfig()) -> None:
        if not window_s > 0:
            raise ValueError(f"window_s must be positive, got {window_s}")
        self.config = config
        self._ring = np.full((round(window_s * FRAMES_PER_SECOND), config.n_mels), np.log(LOG_FLOOR), np.float32)
        self._extractor = StreamingFeatureExtractor(config)
        # librosa loads its compiled kernels on first use (seconds, holding the GIL): pay that now,
        # while the page loads, not in the first second of a recording
        self._extractor.accept_waveform(np.zeros(config.n_fft, np.float32))
        self._extractor.reset()
        self._colours = (colormaps[COLORMAP](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)
        self._rate: int | None = None
        self._resampler: soxr.ResampleStream | None = None
        # frames written since construction; the ring's next slot is frames_seen % its length
        self.frames_seen = 0

    def accept_waveform(self, sample_rate: int, samples: np.ndarray) -> None:
        """Add audio at any rate, int or float, shape (n,) or (n, channels).

        Raises an :class:`~asrkit.audio.AudioError` for malformed samples; nothing is added then.
        """
        mono = to_mono(samples, sample_rate=sample_rate)
        if sample_rate != self._rate:
            self._rate = sample_rate
            self._resampler = (
                None
                if sample_rate == SAMPLE_RATE
                else soxr.ResampleStream(sample_rate, SAMPLE_RATE, 1, dtype="float32")
            )
        audio = mono if self._resampler is None else self._resampler.resample_chunk(mono)
        frames = self._extractor.accept_waveform(audio)[-len(self._ring) :]
        slots = (self.frames_seen + np.arange(len(frames))) % len(self._ring)
        self._ring[slots] = frames
        self.frames_seen += len(frames)

    def image(self) -> np.ndarray:
        """RGB picture, shape (n_mels * ROW_PIXELS, frames, 3), oldest frame left, low bands at the bottom."""
        ordered = np.roll(self._ring, -(self.frames_seen % len(self._ring)), axis=0)
        low, high = LOG_RANGE
        levels = np.clip((ordered - low) / (high - low) * 255, 0, 255).astype(np.uint8)
        picture = self._colours[levels.T[::-1]]
        return np.repeat(picture, ROW_PIXELS, axis=0)

    def png(self) -> bytes:
        buffer = io.BytesIO()
        # speed over size: a live picture is replaced within a second
        Image.fromarray(self.image()).save(buffer, format="PNG", compress_level=1)
        return buffer.getvalue()
