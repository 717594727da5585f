"""What encoder-decoder models (Whisper, Moonshine) share: text in, words spread over the audio, and
streaming by re-decoding the utterance so far.

Such models emit text, not frame-aligned labels, so they give no word times: words are spread evenly
over the audio for display. Streaming re-decodes the utterance every :data:`REDECODE_STEP_S` seconds of
new audio, and the stream's LocalAgreement commit rule keeps the words successive decodings agree on
(the whisper_streaming policy). A model too slow for that waits longer between decodings, at least
:data:`CATCH_UP` times as long as the last one took, so a stream's backlog never grows.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from asrkit.audio import DEFAULT_LIMITS, SAMPLE_RATE, AudioLimits
from asrkit.contracts import ModelCard, Span, Transcript
from asrkit.models.base import NoPrompt
from asrkit.streaming import ChunkedStream, CommitRule, EndpointRule, Recognizer

# seconds of new audio between re-decodings of the utterance so far
REDECODE_STEP_S = 1.0
# ... and at least this many times the last decoding's duration: decoding then takes at most half of
# the audio's time, leaving the rest for the audio arriving meanwhile and for other streams
CATCH_UP = 2.0


def spread_words(text: str, start: float, end: float) -> tuple[Span, ...]:
    """The words of ``text`` given equal shares of ``start``..``end`` seconds."""
    words = text.split()
    step = (end - start) / max(len(words), 1)
    return tuple(Span(w, start + i * step, start + (i + 1) * step) for i, w in enumerate(words))


class Seq2SeqModel(NoPrompt):
    """The asrkit model contract for a model that only offers :meth:`text`.

    Subclasses set ``window_s``, the most audio the model hears at once (longer utterances are split
    at endpoints, see ``EndpointRule.max_utterance_s``).
    """

    window_s: float = 30.0

    def __init__(self, card: ModelCard, *, batch_size: int = 8) -> None:
        self.card = card
        self.sample_rate = SAMPLE_RATE
        self.batch_size = batch_size

    @property
    def name(self) -> str:
        return self.card.name

    def text(self, audios: Sequence[np.ndarray]) -> list[str]:
        """Transcripts of a batch of 16 kHz float32 clips, words separated by single spaces."""
        raise NotImplementedError

    def transcribe(self, audio: np.ndarray) -> Transcript:
        return self.transcribe_batch([audio])[0]

    def transcribe_batch(self, audios: Sequence[np.ndarray]) -> list[Transcript]:
        results = []
        for start in range(0, len(audios), self.batch_size):
            batch = [np.asarray(a, np.float32) for a in audios[start : start + self.batch_size]]
            for audio, text in zip(batch, self.text(batch)):
                duration = len(audio) / SAMPLE_RATE
                results.append(
                    Transcript(text=text, duration_s=duration, words=spread_words(text, 0.0, duration), model=self.name)
                )
        return results

    def create_stream(
        self,
        *,
        endpoint: EndpointRule = EndpointRule(),
        commit: CommitRule = CommitRule(),
        limits: AudioLimits = DEFAULT_LIMITS,
        **options,
    ) -> ChunkedStream:
        """A live stream on :meth:`recognizer` (``options`` go to it)."""
        if endpoint.max_utterance_s > self.window_s:
            raise ValueError(f"{self.name} hears {self.window_s:.0f} s at once: max_utterance_s must not exceed it")
        # nor may an utterance outgrow the window when no Session ends it (its chunks are refused)
        limits = replace(limits, max_duration_s=min(limits.max_duration_s, self.window_s))
        return ChunkedStream(self.recognizer(**options), endpoint=endpoint, commit=commit, limits=limits)

    def recognizer(self) -> Recognizer:
        """What a live stream runs: re-decoding the utterance so far."""
        return RedecodingRecognizer(self)


class RedecodingRecognizer:
    """A :class:`Seq2SeqModel` on the utterance so far, again every ``REDECODE_STEP_S`` seconds of new audio."""

    def __init__(self, model: Seq2SeqModel) -> None:
        self.model = model
        self.step = round(REDECODE_STEP_S * SAMPLE_RATE)
        self._last_cost_s = 0.0
        self.reset()

    def reset(self) -> None:
        self._audio = np.zeros(0, np.float32)
        self._decoded_at = 0
        self._words: tuple[Span, ...] = ()

    def _decode(self) -> None:
        began = time.perf_counter()
        text = self.model.text([self._audio])[0] if len(self._audio) else ""
        self._last_cost_s = time.perf_counter() - began
        self._words = spread_words(text, 0.0, len(self._audio) / SAMPLE_RATE)
        self._decoded_at = len(self._audio)

    def accept_waveform(self, samples: np.ndarray) -> bool:
        self._audio = np.concatenate([self._audio, samples])
        step = max(self.step, round(CATCH_UP * self._last_cost_s * SAMPLE_RATE))
        if len(self._audio) - self._decoded_at < step:
            return False
        self._decode()
        return True

    def hypothesis(self) -> tuple[Span, ...]:
        return self._words

    def finish(self) -> tuple[Span, ...]:
        if len(self._audio) != self._decoded_at or not self._words:
            self._decode()
        return self._words
