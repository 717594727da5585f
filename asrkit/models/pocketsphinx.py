"""CMU PocketSphinx as an asrkit model: a classical offline engine with its own English model.

The ``pocketsphinx`` wheel ships its acoustic model, dictionary and language model, so it needs no
download; its registry folder (``models/pocketsphinx``) holds only a card with measured results.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from asrkit.audio import SAMPLE_RATE
from asrkit.models.base import ModelCard, Span, Transcript
from asrkit.text import normalize_text

BACKEND = "pocketsphinx"
FRAME_S = 0.01  # PocketSphinx reports segments in 10 ms frames
# Fillers and markers, not words: <s>, </s>, <sil>, [NOISE], [SPEECH], ...
_NOT_A_WORD = re.compile(r"^(<.*>|\[.*\])$")


class PocketSphinxModel:
    """PocketSphinx's default US English model behind the :class:`~asrkit.models.base.ASRModel` contract."""

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
        pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16)
        d = self._decoder
        d.start_utt()
        d.process_raw(pcm.tobytes(), full_utt=True)
        d.end_utt()
        words = tuple(
            Span(normalize_text(re.sub(r"\(\d+\)$", "", s.word)), s.start_frame * FRAME_S, (s.end_frame + 1) * FRAME_S)
            for s in d.seg()
            if not _NOT_A_WORD.match(s.word)
        )
        words = tuple(w for w in words if w.text)
        return Transcript(" ".join(w.text for w in words), len(audio) / SAMPLE_RATE, words=words, model=self.name)

    def transcribe_batch(self, audios: Sequence[np.ndarray]) -> list[Transcript]:
        return [self.transcribe(a) for a in audios]

    def create_stream(self):
        from asrkit.streaming import BufferedStream

        return BufferedStream(self)
