"""What model backends share beyond the contract: the files a card names, the settings it holds, what
sums a model up, and refusing a prompt.

The values and the model contract (:class:`~asrkit.contracts.ASRModel`, :class:`~asrkit.contracts.Transcript`,
:class:`~asrkit.contracts.ModelCard`, ...) are in :mod:`asrkit.contracts`.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any, NoReturn, get_args, get_type_hints

# Importable from here as they were before they moved to asrkit.contracts.
from asrkit.contracts import (  # noqa: F401
    CARD_FILE,
    GENERAL_KEY,
    MAX_CARD_BYTES,
    ASRModel,
    CardError,
    ModelCard,
    ModelFileError,
    ModelUnavailableError,
    PromptError,
    Span,
    Transcript,
    json_kind,
    regular_file,
)


def card_file(
    folder: str | Path,
    name: object,
    *,
    what: str,
    max_bytes: int | None = None,
    source: str | Path | None = None,
    error: type[ModelFileError] = ModelFileError,
) -> Path:
    """The regular file that a card names ``name`` inside its ``folder``, resolved.

    A card's text must not reach outside its folder: an absolute name, ``..``, or a link that leads out
    is refused, as is a device or a pipe (see :func:`regular_file`). Every backend resolves the files
    its card names (a language model, fine-tuned weights, checksummed weight files) through here.
    ``source`` names the card in messages (default: ``folder``'s card.json).

    Raises
    ------
    ModelFileError
        Or ``error``: ``name`` leads outside ``folder``, or is no regular file there.
    CardError
        ``name`` is not a non-empty string.
    """
    folder = Path(folder)
    source = source or folder / CARD_FILE
    if not isinstance(name, str) or not name.strip() or "\0" in name:
        raise CardError(f"{source} names {what} {name!r}: expected the name of a file in {folder}")
    inside = folder.resolve()
    path = (inside / name).resolve()
    if not path.is_relative_to(inside) or path == inside:
        raise error(
            f"{source} names {what} {name!r}, which is outside the model folder {folder}; "
            "a card may name only files inside its own folder"
        )
    return regular_file(path, what=what, max_bytes=max_bytes, error=error)


def check_setting_types(settings: Any, *, source: str) -> None:
    """Refuse a setting whose JSON type differs from its default's (a number given as text, a list for
    a flag) in the dataclass ``settings`` read from a card (``source``): it would fail only later, deep
    inside decoding, or silently change what the model does.

    Raises
    ------
    CardError
        Naming the setting, its default and the value found.
    """
    check_setting_values(type(settings), {f.name: getattr(settings, f.name) for f in fields(settings)}, source=source)


def check_setting_values(kind: type, values: dict[str, Any], *, source: str) -> None:
    """:func:`check_setting_types` for ``values`` meant for the dataclass ``kind``, before it is built (so
    that its own checks never meet a value of the wrong type). A setting may be None (null) only where its
    annotation allows it; one whose default is None must otherwise be of the type its annotation names;
    the items of a tuple, of its default's first item's."""
    hints = get_type_hints(kind)
    defaults = {f.name: f.default for f in fields(kind)}
    for name, value in values.items():
        default = defaults.get(name, MISSING)
        if is_dataclass(value):
            check_setting_types(value, source=source)
        elif default is MISSING:
            continue
        elif value is None:
            if default is not None and type(None) not in get_args(hints[name]):
                raise CardError(f"{source}: {kind.__name__}.{name} must be like {default!r}, not null")
        elif default is None:
            kinds = [t for t in get_args(hints[name]) if t is not type(None) and isinstance(t, type)]
            if kinds and not _fits(value, kinds[0]()):
                raise CardError(f"{source}: {kind.__name__}.{name} must be {kinds[0].__name__} or null, not {value!r}")
        elif not _fits(value, default) or (
            isinstance(default, tuple) and default and not all(_fits(item, default[0]) for item in value)
        ):
            raise CardError(f"{source}: {kind.__name__}.{name} must be like {default!r}, not {value!r}")


def _fits(value: Any, default: Any) -> bool:
    """Whether ``value`` has the JSON type of ``default`` (any finite number where a float is due)."""
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return type(value) is type(default)


@dataclass(frozen=True)
class Headline:
    """The one measurement that sums a model up for someone choosing one: its WER on a set."""

    # the set's name as the card records it (a manifest's file stem, e.g. "dev")
    set_name: str
    # word error rate on it, 0 to 1
    wer: float
    # utterances measured; None when the card does not say
    utterances: int | None
    # compute seconds per audio second; None when not recorded
    rtf: float | None
    # True when the card marks the set general (comparable across models), False for a set of its own
    general: bool


def _number(value: Any) -> float | None:
    """``value`` as a finite float, or None for anything else (a hand-edited card may hold anything)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def headline_metric(card: ModelCard) -> Headline | None:
    """The card's headline WER: on the first set (in the card's order) that the card marks general
    (``"general": true``, see :data:`GENERAL_KEY`), else on its set with the most utterances, else None
    when it records no WER.

    A card's ``metrics`` maps a set's name to what was measured on it (``wer``, ``utterances``,
    ``rtf``, ...; personal adaptation records ``wer_after`` on its held-out takes); other entries
    (training steps, notes) are not sets and are passed over.

    Examples
    --------
    >>> card = ModelCard("m", "", True, metrics={"digits": {"wer": 0.4, "utterances": 500},
    ...                                          "read": {"wer": 0.05, "utterances": 300, "rtf": 0.2, "general": True}})
    >>> headline_metric(card)
    Headline(set_name='read', wer=0.05, utterances=300, rtf=0.2, general=True)
    """
    found = []
    for set_name, measured in card.metrics.items() if isinstance(card.metrics, dict) else ():
        if not isinstance(measured, dict):
            continue
        wer = _number(measured.get("wer", measured.get("wer_after")))
        if wer is None or wer < 0:
            continue
        utterances = _number(measured.get("utterances"))
        found.append(
            Headline(
                set_name,
                wer,
                None if utterances is None else int(utterances),
                _number(measured.get("rtf")),
                measured.get(GENERAL_KEY) is True,
            )
        )
    if not found:
        return None
    general = [h for h in found if h.general]
    if general:
        return general[0]
    return max(found, key=lambda h: (h.utterances or 0, h.set_name))


class NoPrompt:
    """For a model that takes no prompt: a CTC or HMM model has no text context to put one in, and the
    hub encoder-decoders' generation (Moonshine, Hugging Face's Whisper) is not given one here."""

    def with_prompt(self, prompt: str) -> NoReturn:
        """Refuse, naming the model: see :meth:`~asrkit.contracts.ASRModel.with_prompt`."""
        raise PromptError(
            f"{self.name} ({type(self).__name__}) takes no prompt of expected words: "
            "only Whisper on asrkit's own network does, e.g. whisper-tiny.en"
        )
