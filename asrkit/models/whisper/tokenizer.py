"""Whisper's byte-level BPE vocabulary and its special tokens, read from a model folder's tokenizer.json.

Every special id is looked up in the vocabulary rather than written down, because English-only and
multilingual checkpoints number them differently (``<|endoftext|>`` is 50256 in tiny.en, 50257 in the
multilingual models) and later versions add tokens (``<|yue|>``). The behaviour follows openai/whisper's
tokenizer, so decoding and word timestamps split text exactly where whisper does.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import MappingProxyType

import tokenizers

from asrkit.contracts import ModelFileError, regular_file

TASKS = ("transcribe", "translate")
TOKENIZER_FILE = "tokenizer.json"
#: Seconds between two consecutive timestamp tokens.
TIMESTAMP_STEP_S = 0.02

# Languages written without spaces between words: without morphological analysis, a word is whatever
# ends on a whole character.
_UNSPACED_LANGUAGES = frozenset({"zh", "ja", "th", "lo", "my", "yue"})
# Language tokens are the only special tokens whose name is a two- or three-letter code.
_LANGUAGE_TOKEN = re.compile(r"<\|([a-z]{2,3})\|>")
_REPLACEMENT_CHAR = "\ufffd"
# A Whisper tokenizer.json is 2-3 MB; past this it is not one, and is not handed to the parser.
MAX_TOKENIZER_BYTES = 64 << 20

# Speaker tags, sound descriptions and markup that whisper keeps out of transcripts when
# suppress_tokens is -1; ordinary punctuation stays allowed.
_NON_SPEECH_SYMBOLS = (
    *'"#()*+/:;<=>@[\\]^_`{|}~「」『』',
    *"<< >> <<< >>> -- --- -( -[ (' (\" (( )) ((( ))) [[ ]] {{ }} ♪♪ ♪♪♪".split(),
)
# Musical symbols (U+2640-U+267F) that may take several byte tokens; their first token is shared
# only with other symbols of that block, so suppressing it is safe.
_MUSIC_SYMBOLS = "♩♪♫♬♭♮♯"


class TokenizerError(ModelFileError):
    """A tokenizer.json that is missing, unreadable or not a Whisper vocabulary."""


@dataclass(frozen=True, eq=False)
class WhisperTokenizer:
    """Text to Whisper token ids and back, with the ids of the special tokens that steer decoding.

    Build one with `from_file`. Ids at or above `eot` are special: `decode` drops them, and those
    from `timestamp_begin` on mark times in steps of `TIMESTAMP_STEP_S`.

    Usage
    -----
    ::

        from asrkit.models.whisper.tokenizer import WhisperTokenizer
        tokenizer = WhisperTokenizer.from_file(model_dir, multilingual=False)
        tokenizer.sot_sequence_including_notimestamps
        # [50257, 50362]
        tokenizer.decode(tokenizer.encode(" Hello, world.") + [tokenizer.eot])
        # ' Hello, world.'
    """

    tokenizer: tokenizers.Tokenizer = field(repr=False)  # byte-level BPE and special tokens
    multilingual: bool  # whether the model reads language and task tokens after sot (not the .en models)
    language: str | None = "en"  # language token in sot_sequence; None leaves it to language detection
    task: str | None = "transcribe"  # "transcribe" or "translate"; None leaves it out of sot_sequence
    eot: int = field(init=False)  # <|endoftext|>: ends a transcript; every id from here up is special
    sot: int = field(init=False)  # <|startoftranscript|>: first token of every decoding
    sot_prev: int = field(init=False)  # <|startofprev|>: precedes the previous window's text (prompt)
    no_timestamps: int = field(init=False)  # <|notimestamps|>: asks for text without timestamp tokens
    timestamp_begin: int = field(init=False)  # <|0.00|>; later times follow one id per TIMESTAMP_STEP_S
    transcribe: int = field(init=False)  # <|transcribe|> task token
    translate: int = field(init=False)  # <|translate|> task token (to English)
    no_speech: int = field(init=False)  # <|nospeech|>, or <|nocaptions|> in older vocabularies
    # Code -> id of each language token, in vocabulary order; empty for English-only models, which
    # were never shown language tokens even though their vocabulary lists them.
    language_ids: Mapping[str, int] = field(init=False, repr=False)

    def __post_init__(self):
        def lookup(*names: str) -> int:
            for name in names:
                if (token := self.tokenizer.token_to_id(name)) is not None:
                    return token
            raise TokenizerError(f"not a Whisper vocabulary: it has no {' or '.join(names)} token")

        ids = {
            "eot": lookup("<|endoftext|>"),
            "sot": lookup("<|startoftranscript|>"),
            "sot_prev": lookup("<|startofprev|>"),
            "no_timestamps": lookup("<|notimestamps|>"),
            "transcribe": lookup("<|transcribe|>"),
            "translate": lookup("<|translate|>"),
            "no_speech": lookup("<|nospeech|>", "<|nocaptions|>"),
        }
        # CTranslate2's tokenizer.json leaves the timestamp tokens out; whisper always numbers them
        # straight after <|notimestamps|>.
        ids["timestamp_begin"] = self.tokenizer.token_to_id("<|0.00|>") or ids["no_timestamps"] + 1
        languages = {}
        if self.multilingual:
            for token, added in sorted(self.tokenizer.get_added_tokens_decoder().items()):
                if match := _LANGUAGE_TOKEN.fullmatch(added.content):
                    languages[match[1]] = token
        ids["language_ids"] = MappingProxyType(languages)
        # object.__setattr__ because the dataclass is frozen; the ids are derived, not state.
        for name, value in ids.items():
            object.__setattr__(self, name, value)
        self._check_language_and_task()

    def _check_language_and_task(self):
        if self.task not in (*TASKS, None):
            raise ValueError(f"task {self.task!r} is not one of {', '.join(TASKS)}")
        if not self.multilingual:
            if self.language not in ("en", None) or self.task == "translate":
                raise ValueError(
                    f"an English-only model transcribes English only, not language={self.language!r} "
                    f"task={self.task!r}; use a multilingual model"
                )
        elif self.language is not None and self.language not in self.language_ids:
            raise ValueError(
                f"language {self.language!r} has no token in this vocabulary; "
                f"known codes: {', '.join(self.language_ids)}"
            )

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        *,
        multilingual: bool,
        language: str | None = "en",
        task: str | None = "transcribe",
    ) -> WhisperTokenizer:
        """Read a tokenizer.json, or the one inside a model folder.

        Parameters
        ----------
        path : str or Path
            The tokenizer.json file, or a folder that holds one.
        multilingual : bool
            False for the English-only (.en) models: their prompt has no language or task token.
        language : str or None
            Language code for the prompt; must be "en" (or None) for an English-only model.
        task : str or None
            "transcribe" or "translate"; an English-only model can only transcribe.

        Returns
        -------
        WhisperTokenizer

        Raises
        ------
        TokenizerError
            If the file is missing, unreadable or lacks Whisper's special tokens; the message names it.
        ValueError
            If the language or task does not fit the vocabulary.
        """
        path = Path(path)
        file = path / TOKENIZER_FILE if path.is_dir() else path
        if not file.exists():
            raise TokenizerError(
                f"{file}: no such file; a Whisper model folder keeps its vocabulary in {TOKENIZER_FILE}"
            )
        regular_file(file, what="the vocabulary", max_bytes=MAX_TOKENIZER_BYTES, error=TokenizerError)
        try:
            tokenizer = tokenizers.Tokenizer.from_file(str(file))
        except Exception as error:  # the tokenizers library raises bare Exception for bad JSON
            raise TokenizerError(f"{file}: not a readable tokenizer file ({error})") from None
        try:
            return cls(tokenizer, multilingual=multilingual, language=language, task=task)
        except TokenizerError as error:
            raise TokenizerError(f"{file}: {error}") from None

    def language_token(self, code: str) -> int:
        """Id of the language token for ``code`` ("en", "de", ...).

        Raises
        ------
        ValueError
            If the model is English-only or the vocabulary has no such language.
        """
        if not self.multilingual:
            raise ValueError("an English-only model has no language tokens")
        try:
            return self.language_ids[code]
        except KeyError:
            known = ", ".join(self.language_ids)
            raise ValueError(f"no language token for {code!r}; known codes: {known}") from None

    @property
    def sot_sequence(self) -> list[int]:
        """The prompt that starts every decoding: sot, then the language and task tokens if any."""
        sequence = [self.sot]
        if self.multilingual and self.language is not None:
            sequence.append(self.language_ids[self.language])
        if self.multilingual and self.task is not None:
            sequence.append(self.transcribe if self.task == "transcribe" else self.translate)
        return sequence

    @property
    def sot_sequence_including_notimestamps(self) -> list[int]:
        """`sot_sequence` followed by <|notimestamps|>, for decoding text without timestamps."""
        return [*self.sot_sequence, self.no_timestamps]

    def encode(self, text: str) -> list[int]:
        """Token ids for ``text``, without any special tokens added around it."""
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, tokens: Iterable[int]) -> str:
        """Text of ``tokens``, dropping every special and timestamp token (ids from `eot` up)."""
        return self.tokenizer.decode([int(token) for token in tokens if token < self.eot])

    def decode_with_timestamps(self, tokens: Iterable[int]) -> str:
        """Text of ``tokens`` with each timestamp token written in place, as "<|1.08|>".

        Other special tokens are dropped, as in `decode`.
        """
        pieces, text_tokens = [], []
        for token in map(int, tokens):
            if token >= self.timestamp_begin:
                seconds = (token - self.timestamp_begin) * TIMESTAMP_STEP_S
                pieces += [self.tokenizer.decode(text_tokens), f"<|{seconds:.2f}|>"]
                text_tokens = []
            else:
                text_tokens.append(token)
        return "".join(pieces) + self.tokenizer.decode(text_tokens)

    @cached_property
    def non_speech_tokens(self) -> tuple[int, ...]:
        """Ids whisper suppresses for ``suppress_tokens=-1``: the start of speaker tags, sound
        descriptions and markup ("♪♪♪", "( SPEAKING FOREIGN LANGUAGE )", "[DAVID]"), sorted.

        A symbol counts only where it is a single token, alone or after a space, except the musical
        symbols, whose first token is always suppressed. Hyphen and apostrophe are suppressed only at
        the start of a word, so "well-known" and "don't" stay possible.
        """
        suppressed = {self.encode(" -")[0], self.encode(" '")[0]}
        for symbol in (*_NON_SPEECH_SYMBOLS, *_MUSIC_SYMBOLS):
            for tokens in (self.encode(symbol), self.encode(f" {symbol}")):
                if len(tokens) == 1 or symbol in _MUSIC_SYMBOLS:
                    suppressed.add(tokens[0])
        return tuple(sorted(suppressed))

    def split_to_word_tokens(self, tokens: Iterable[int]) -> tuple[list[str], list[list[int]]]:
        """Group ``tokens`` into words for word-level timestamps.

        Languages written with spaces split as `split_tokens_on_spaces`; Chinese, Japanese, Thai,
        Lao, Burmese and Cantonese as `split_tokens_on_unicode`.

        Returns
        -------
        words : list of str
            The text of each word, with its leading space; concatenated they give
            `decode_with_timestamps` of ``tokens``.
        word_tokens : list of list of int
            The tokens of each word.
        """
        if self.language in _UNSPACED_LANGUAGES:
            return self.split_tokens_on_unicode(tokens)
        return self.split_tokens_on_spaces(tokens)

    def split_tokens_on_unicode(self, tokens: Iterable[int]) -> tuple[list[str], list[list[int]]]:
        """Group ``tokens`` so that each group decodes to whole characters.

        Byte-level BPE cuts a multi-byte character ("é", "你", "🙂") across tokens, whose text alone
        would be a replacement character; such tokens join the next until the character is complete.
        """
        tokens = [int(token) for token in tokens]
        full_text = self.decode_with_timestamps(tokens)
        words, word_tokens, pending = [], [], []
        offset = 0  # length of full_text already handed out as words
        for token in tokens:
            pending.append(token)
            text = self.decode_with_timestamps(pending)
            cut = text.find(_REPLACEMENT_CHAR)
            # A replacement character that the full text has too is really there (invalid UTF-8 in
            # the output), not a character cut at the end of the group, so it closes the group as well.
            if cut < 0 or full_text[offset + cut : offset + cut + 1] == _REPLACEMENT_CHAR:
                words.append(text)
                word_tokens.append(pending)
                pending = []
                offset += len(text)
        return words, word_tokens

    def split_tokens_on_spaces(self, tokens: Iterable[int]) -> tuple[list[str], list[list[int]]]:
        """Group ``tokens`` into space-separated words.

        A word starts at a group (see `split_tokens_on_unicode`) that begins with a space, is a special
        or timestamp token, or is punctuation; other groups join the word before them.
        """
        words, word_tokens = [], []
        for text, group in zip(*self.split_tokens_on_unicode(tokens), strict=True):
            # A substring test, as whisper does: "" and runs such as "()" count as punctuation, while
            # "..." (not a substring of string.punctuation) stays with the word before it.
            punctuation = text.strip() in string.punctuation
            starts_word = group[0] >= self.eot or text.startswith(" ") or punctuation
            if starts_word or not words:
                words.append(text)
                word_tokens.append(group)
            else:
                words[-1] += text
                word_tokens[-1].extend(group)
        return words, word_tokens
