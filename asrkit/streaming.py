"""Live transcription: the machinery behind the stream contract every backend implements.

The contract (:class:`~asrkit.contracts.Stream` and :class:`~asrkit.contracts.StreamResult`, defined in
:mod:`asrkit.contracts` and importable from here) follows sherpa-onnx and Vosk::

    stream = model.create_stream()
    stream.accept_waveform(sample_rate, samples)   # as audio arrives, any rate, int or float
    stream.result()                                # committed + partial text so far
    stream.is_endpoint()                           # did the utterance end?
    stream.finish()                                # no more audio: final result
    stream.reset()                                 # start the next utterance

A backend supplies only a :class:`Recognizer` (audio in, the utterance's words so far out);
:class:`ChunkedStream` adds what every stream needs: validation and resampling of chunks, a voice-activity
detector (:mod:`asrkit.vad`) with sherpa-onnx's endpoint rules, and a commit policy under which committed
words never change.
:class:`Session` strings utterances together for as long as audio comes, so an hour of audio never
makes one hour-long utterance. This module knows nothing of widgets: the UI feeds a stream, and so can
a file, a socket or a test.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

import numpy as np
import soxr

from asrkit.audio import DEFAULT_LIMITS, SAMPLE_RATE, AudioLimits, AudioTooLongError, SampleRateError, to_mono
from asrkit.contracts import ASRModel, Span, Stream, StreamResult
from asrkit.vad import VAD_FRAME_S, VAD_NAMES, make_vad

__all__ = [
    "AudioIntake",
    "BufferedStream",
    "ChunkedStream",
    "CommitListener",
    "CommitRule",
    "Emission",
    "EndpointRule",
    "PartialFilter",
    "Recognizer",
    "Session",
    "Stream",
    "StreamResult",
]


@runtime_checkable
class Recognizer(Protocol):
    """The model-specific half of a :class:`ChunkedStream`: 16 kHz audio in, the utterance's words out.

    Called under the stream's lock, so it need not be thread-safe itself.
    """

    def accept_waveform(self, samples: np.ndarray) -> bool:
        """Feed mono float32 samples at 16 kHz, shape (n,); True when a decoding step ran, so that
        :meth:`hypothesis` may have moved on (the commit policy counts these steps)."""
        ...

    def hypothesis(self) -> tuple[Span, ...]:
        """The words of the utterance so far, times in seconds from its start."""
        ...

    def finish(self) -> tuple[Span, ...]:
        """No more audio: decode what is left and return the final words."""
        ...

    def reset(self) -> None:
        """Forget the utterance, ready for the next."""
        ...


@runtime_checkable
class PartialFilter(Protocol):
    """A :class:`Recognizer` that knows which of its uncommitted words are too unsure to show: they
    still count towards agreement and are committed as usual, but the partial stops before them."""

    def shown(self, words: list[Span]) -> list[Span]:
        """The leading words of ``words`` (the hypothesis's uncommitted ones) worth showing."""
        ...


@runtime_checkable
class CommitListener(Protocol):
    """A :class:`Recognizer` that wants to know which of its words the stream committed (to stop
    re-decoding their audio, or to prompt with them)."""

    def on_commit(self, words: tuple[Span, ...]) -> None:
        """``words`` are committed, following the ones committed before in this utterance."""
        ...


@dataclass(frozen=True)
class EndpointRule:
    """When an utterance counts as ended, in the manner of sherpa-onnx's three rules."""

    # silence after speech that ends the utterance, seconds (sherpa-onnx's rule 2)
    trailing_silence_s: float = 1.2
    # silence with no speech at all that ends it, seconds (rule 1)
    silence_without_speech_s: float = 2.4
    # the utterance ends at this length whatever is heard, seconds (rule 3)
    max_utterance_s: float = 20.0
    # for the energy detector: 10 ms frames louder than this (dB relative to full scale) count as speech
    speech_dbfs: float = -40.0
    # which voice-activity detector decides speech frames: "energy", "webrtc" or "silero" (asrkit.vad);
    # silero missed and falsely fired the fewest endpoints on speech in noise (benchmarks/bench_vad.py)
    vad: str = "silero"

    def __post_init__(self) -> None:
        if self.vad not in VAD_NAMES:
            raise ValueError(f"EndpointRule.vad must be one of {', '.join(VAD_NAMES)}; got {self.vad!r}")


@dataclass(frozen=True)
class CommitRule:
    """When a word of the hypothesis becomes committed (LocalAgreement-n, as in whisper_streaming)."""

    # consecutive decoding steps whose hypotheses must agree on a word before it is committed; the
    # newest hypothesis's last word is never committed before finish(), since it may still grow
    agreement: int = 2

    def __post_init__(self) -> None:
        if self.agreement < 1:
            raise ValueError(f"agreement must be at least 1 hypothesis, got {self.agreement}")


class AudioIntake:
    """The front of every stream: checks each chunk, resamples to 16 kHz in order, listens for endpoints.

    A chunk that fails a check raises an :class:`~asrkit.audio.AudioError` before anything changes,
    so the stream carries on as if it had never come.
    """

    def __init__(self, *, endpoint: EndpointRule, limits: AudioLimits) -> None:
        self.endpoint = endpoint
        self.limits = limits
        self.vad = make_vad(endpoint.vad, speech_dbfs=endpoint.speech_dbfs)
        self.reset()

    def reset(self) -> None:
        self.vad.reset()
        self.n_samples = 0
        self._rate: int | None = None
        self._resampler: soxr.ResampleStream | None = None

    @property
    def duration_s(self) -> float:
        """Seconds of 16 kHz audio let in since the last reset."""
        return self.n_samples / SAMPLE_RATE

    def accept_waveform(self, sample_rate: int, samples: np.ndarray) -> np.ndarray:
        """Check one chunk, shape (n,) or (n, channels), int or float; return it mono float32 at 16 kHz."""
        mono = to_mono(samples, sample_rate=sample_rate, limits=self.limits)
        if self._rate is not None and sample_rate != self._rate:
            raise SampleRateError(f"<array>: chunk at {sample_rate} Hz in a stream that started at {self._rate} Hz")
        if self.duration_s + len(mono) / sample_rate > self.limits.max_duration_s:
            raise AudioTooLongError(
                f"<stream>: utterance over the limit of {self.limits.max_duration_s:g} s; call reset() at endpoints"
            )
        if self._rate is None:
            self._rate = int(sample_rate)
            if self._rate != SAMPLE_RATE:
                self._resampler = soxr.ResampleStream(self._rate, SAMPLE_RATE, 1, dtype="float32")
        return self._admit(mono if self._resampler is None else self._resampler.resample_chunk(mono))

    def flush(self) -> np.ndarray:
        """The samples the resampler still holds back, at the end of an utterance."""
        if self._resampler is None:
            return np.zeros(0, np.float32)
        return self._admit(self._resampler.resample_chunk(np.zeros(0, np.float32), last=True))

    def _admit(self, audio: np.ndarray) -> np.ndarray:
        audio = audio.astype(np.float32, copy=False)
        self.n_samples += len(audio)
        self.vad.accept_waveform(audio)
        return audio

    def is_endpoint(self) -> bool:
        rule, vad = self.endpoint, self.vad
        silence_s = vad.trailing_silence_frames * VAD_FRAME_S
        return (
            (vad.speech_frames > 0 and silence_s >= rule.trailing_silence_s)
            or (vad.speech_frames == 0 and silence_s >= rule.silence_without_speech_s)
            or self.duration_s >= rule.max_utterance_s
        )


def _same_word(a: Span, b: Span) -> bool:
    return a.text == b.text


def _revised(shown: list[Span], new: list[Span]) -> int:
    """Shown words that ``new`` changes or drops: from the first one it does not keep, counting the
    word being spelled out ("th" then "the") as kept, since nothing on screen is taken back."""
    for i, word in enumerate(shown):
        if i < len(new) and new[i].text == word.text:
            continue
        grown = i == len(shown) - 1 and i < len(new) and new[i].text.startswith(word.text)
        return 0 if grown else len(shown) - i
    return 0


def _joined(words: list[Span] | tuple[Span, ...]) -> str:
    return " ".join(w.text for w in words)


class ChunkedStream:
    """A stream over an incremental :class:`Recognizer`, with stable partials and endpointing.

        Each decoding step gives a hypothesis; a word is committed once ``commit.agreement`` consecutive
        hypotheses agree on it (and it is not the newest one's last word). Committed words never change:
        if a later hypothesis rewrites them (PocketSphinx revises its past), only the words that start
        after the last committed word are taken from it. ``revisions`` counts the words shown as partial
        that a later hypothesis changed or took back (flicker; a word growing as it is spelled out does not
    count), over the stream's whole life.

        Usage
        -----
        ::

            stream = model.create_stream()
            for chunk in chunks:
                stream.accept_waveform(48000, chunk)
                print(stream.result().committed, "|", stream.result().partial)
    """

    def __init__(
        self,
        recognizer: Recognizer,
        *,
        endpoint: EndpointRule = EndpointRule(),
        commit: CommitRule = CommitRule(),
        limits: AudioLimits = DEFAULT_LIMITS,
    ) -> None:
        self.recognizer = recognizer
        self._listener = recognizer if isinstance(recognizer, CommitListener) else None
        self._filter = recognizer if isinstance(recognizer, PartialFilter) else None
        self.commit = commit
        self.intake = AudioIntake(endpoint=endpoint, limits=limits)
        self.revisions = 0
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.recognizer.reset()
            self.intake.reset()
            self._committed: list[Span] = []
            self._committed_text = ""
            self._partial: list[Span] = []
            # the uncommitted words of the last few hypotheses, newest last
            self._recent: deque[list[Span]] = deque(maxlen=self.commit.agreement)
            self._finished = False

    def accept_waveform(self, sample_rate: int, samples: np.ndarray) -> None:
        """Add audio: shape (n,) or (n, channels), int or float, at ``sample_rate`` Hz.

        A bad chunk raises an :class:`~asrkit.audio.AudioError` and leaves the stream as it was.
        """
        with self._lock:
            if self._finished:
                raise RuntimeError("this stream is finished: call reset() to start a new utterance")
            audio = self.intake.accept_waveform(sample_rate, samples)
            if self.recognizer.accept_waveform(audio):
                self._update(self.recognizer.hypothesis(), final=False)

    def _uncommitted(self, hypothesis: tuple[Span, ...]) -> list[Span]:
        """The part of a hypothesis after the committed words."""
        n = len(self._committed)
        if n == 0:
            return list(hypothesis)
        # cheap check that the hypothesis still begins with what was committed: its word at the
        # boundary (checking all of them would cost more the longer the utterance)
        if len(hypothesis) >= n and _same_word(hypothesis[n - 1], self._committed[-1]):
            return list(hypothesis[n:])
        # the recogniser rewrote committed history: keep only words that start after it
        last_end = self._committed[-1].end
        return [w for w in hypothesis if (w.start + w.end) / 2 > last_end]

    def _update(self, hypothesis: tuple[Span, ...], *, final: bool) -> None:
        fresh = self._uncommitted(hypothesis)
        self.revisions += _revised(self._partial, fresh)
        if final:
            settled = len(fresh)
        else:
            self._recent.append(fresh)
            settled = 0
            if len(self._recent) == self._recent.maxlen:
                # words agreed on by every recent hypothesis, never the newest's last word
                limit = min(len(h) for h in self._recent)
                limit = min(limit, len(fresh) - 1)
                while settled < limit and all(_same_word(h[settled], fresh[settled]) for h in self._recent):
                    settled += 1
        if settled:
            newly = fresh[:settled]
            self._committed.extend(newly)
            if self._listener is not None:
                self._listener.on_commit(tuple(newly))
            self._committed_text = " ".join(t for t in (self._committed_text, _joined(newly)) if t)
            self._recent = deque((h[settled:] for h in self._recent), maxlen=self.commit.agreement)
        self._partial = fresh[settled:] if self._filter is None or final else self._filter.shown(fresh[settled:])

    def result(self) -> StreamResult:
        with self._lock:
            return StreamResult(self._committed_text, _joined(self._partial), (*self._committed, *self._partial))

    def is_endpoint(self) -> bool:
        with self._lock:
            return self.intake.is_endpoint()

    def finish(self) -> StreamResult:
        """No more audio for this utterance: decode the rest and commit every word."""
        with self._lock:
            if not self._finished:
                self.recognizer.accept_waveform(self.intake.flush())
                self._update(self.recognizer.finish(), final=True)
                self._finished = True
        return self.result()


class BufferedStream:
    """A stream for any model: keeps the utterance's audio and transcribes all of it on ``result()``.

    For backends with no incremental recogniser. Its final text equals offline transcription exactly,
    but each ``result()`` costs a pass over the whole utterance, and nothing is committed before
    ``finish()``.

    Usage
    -----
    ::

        stream = BufferedStream(model)
        for chunk in chunks:
            stream.accept_waveform(48000, chunk)
            print(stream.result().text)
    """

    def __init__(
        self, model: ASRModel, *, endpoint: EndpointRule = EndpointRule(), limits: AudioLimits = DEFAULT_LIMITS
    ) -> None:
        self.model = model
        self.intake = AudioIntake(endpoint=endpoint, limits=limits)
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.intake.reset()
            self._chunks: list[np.ndarray] = []
            self._finished = False
            self._cached: StreamResult | None = StreamResult("", "")

    def accept_waveform(self, sample_rate: int, samples: np.ndarray) -> None:
        """Add audio: shape (n,) or (n, channels), int or float, at ``sample_rate`` Hz.

        A bad chunk raises an :class:`~asrkit.audio.AudioError` and leaves the stream as it was.
        """
        with self._lock:
            if self._finished:
                raise RuntimeError("this stream is finished: call reset() to start a new utterance")
            self._chunks.append(self.intake.accept_waveform(sample_rate, samples))
            self._cached = None

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
        with self._lock:
            return self.intake.is_endpoint()

    def finish(self) -> StreamResult:
        """No more audio for this utterance: flush the resampler and commit the whole text."""
        with self._lock:
            if not self._finished:
                self._chunks.append(self.intake.flush())
                self._finished = True
                self._cached = None
        return self.result()


@dataclass(frozen=True)
class Emission:
    """One change of what a live transcript shows: a newly committed piece, or the new partial."""

    # wall-clock seconds since the session started
    wall_s: float
    # seconds of audio the session had received when it showed this
    audio_s: float
    # wall-clock seconds from the arrival of that audio's last chunk to this emission (queueing and
    # inference); audio_s + lag_s is when a live listener would have seen it
    lag_s: float
    # session seconds where the text begins and ends in the audio (both 0.0 for an emptied partial)
    begin_s: float
    end_s: float
    # the committed words, or the whole partial ("" when the partial was taken back)
    text: str
    # True: these words will never change; False: the partial, which may
    committed: bool
    # the same text word by word with session times
    words: tuple[Span, ...] = ()


class Session:
    """A stream that runs for as long as audio comes, ending utterances at endpoints.

    At each endpoint it finishes the utterance, keeps its words (shifted to session time) and resets
    the stream, so the stream's state never outgrows one utterance (``EndpointRule.max_utterance_s``)
    however long the session. Every change of the shown text can be recorded as an :class:`Emission`.

    Usage
    -----
    ::

        session = Session(model.create_stream(), record=True)
        for chunk in chunks:
            session.accept_waveform(16000, chunk)
        session.finish().text
    """

    def __init__(self, stream: Stream, *, record: bool = False) -> None:
        self.stream = stream
        # None when not recording, so an hour of audio does not keep an hour of emissions
        self.emissions: list[Emission] | None = [] if record else None
        # finished utterances' words in session time
        self.words: list[Span] = []
        self.texts: list[str] = []
        # seconds of audio received (skipped gaps included), and of them lost before reaching the stream
        self.audio_s = 0.0
        self.skipped_s = 0.0
        # seconds spent in the stream's calls
        self.compute_s = 0.0
        self._offset_s = 0.0
        self._start = time.perf_counter()
        self._shown = StreamResult("", "")

    def accept_waveform(self, sample_rate: int, samples: np.ndarray, *, arrival: float | None = None) -> StreamResult:
        """Feed one chunk (see :meth:`Stream.accept_waveform`); return what the session shows now.

        ``arrival`` is the ``time.perf_counter()`` at which the chunk arrived (default: now); the time
        it waited before this call counts in the emissions' lag.
        """
        arrival = time.perf_counter() if arrival is None else arrival
        start = time.perf_counter()
        self.stream.accept_waveform(sample_rate, samples)
        self.audio_s += len(samples) / sample_rate
        current = self.stream.result()
        self._show(current, arrival)
        if self.stream.is_endpoint():
            current = self._end_utterance(arrival)
        self.compute_s += time.perf_counter() - start
        return current

    def skip(self, seconds: float) -> None:
        """Audio was lost (a full queue dropped it): end the utterance and move the clock past the gap."""
        start = time.perf_counter()
        self._end_utterance(start)
        self.audio_s += seconds
        self.skipped_s += seconds
        self._offset_s = self.audio_s
        self.compute_s += time.perf_counter() - start

    def finish(self) -> StreamResult:
        """No more audio: finish the last utterance; the whole session's text, all committed."""
        start = time.perf_counter()
        self._end_utterance(start)
        self.compute_s += time.perf_counter() - start
        return self.result()

    def result(self) -> StreamResult:
        """The session so far: finished utterances and the current one."""
        shown = self._shown
        committed = " ".join(t for t in (*self.texts, shown.committed) if t)
        return StreamResult(committed, shown.partial, (*self.words, *self._shifted(shown.words)))

    def _shifted(self, words: tuple[Span, ...]) -> tuple[Span, ...]:
        return tuple(replace(w, start=w.start + self._offset_s, end=w.end + self._offset_s) for w in words)

    def _end_utterance(self, arrival: float) -> StreamResult:
        final = self.stream.finish()
        self._show(final, arrival)
        self.words.extend(self._shifted(final.words))
        if final.committed:
            self.texts.append(final.committed)
        self.stream.reset()
        self._offset_s = self.audio_s
        self._shown = StreamResult("", "")
        return final

    def _show(self, current: StreamResult, arrival: float) -> None:
        shown, self._shown = self._shown, current
        if self.emissions is None:
            return
        now = time.perf_counter()
        n_old = len(shown.committed.split()) if shown.committed else 0
        n_new = len(current.committed.split()) if current.committed else 0
        words = self._shifted(current.words)
        if n_new > n_old:
            self._emit(now, arrival, words[n_old:n_new], committed=True)
        if current.partial != shown.partial:
            self._emit(now, arrival, words[n_new:], committed=False)

    def _emit(self, now: float, arrival: float, words: tuple[Span, ...], *, committed: bool) -> None:
        assert self.emissions is not None
        self.emissions.append(
            Emission(
                wall_s=now - self._start,
                audio_s=self.audio_s,
                lag_s=now - arrival,
                begin_s=words[0].start if words else 0.0,
                end_s=words[-1].end if words else 0.0,
                text=_joined(words),
                committed=committed,
                words=words,
            )
        )
