"""The contract every model backend implements, and what it returns."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from asrkit.streaming import Stream

CARD_FILE = "card.json"


class ModelUnavailableError(LookupError):
    """A hub model that is neither in its hub's local cache nor a local folder (asrkit does not download)."""


@dataclass(frozen=True)
class Span:
    """A piece of recognised text and where it lies in the audio, in seconds."""

    text: str
    start: float
    end: float


@dataclass(frozen=True)
class Transcript:
    """What a model heard in one piece of audio."""

    # the recognised text as the model writes it (Whisper: cased and punctuated; CTC models and
    # PocketSphinx: lower case); scoring passes it through asrkit.text.normalize_text
    text: str
    # the audio's duration in seconds
    duration_s: float
    # one Span per word, empty when the backend gives no times
    words: tuple[Span, ...] = ()
    # one Span per character (CTC models), empty when the backend gives no times
    chars: tuple[Span, ...] = ()
    # registry name of the model that produced it
    model: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Transcript:
        """The inverse of :meth:`to_dict`."""
        spans = {k: tuple(Span(**s) for s in data.get(k, ())) for k in ("words", "chars")}
        return cls(text=data["text"], duration_s=data["duration_s"], model=data.get("model", ""), **spans)


@dataclass(frozen=True)
class ModelCard:
    """What a model is and what it was measured to do; stored beside its weights as card.json."""

    # registry name
    name: str
    # one line for people: architecture, size, purpose
    description: str
    # False for a model whose weights were never trained: its transcripts mean nothing
    trained: bool
    # the data the weights saw, named precisely enough to rule out test data
    training_data: str = ""
    # measured results, e.g. {"fixtures_dev": {"wer": 0.31, "cer": 0.12, "command": "asrkit eval ..."}}
    metrics: dict[str, Any] = field(default_factory=dict)
    # backend-specific settings needed to rebuild the model (features, vocabulary, architecture)
    config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"model card has unknown fields: {', '.join(sorted(unknown))}")
        return cls(**data)

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / CARD_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, folder: str | Path) -> ModelCard:
        path = Path(folder) / CARD_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"{folder} has no {CARD_FILE}: it is not an asrkit model folder") from None
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON: {err}") from None
        return cls.from_dict(data)


@runtime_checkable
class ASRModel(Protocol):
    """A speech recogniser: audio in, :class:`Transcript` out.

    Audio is mono float32 in [-1, 1] at ``sample_rate`` (what :func:`asrkit.audio.load_audio` returns).
    """

    card: ModelCard
    sample_rate: int

    @property
    def name(self) -> str: ...

    def transcribe(self, audio: np.ndarray) -> Transcript:
        """Recognise one utterance, shape (n_samples,)."""
        ...

    def transcribe_batch(self, audios: Sequence[np.ndarray]) -> list[Transcript]:
        """Recognise several utterances at once; same results as one by one."""
        ...

    def create_stream(self, **options: Any) -> Stream:
        """A new stream for live audio (see :mod:`asrkit.streaming`); every backend takes the options
        ``endpoint`` (EndpointRule), ``commit`` (CommitRule) and ``limits`` (AudioLimits)."""
        ...
