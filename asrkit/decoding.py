"""CTC decoding: from per-frame scores to text with character and word times."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from asrkit.lm import NGramLM
from asrkit.models.base import Span
from asrkit.text import BLANK_ID, CharTokenizer


def greedy_decode(
    logits: np.ndarray, *, tokenizer: CharTokenizer, frame_duration_s: float
) -> tuple[str, tuple[Span, ...]]:
    """Best path CTC decoding: the top token per frame, repeats merged, blanks dropped.

    Parameters
    ----------
    logits : np.ndarray, shape (n_frames, vocab_size)
        Scores (logits or log-probabilities) per output frame.
    tokenizer : CharTokenizer
        The vocabulary the model was trained with.
    frame_duration_s : float
        Seconds of audio per output frame.

    Returns
    -------
    text : str
    chars : tuple of Span
        One span per emitted character, from its first frame to the end of its last repeated frame.

    Examples
    --------
    >>> tok = CharTokenizer()
    >>> a, b = tok.encode("a")[0], tok.encode("b")[0]
    >>> logits = np.eye(tok.vocab_size)[[a, a, BLANK_ID, a, b]]
    >>> greedy_decode(logits, tokenizer=tok, frame_duration_s=0.04)[0]
    'aab'
    """
    if logits.ndim != 2 or logits.shape[1] != tokenizer.vocab_size:
        raise ValueError(
            f"logits must have shape (n_frames, {tokenizer.vocab_size}); got {logits.shape}"
        )
    best = np.argmax(logits, axis=-1)
    # a run starts wherever the best token changes; runs of blank are gaps
    starts = np.flatnonzero(np.diff(best, prepend=-1))
    ends = np.append(starts[1:], len(best))
    chars = tuple(
        Span(tokenizer.decode([int(best[s])]), s * frame_duration_s, e * frame_duration_s)
        for s, e in zip(starts, ends)
        if best[s] != BLANK_ID
    )
    text = " ".join("".join(c.text for c in chars).split())
    return text, chars


def words_from_chars(chars: tuple[Span, ...]) -> tuple[Span, ...]:
    """Group character spans into word spans at spaces.

    Examples
    --------
    >>> cs = tuple(Span(c, i * 0.1, i * 0.1 + 0.1) for i, c in enumerate("hi yo"))
    >>> [(w.text, round(w.start, 1), round(w.end, 1)) for w in words_from_chars(cs)]
    [('hi', 0.0, 0.2), ('yo', 0.3, 0.5)]
    """
    words: list[Span] = []
    current: list[Span] = []
    for span in (*chars, Span(" ", 0.0, 0.0)):
        if span.text == " ":
            if current:
                words.append(Span("".join(c.text for c in current), current[0].start, current[-1].end))
            current = []
        else:
            current.append(span)
    return tuple(words)


@dataclass(frozen=True)
class DecoderConfig:
    """How a CTC model turns scores into text; saved in the model card."""

    # word n-gram language model file (ARPA, optionally .gz) in the model folder; None: greedy decoding
    lm: str | None = None
    # weight of the language model's log probability
    alpha: float = 0.5
    # bonus per word, offsetting the language model's preference for fewer words
    beta: float = 1.0
    # prefixes kept per frame
    beam_width: int = 16
    # characters scoring this far (natural log) below a frame's best are not extended
    prune: float = 8.0
    # form only words the language model knows (as DeepSpeech's trie): a weak acoustic model's
    # misspellings snap to real words, and words the LM never saw cannot come out
    closed_vocabulary: bool = False


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def beam_search(
    logits: np.ndarray,
    *,
    tokenizer: CharTokenizer,
    frame_duration_s: float,
    lm: NGramLM | None = None,
    config: DecoderConfig = DecoderConfig(),
) -> tuple[str, tuple[Span, ...]]:
    """CTC prefix beam search, scoring each completed word with a word language model.

    A prefix's score is ``log P_ctc + alpha * log P_lm(words) + beta * n_words``, as in DeepSpeech's
    decoder. Same inputs and outputs as :func:`greedy_decode`; character spans run from the frame a
    character was first emitted to the next frame.

    Examples
    --------
    >>> tok = CharTokenizer()
    >>> logits = np.log(np.eye(tok.vocab_size)[[tok.encode(c)[0] for c in "hi"]] + 1e-3)
    >>> beam_search(logits, tokenizer=tok, frame_duration_s=0.04)[0]
    'hi'
    """
    search = PrefixBeamSearch(tokenizer=tokenizer, frame_duration_s=frame_duration_s, lm=lm, config=config)
    search.advance(logits)
    return search.best(final=True)


class PrefixBeamSearch:
    """:func:`beam_search` fed frame by frame: ``advance`` over any split of the logits, then ``best``
    gives what one call over all of them would, so a stream can decode as frames arrive.

    Examples
    --------
    >>> tok = CharTokenizer()
    >>> logits = np.log(np.eye(tok.vocab_size)[[tok.encode(c)[0] for c in "hi"]] + 1e-3)
    >>> search = PrefixBeamSearch(tokenizer=tok, frame_duration_s=0.04)
    >>> search.advance(logits[:1]); search.advance(logits[1:])
    >>> search.best(final=True)[0]
    'hi'
    """

    def __init__(
        self,
        *,
        tokenizer: CharTokenizer,
        frame_duration_s: float,
        lm: NGramLM | None = None,
        config: DecoderConfig = DecoderConfig(),
    ) -> None:
        self.tokenizer = tokenizer
        self.frame_duration_s = frame_duration_s
        self.lm = lm
        self.config = config
        self._space = tokenizer.encode(" ")[0]
        self._chars = [tokenizer.decode([i]) for i in range(tokenizer.vocab_size)]
        # prefix (tuple of token ids) -> [log P ending in blank, log P ending in a character]
        self._beams: dict[tuple[int, ...], list[float]] = {(): [0.0, -math.inf]}
        # every prefix ever extended keeps its LM score and the frames of its characters, so a
        # prefix that leaves the beam and comes back is scored and timed as before
        self._lm_score: dict[tuple[int, ...], float] = {(): 0.0}
        self._first_frame: dict[tuple[int, ...], tuple[int, ...]] = {(): ()}
        # with a closed vocabulary: the word each prefix is spelling so far
        self._closed = lm is not None and config.closed_vocabulary
        self._partial: dict[tuple[int, ...], str] = {(): ""}
        self._t = 0

    def _word_score(self, prefix: tuple[int, ...], final: bool = False) -> float:
        """alpha * ln P(last word | earlier words) + beta, for a prefix that just completed a word."""
        words = "".join(self._chars[i] for i in prefix).split()
        if not words:
            return 0.0
        lm, config = self.lm, self.config
        score = config.beta
        if lm is not None:
            context = tuple(["<s>", *words[:-1]][-(lm.order - 1) :]) if lm.order > 1 else ()
            score += config.alpha * lm.logprob(context, words[-1])
            if final:
                score += config.alpha * lm.logprob(tuple([*words][-(lm.order - 1) :]), "</s>")
        return score

    def advance(self, logits: np.ndarray) -> None:
        """Extend the beams by (n_frames, vocab_size) scores of the next frames."""
        if logits.ndim != 2 or logits.shape[1] != self.tokenizer.vocab_size:
            raise ValueError(f"logits must have shape (n_frames, {self.tokenizer.vocab_size}); got {logits.shape}")
        neg_inf, space = -math.inf, self._space
        lm_score, first_frame, config = self._lm_score, self._first_frame, self.config
        beams = self._beams
        for t, frame in enumerate(_log_softmax(logits.astype(np.float64)), start=self._t):
            candidates = np.flatnonzero(frame >= frame.max() - config.prune)
            if self._closed and BLANK_ID not in candidates:
                # a frame whose every likely character leaves the vocabulary would empty the beam;
                # staying on a prefix through a blank is always allowed
                candidates = np.append(candidates, BLANK_ID)
            nxt: dict[tuple[int, ...], list[float]] = defaultdict(lambda: [neg_inf, neg_inf])
            for prefix, (p_blank, p_char) in beams.items():
                total = np.logaddexp(p_blank, p_char)
                last = prefix[-1] if prefix else None
                for c in candidates:
                    p = frame[c]
                    if c == BLANK_ID:
                        entry = nxt[prefix]
                        entry[0] = np.logaddexp(entry[0], total + p)
                        continue
                    if c == space and (last is None or last == space):
                        continue  # leading and doubled spaces carry no information
                    extended = (*prefix, int(c))
                    if extended not in lm_score:
                        lm_score[extended] = lm_score[prefix] + (self._word_score(prefix) if c == space else 0.0)
                        first_frame[extended] = (*first_frame[prefix], t)
                        if self._closed:
                            self._close(prefix, extended, c)
                    if c == last:
                        # a repeat only extends the prefix after a blank; otherwise it merges
                        same = nxt[prefix]
                        same[1] = np.logaddexp(same[1], p_char + p)
                    if lm_score[extended] == neg_inf:
                        continue  # it left the closed vocabulary
                    entry = nxt[extended]
                    entry[1] = np.logaddexp(entry[1], (p_blank if c == last else total) + p)
            beams = dict(
                sorted(nxt.items(), key=lambda kv: np.logaddexp(*kv[1]) + lm_score[kv[0]], reverse=True)[
                    : config.beam_width
                ]
            )
        self._beams = beams
        self._t += len(logits)

    def _close(self, prefix: tuple[int, ...], extended: tuple[int, ...], c: int) -> None:
        """Rule out ``extended`` if it leaves the vocabulary: a space after a non-word, or a character
        that no word continues with."""
        partial = self._partial[prefix]
        if c == self._space:
            allowed, self._partial[extended] = partial in self.lm.vocabulary, ""
        else:
            self._partial[extended] = partial + self._chars[c]
            allowed = self._partial[extended] in self.lm.word_prefixes
        if not allowed:
            self._lm_score[extended] = -math.inf

    def best(self, *, final: bool = False) -> tuple[str, tuple[Span, ...]]:
        """Text and character spans of the best prefix so far; ``final`` scores the end of the
        utterance too (the last word's LM score and the end-of-sentence token)."""
        beams, space = self._beams, self._space

        def score(prefix: tuple[int, ...]) -> float:
            ends_word = bool(prefix) and prefix[-1] != space
            bonus = self._word_score(prefix, final=final) if ends_word else 0.0
            return float(np.logaddexp(*beams[prefix])) + self._lm_score[prefix] + bonus

        candidates = list(beams)
        if self._closed and final:
            # an utterance cannot end inside a word
            whole = [p for p in beams if not self._partial[p] or self._partial[p] in self.lm.vocabulary]
            candidates = whole or candidates
        best = max(candidates, key=score)
        if self._closed and final and self._partial[best] not in self.lm.vocabulary:
            # every prefix did: the unfinished word is dropped
            best = best[: len(best) - len(self._partial[best])]
        spans = tuple(
            Span(self._chars[c], f * self.frame_duration_s, (f + 1) * self.frame_duration_s)
            for c, f in zip(best, self._first_frame[best])
        )
        if spans and spans[-1].text == " ":
            spans = spans[:-1]
        return "".join(s.text for s in spans), spans
