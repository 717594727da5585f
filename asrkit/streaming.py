"""Live transcription: the stream contract every backend implements, and a full-context stream.

The contract follows sherpa-onnx and Vosk::

    stream = model.create_stream()
    stream.accept_waveform(sample_rate, samples)   # as audio arrives, any rate, int or float
    stream.result()                                # committed + partial text so far
    stream.is_endpoint()                           # did the utterance end?
    stream.finish()                                # no more audio: final result
    stream.reset()                                 # start the next utterance

This module knows nothing of widgets: the UI feeds a stream, and so can a file, a socket or a test.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import soxr

from asrkit.audio import DEFAULT_LIMITS, SAMPLE_RATE, AudioLimits, AudioTooLongError, SampleRateError, to_mono
from asrkit.models.base import ASRModel, Span

# Energy voice activity works on 10 ms frames.
VAD_FRAME = SAMPLE_RATE // 100
VAD_FRAME_S = VAD_FRAME / SAMPLE_RATE


@dataclass(frozen=True)
class StreamResult:
    """What a stream has recognised so far."""

    # text that will not change any more
    committed: str
    # text that may still change as more audio arrives
    partial: str
    # word times in seconds from the start of the utterance, where the model gives them
    words: tuple[Span, ...] = ()

    @property
    def text(self) -> str:
        return " ".join(t for t in (self.committed, self.partial) if t)


@runtime_checkable
class Stream(Protocol):
    """One live utterance after another, from one audio source. Safe to feed from another thread."""

    def accept_waveform(self, sample_rate: int, samples: np.ndarray) -> None: ...

    def result(self) -> StreamResult: ...

    def is_endpoint(self) -> bool: ...

    def finish(self) -> StreamResult: ...

    def reset(self) -> None: ...


@dataclass(frozen=True)
class EndpointRule:
    """When an utterance counts as ended, in the manner of sherpa-onnx's three rules."""

    # silence after speech that ends the utterance, seconds
    trailing_silence_s: float = 1.2
    # silence with no speech at all that ends it, seconds
    silence_without_speech_s: float = 2.4
    # the utterance ends at this length whatever is heard, seconds
    max_utterance_s: float = 20.0
    # 10 ms frames louder than this (dB relative to full scale) count as speech
    speech_dbfs: float = -40.0


class BufferedStream:
    """A stream for any model: keeps the utterance's audio and transcribes all of it on ``result()``.

    Its final text equals offline transcription exactly, but each ``result()`` costs a pass over the
    whole utterance, and nothing is committed before ``finish()``. Chunked streaming of CTC models
    (the streaming engine) replaces it where a model can run incrementally.

    Examples
    --------
    >>> stream = model.create_stream()  # doctest: +SKIP
    >>> for chunk in chunks:  # doctest: +SKIP
    ...     stream.accept_waveform(48000, chunk)
    ...     print(stream.result().text)
    """

    def __init__(
        self, model: ASRModel, *, endpoint: EndpointRule = EndpointRule(), limits: AudioLimits = DEFAULT_LIMITS
    ) -> None:
        self.model = model
        self.endpoint = endpoint
        self.limits = limits
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._chunks: list[np.ndarray] = []
            self._n_samples = 0
            self._rate: int | None = None
            self._resampler: soxr.ResampleStream | None = None
            self._vad_tail = np.zeros(0, np.float32)
            self._speech_frames = 0
            self._trailing_silence_frames = 0
            self._finished = False
            self._cached: StreamResult | None = StreamResult("", "")

    def accept_waveform(self, sample_rate: int, samples: np.ndarray) -> None:
        """Add audio: shape (n,) or (n, channels), int or float, at ``sample_rate`` Hz.

        A bad chunk raises an :class:`~asrkit.audio.AudioError` and leaves the stream as it was.
        """
        mono = to_mono(samples, sample_rate=sample_rate, limits=self.limits)
        with self._lock:
            if self._finished:
                raise RuntimeError("this stream is finished: call reset() to start a new utterance")
            if self._rate is not None and sample_rate != self._rate:
                raise SampleRateError(
                    f"<array>: chunk at {sample_rate} Hz in a stream that started at {self._rate} Hz"
                )
            if (self._n_samples + len(mono) * SAMPLE_RATE / sample_rate) / SAMPLE_RATE > self.limits.max_duration_s:
                raise AudioTooLongError(
                    f"<stream>: utterance over the limit of {self.limits.max_duration_s:g} s; "
                    "call reset() at endpoints"
                )
            if self._rate is None:
                self._rate = int(sample_rate)
                if self._rate != SAMPLE_RATE:
                    self._resampler = soxr.ResampleStream(self._rate, SAMPLE_RATE, 1, dtype="float32")
            if self._resampler is not None:
                mono = self._resampler.resample_chunk(mono)
            self._append(mono.astype(np.float32, copy=False))

    def _append(self, audio: np.ndarray) -> None:
        self._chunks.append(audio)
        self._n_samples += len(audio)
        self._cached = None
        audio = np.concatenate([self._vad_tail, audio])
        n_frames = len(audio) // VAD_FRAME
        frames = audio[: n_frames * VAD_FRAME].reshape(n_frames, VAD_FRAME)
        self._vad_tail = audio[n_frames * VAD_FRAME :]
        level = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
        for loud in level > self.endpoint.speech_dbfs:
            self._speech_frames += int(loud)
            self._trailing_silence_frames = 0 if loud else self._trailing_silence_frames + 1

    def _audio(self) -> np.ndarray:
        if len(self._chunks) > 1:
            self._chunks = [np.concatenate(self._chunks)]
        return self._chunks[0] if self._chunks else np.zeros(0, np.float32)

    def result(self) -> StreamResult:
        """Everything recognised so far; nothing is committed until :meth:`finish`."""
        with self._lock:
            if self._cached is None:
                transcript = self.model.transcribe(self._audio())
                if self._finished:
                    self._cached = StreamResult(transcript.text, "", transcript.words)
                else:
                    self._cached = StreamResult("", transcript.text, transcript.words)
            return self._cached

    def is_endpoint(self) -> bool:
        rule = self.endpoint
        with self._lock:
            silence_s = self._trailing_silence_frames * VAD_FRAME_S
            return (
                (self._speech_frames > 0 and silence_s >= rule.trailing_silence_s)
                or (self._speech_frames == 0 and silence_s >= rule.silence_without_speech_s)
                or self._n_samples / SAMPLE_RATE >= rule.max_utterance_s
            )

    def finish(self) -> StreamResult:
        """No more audio for this utterance: flush the resampler and commit the whole text."""
        with self._lock:
            if not self._finished:
                if self._resampler is not None:
                    self._append(self._resampler.resample_chunk(np.zeros(0, np.float32), last=True))
                self._finished = True
                self._cached = None
        return self.result()
