"""CMU PocketSphinx as an asrkit model: a classical offline engine with its own English model.

The ``pocketsphinx`` wheel ships its acoustic model, dictionary and language model, so it needs no
download; its registry folder (``asrkit/models/shipped/pocketsphinx``) holds only a card with measured results.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from asrkit.audio import DEFAULT_LIMITS, SAMPLE_RATE, AudioLimits
from asrkit.contracts import ModelCard, Span, Transcript
from asrkit.models.base import NoPrompt
from asrkit.streaming import ChunkedStream, CommitRule, EndpointRule
from asrkit.text import normalize_text

BACKEND = "pocketsphinx"
FRAME_S = 0.01  # PocketSphinx reports segments in 10 ms frames
# Audio between reads of the live hypothesis, seconds: each read walks the search's best path.
STEP_S = 0.2
# Fillers and markers, not words: <s>, </s>, <sil>, [NOISE], [SPEECH], ...
_NOT_A_WORD = re.compile(r"^(<.*>|\[.*\])$")


class PocketSphinxModel(NoPrompt):
    """PocketSphinx's default US English model behind the :class:`~asrkit.contracts.ASRModel` contract."""

    sample_rate = SAMPLE_RATE

    def __init__(self, card: ModelCard) -> None:
        from pocketsphinx import Decoder

        self._decoder = Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")
        self.card = card
        self.device = "cpu"  # PocketSphinx has no GPU path

    @property
    def name(self) -> str:
        return self.card.name

    @classmethod
    def load(cls, folder: str | Path, *, batch_size: int = 1, device: str = "auto") -> PocketSphinxModel:
        return cls(ModelCard.load(folder))

    def transcribe(self, audio: np.ndarray) -> Transcript:
        d = self._decoder
        # the feature computer keeps the last clip's cepstral mean as its starting estimate, which
        # changed 3 of a 23-clip test set's transcripts with the clips decoded before; resetting it
        # (30 us) makes a clip's transcript its own, whatever the order, batch or shard
        d.reinit_feat()
        d.start_utt()
        d.process_raw(_pcm(audio), full_utt=True)
        d.end_utt()
        words = _words(d)
        return Transcript(" ".join(w.text for w in words), len(audio) / SAMPLE_RATE, words=words, model=self.name)

    def transcribe_batch(self, audios: Sequence[np.ndarray]) -> list[Transcript]:
        return [self.transcribe(a) for a in audios]

    def create_stream(
        self,
        *,
        step_s: float = STEP_S,
        endpoint: EndpointRule = EndpointRule(),
        commit: CommitRule = CommitRule(),
        limits: AudioLimits = DEFAULT_LIMITS,
    ) -> ChunkedStream:
        """A live stream on PocketSphinx's own incremental decoder (one decoder per stream)."""
        return ChunkedStream(PocketSphinxRecognizer(step_s=step_s), endpoint=endpoint, commit=commit, limits=limits)


def _pcm(audio: np.ndarray) -> bytes:
    """16-bit little-endian PCM, what PocketSphinx's process_raw reads."""
    return (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2").tobytes()


def _words(decoder) -> tuple[Span, ...]:
    """The decoder's current best path as normalised words, one Span each."""
    words: list[Span] = []
    # seg() is None, not empty, for an utterance that ended before any audio came (a stream finished
    # right after an endpoint reset it)
    for seg in decoder.seg() or ():
        if _NOT_A_WORD.match(seg.word):
            continue
        start, end = seg.start_frame * FRAME_S, (seg.end_frame + 1) * FRAME_S
        # normalising can split a dictionary entry ("ill-disposed"): share its time between the parts
        parts = normalize_text(re.sub(r"\(\d+\)$", "", seg.word)).split()
        share = (end - start) / max(len(parts), 1)
        words.extend(Span(p, start + i * share, start + (i + 1) * share) for i, p in enumerate(parts))
    return tuple(words)


class PocketSphinxRecognizer:
    """A :class:`~asrkit.streaming.Recognizer` on PocketSphinx's incremental search.

    PocketSphinx decodes as audio arrives (first pass) and rescores the utterance when it ends, which
    may change earlier words: the stream's commit policy keeps committed words as they were. Its live
    cepstral mean normalisation also starts from a prior rather than the utterance's own mean, so the
    final words can differ from offline transcription; the benchmark measures by how much.
    """

    def __init__(self, *, step_s: float = STEP_S) -> None:
        from pocketsphinx import Decoder

        if step_s <= 0:
            raise ValueError(f"step_s must be positive, got {step_s}")
        self._decoder = Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")
        self.step_samples = round(step_s * SAMPLE_RATE)
        self._in_utterance = False
        self.reset()

    def reset(self) -> None:
        if self._in_utterance:
            self._decoder.end_utt()
        self._decoder.start_utt()
        self._in_utterance = True
        self._since_step = 0
        self._words: tuple[Span, ...] = ()

    def accept_waveform(self, samples: np.ndarray) -> bool:
        if len(samples):  # PocketSphinx fails on an empty buffer
            self._decoder.process_raw(_pcm(samples))
        self._since_step += len(samples)
        if self._since_step < self.step_samples:
            return False
        self._since_step = 0
        self._words = _words(self._decoder)
        return True

    def hypothesis(self) -> tuple[Span, ...]:
        return self._words

    def finish(self) -> tuple[Span, ...]:
        if self._in_utterance:
            self._decoder.end_utt()
            self._in_utterance = False
            self._words = _words(self._decoder)
        return self._words
