"""What asrkit's parts agree on: the values they pass around and the two contracts every backend meets.

- values: :class:`Span`, :class:`Transcript` and :class:`ModelCard` (with how a card.json is read);
- the model contract: :class:`ASRModel`, audio in, :class:`Transcript` out, and the errors a model raises;
- the stream contract: :class:`Stream`, live audio in, :class:`StreamResult` out (the machinery that
  implements it is :mod:`asrkit.streaming`).

This module sits at the bottom of the package: it imports nothing from asrkit but :mod:`asrkit.errors`,
so formats, metrics, streaming and the widgets can use these types without loading the model registry
(:mod:`asrkit.models`) or a backend.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from asrkit.errors import AsrkitError

CARD_FILE = "card.json"
# The key of a card's metrics entry that marks its set as general speech, whose WER compares models fairly
# (e.g. speakers no training data has); a narrow set (isolated digits) or a model's own held-out takes say
# less about how it does on speech in general, and leave it out.
GENERAL_KEY = "general"
# A card is a few kilobytes of JSON (the largest shipped one is under 3 KB); anything past this is not
# one, and is not read whole.
MAX_CARD_BYTES = 1 << 20


class ModelUnavailableError(AsrkitError, LookupError):
    """A hub model that is neither in its hub's local cache nor a local folder (asrkit does not download)."""


class PromptError(AsrkitError, ValueError):
    """A prompt a model cannot take: the model takes none, or the prompt is too long or malformed."""


class ModelFileError(AsrkitError, ValueError):
    """A file of a model folder that is missing, unreadable, corrupt, too large, not a regular file, or
    named by its card outside the folder."""


class CardError(ModelFileError):
    """A card.json that is missing, unreadable, not JSON, or not a model card (wrong shape or field types)."""


def regular_file(
    path: str | Path, *, what: str, max_bytes: int | None = None, error: type[ModelFileError] = ModelFileError
) -> Path:
    """``path`` once it is known to be a regular file (links followed) of at most ``max_bytes``.

    A device (``/dev/zero``), a pipe or a folder where a model file should be would make a reader
    hang or fill memory; refusing it up front names the problem instead.

    Raises
    ------
    ModelFileError
        Or ``error``, naming ``what`` the file is (e.g. "the language model") and the path.
    """
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise error(f"{what} {path} is missing") from None
    except OSError as err:
        raise error(f"{what} {path} cannot be read: {err.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{what} {path} is not a regular file")
    if max_bytes is not None and info.st_size > max_bytes:
        raise error(f"{what} {path} is {info.st_size:,} bytes; at most {max_bytes:,} are read")
    return path


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
    # measured results, e.g. {"dev": {"wer": 0.31, "cer": 0.12, "command": "asrkit eval ..."}}
    metrics: dict[str, Any] = field(default_factory=dict)
    # backend-specific settings needed to rebuild the model (features, vocabulary, architecture)
    config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "model card") -> ModelCard:
        """A card from its JSON object, its shape and field types checked (a hand-edited or downloaded
        card may hold anything); ``source`` names it in the error.

        Raises
        ------
        CardError
            ``data`` is not an object, or has unknown, missing or mistyped fields.
        """
        if not isinstance(data, dict):
            raise CardError(f"{source} holds {json_kind(data)}, not a JSON object")
        unknown = set(data) - set(_CARD_FIELD_TYPES)
        if unknown:
            raise CardError(f"{source} has unknown fields: {', '.join(sorted(map(str, unknown)))}")
        missing = [
            f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING and f.name not in data
        ]
        if missing:
            raise CardError(f"{source} lacks the fields: {', '.join(missing)}")
        for name, value in data.items():
            kind = _CARD_FIELD_TYPES[name]
            if not isinstance(value, kind):
                raise CardError(f"{source}: {name} must be {json_kind(kind())}, not {json_kind(value)}")
        return cls(**data)

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / CARD_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, folder: str | Path) -> ModelCard:
        """Read ``folder``'s card.json.

        Raises
        ------
        CardError
            The card is missing, not a regular file, over :data:`MAX_CARD_BYTES`, not UTF-8, not JSON,
            or not a model card; the message names the file.
        """
        path = Path(folder) / CARD_FILE
        if not path.exists() and not path.is_symlink():
            raise CardError(f"{folder} has no {CARD_FILE}: it is not an asrkit model folder")
        regular_file(path, what="the model card", max_bytes=MAX_CARD_BYTES, error=CardError)
        try:
            with open(path, "rb") as f:
                raw = f.read(MAX_CARD_BYTES + 1)
            data = json.loads(raw.decode("utf-8"))
        except OSError as err:
            raise CardError(f"{path} cannot be read: {err.strerror}") from None
        except UnicodeDecodeError as err:
            raise CardError(f"{path} is not UTF-8 text (byte {err.start} is {raw[err.start]:#04x})") from None
        except json.JSONDecodeError as err:
            raise CardError(f"{path} is not valid JSON: {err}") from None
        except RecursionError:
            # Python's JSON reader recurses once per bracket: a card thousands of levels deep is crafted
            raise CardError(f"{path} nests its JSON too deeply to be a model card") from None
        return cls.from_dict(data, source=str(path))


# The type each card field must hold, as json.loads gives it.
_CARD_FIELD_TYPES = {
    "name": str,
    "description": str,
    "trained": bool,
    "training_data": str,
    "metrics": dict,
    "config": dict,
}


def json_kind(value: Any) -> str:
    """What JSON calls the type of a parsed value, for messages: "a string", "an object", ..."""
    names = (
        (bool, "true or false"),
        (str, "a string"),
        (int, "a number"),
        (float, "a number"),
        (dict, "an object"),
        (list, "an array"),
        (type(None), "null"),
    )
    return next((name for kind, name in names if isinstance(value, kind)), type(value).__name__)


@dataclass(frozen=True)
class StreamResult:
    """What a stream has recognised so far."""

    # text that will not change any more
    committed: str
    # text that may still change as more audio arrives
    partial: str
    # word times in seconds from the start of the utterance, committed words first, where the model gives them
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
