"""The contract every model backend implements, and what it returns."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, Protocol, runtime_checkable

import numpy as np

from asrkit.errors import AsrkitError

if TYPE_CHECKING:
    from asrkit.streaming import Stream

CARD_FILE = "card.json"
# Shared sets of general English speech, preferred first, whose WER compares models fairly:
# fixtures_dev (8 speakers no training data has, the closest to a stranger at the microphone), then
# kathleen_dev (300 read prompts of one speaker). fsdd_dev (isolated digits) and a model's own
# held-out sets say less about how it does on speech in general.
GENERAL_SETS = ("fixtures_dev", "kathleen_dev")


class ModelUnavailableError(AsrkitError, LookupError):
    """A hub model that is neither in its hub's local cache nor a local folder (asrkit does not download)."""


class PromptError(AsrkitError, ValueError):
    """A prompt a model cannot take: the model takes none, or the prompt is too long or malformed."""


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


@dataclass(frozen=True)
class Headline:
    """The one measurement that sums a model up for someone choosing one: its WER on a set."""

    # the set's name as the card records it (a manifest's file stem, e.g. "fixtures_dev")
    set_name: str
    # word error rate on it, 0 to 1
    wer: float
    # utterances measured; None when the card does not say
    utterances: int | None
    # compute seconds per audio second; None when not recorded
    rtf: float | None
    # True for one of GENERAL_SETS (comparable across models), False for a model's own set
    general: bool


def _number(value: Any) -> float | None:
    """``value`` as a finite float, or None for anything else (a hand-edited card may hold anything)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def headline_metric(card: ModelCard) -> Headline | None:
    """The card's headline WER: on the first of :data:`GENERAL_SETS` it records, else on its set with
    the most utterances (any name), else None when it records no WER.

    A card's ``metrics`` maps a set's name to what was measured on it (``wer``, ``utterances``,
    ``rtf``, ...; personal adaptation records ``wer_after`` on its held-out takes); other entries
    (training steps, notes) are not sets and are passed over.

    Examples
    --------
    >>> card = ModelCard("m", "", True, metrics={"fsdd_dev": {"wer": 0.4, "utterances": 500},
    ...                                          "kathleen_dev": {"wer": 0.05, "utterances": 300, "rtf": 0.2}})
    >>> headline_metric(card)
    Headline(set_name='kathleen_dev', wer=0.05, utterances=300, rtf=0.2, general=True)
    """
    found = []
    for set_name, measured in (card.metrics.items() if isinstance(card.metrics, dict) else ()):
        if not isinstance(measured, dict):
            continue
        wer = _number(measured.get("wer", measured.get("wer_after")))
        if wer is None or wer < 0:
            continue
        utterances = _number(measured.get("utterances"))
        found.append(Headline(set_name, wer, None if utterances is None else int(utterances),
                              _number(measured.get("rtf")), set_name in GENERAL_SETS))
    if not found:
        return None
    general = [h for h in found if h.general]
    if general:
        return min(general, key=lambda h: GENERAL_SETS.index(h.set_name))
    return max(found, key=lambda h: (h.utterances or 0, h.set_name))


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

    def with_prompt(self, prompt: str) -> ASRModel:
        """A copy of the model, sharing its network, that expects the words of ``prompt`` (names and
        terms, e.g. "Dashwood, Voila, Kaldi") in its transcripts and its live streams; an empty
        prompt gives a copy without one. Raises :class:`PromptError`, naming the model, when the
        model takes no prompt or ``prompt`` is too long."""
        ...


class NoPrompt:
    """For a model that takes no prompt: a CTC or HMM model has no text context to put one in, and the
    hub encoder-decoders' generation (Moonshine, Hugging Face's Whisper) is not given one here."""

    def with_prompt(self, prompt: str) -> NoReturn:
        """Refuse, naming the model: see :meth:`ASRModel.with_prompt`."""
        raise PromptError(f"{self.name} ({type(self).__name__}) takes no prompt of expected words: "
                          "only Whisper on asrkit's own network does, e.g. whisper-tiny.en")
