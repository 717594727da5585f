"""CTC decoding: from per-frame scores to text with character and word times."""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import numpy as np

from asrkit.contracts import Span
from asrkit.lm import NGramLM
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
        raise ValueError(f"logits must have shape (n_frames, {tokenizer.vocab_size}); got {logits.shape}")
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


def _logaddexp(a: float, b: float) -> float:
    """ln(e^a + e^b) of two floats; numpy's ufunc costs more than the arithmetic on scalars."""
    if a < b:
        a, b = b, a
    if b == -math.inf:
        return a
    return a + math.log1p(math.exp(b - a))


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
        # Prefixes are nodes of a tree, numbered as created (0: the empty prefix), so extending one
        # costs the same however long it is. Every node ever created keeps its LM score and the frame
        # of its character, so a prefix that leaves the beam and comes back is scored and timed as
        # before. Per node: its parent, its last token (-1 for the root), the frame that token was
        # first emitted at, the LM score of its completed words, the words before the one being
        # spelt (the LM's context: at most order - 1, from "<s>") and that word so far.
        self._parent, self._token, self._frame = [-1], [-1], [-1]
        self._context_size = lm.order - 1 if lm is not None else 0
        self._lm_score, self._context, self._partial = [0.0], [self._last_words(("<s>",))], [""]
        self._children: dict[tuple[int, int], int] = {}
        # node -> [log P ending in blank, log P ending in a character]
        self._beams: dict[int, list[float]] = {0: [0.0, -math.inf]}
        self._closed = lm is not None and config.closed_vocabulary
        self._t = 0

    def _last_words(self, words: tuple[str, ...]) -> tuple[str, ...]:
        """The last order - 1 of ``words``: all the LM looks at."""
        return words[-self._context_size :] if self._context_size else ()

    def _word_score(self, context: tuple[str, ...], word: str) -> float:
        """alpha * ln P(word | context) + beta, for a word just completed."""
        score = self.config.beta
        if self.lm is not None:
            score += self.config.alpha * self.lm.logprob(context, word)
        return score

    def _extend(self, node: int, token: int, t: int) -> int:
        """The child of ``node`` by ``token`` (first emitted at frame ``t``), scored; -inf LM score if
        a closed vocabulary rules it out (a space after a non-word, a character no word continues with)."""
        child = len(self._parent)
        self._children[node, token] = child
        self._parent.append(node)
        self._token.append(token)
        self._frame.append(t)
        score, context, word = self._lm_score[node], self._context[node], self._partial[node]
        if token == self._space:
            allowed = word in self.lm.vocabulary if self._closed else True
            score += self._word_score(context, word)
            context = self._last_words((*context, word))
            word = ""
        else:
            word += self._chars[token]
            allowed = word in self.lm.word_prefixes if self._closed else True
        self._lm_score.append(score if allowed else -math.inf)
        self._context.append(context)
        self._partial.append(word)
        return child

    def advance(self, logits: np.ndarray) -> None:
        """Extend the beams by (n_frames, vocab_size) scores of the next frames."""
        if logits.ndim != 2 or logits.shape[1] != self.tokenizer.vocab_size:
            raise ValueError(f"logits must have shape (n_frames, {self.tokenizer.vocab_size}); got {logits.shape}")
        neg_inf, space, add = -math.inf, self._space, _logaddexp
        lm_score, last_token, children, config = self._lm_score, self._token, self._children, self.config
        beams = self._beams
        for t, frame in enumerate(_log_softmax(logits.astype(np.float64)), start=self._t):
            candidates = np.flatnonzero(frame >= frame.max() - config.prune).tolist()
            if self._closed and BLANK_ID not in candidates:
                # a frame whose every likely character leaves the vocabulary would empty the beam;
                # staying on a prefix through a blank is always allowed
                candidates.append(BLANK_ID)
            scores = frame.tolist()
            nxt: dict[int, list[float]] = {}
            for node, (p_blank, p_char) in beams.items():
                total = add(p_blank, p_char)
                last = last_token[node]
                for c in candidates:
                    p = scores[c]
                    if c == BLANK_ID:
                        entry = nxt.setdefault(node, [neg_inf, neg_inf])
                        entry[0] = add(entry[0], total + p)
                        continue
                    if c == space and (node == 0 or last == space):
                        continue  # leading and doubled spaces carry no information
                    child = children.get((node, c))
                    if child is None:
                        child = self._extend(node, c, t)
                    if c == last:
                        # a repeat only extends the prefix after a blank; otherwise it merges
                        same = nxt.setdefault(node, [neg_inf, neg_inf])
                        same[1] = add(same[1], p_char + p)
                    if lm_score[child] == neg_inf:
                        continue  # it left the closed vocabulary
                    entry = nxt.setdefault(child, [neg_inf, neg_inf])
                    entry[1] = add(entry[1], (p_blank if c == last else total) + p)
            beams = dict(heapq.nlargest(config.beam_width, nxt.items(), key=lambda kv: add(*kv[1]) + lm_score[kv[0]]))
        self._beams = beams
        self._t += len(logits)

    def _path(self, node: int) -> list[int]:
        """The nodes from the root's first child down to ``node``."""
        path = []
        while node > 0:
            path.append(node)
            node = self._parent[node]
        return path[::-1]

    def best(self, *, final: bool = False) -> tuple[str, tuple[Span, ...]]:
        """Text and character spans of the best prefix so far; ``final`` scores the end of the
        utterance too (the last word's LM score and the end-of-sentence token)."""
        beams, partial = self._beams, self._partial

        def score(node: int) -> float:
            score = _logaddexp(*beams[node]) + self._lm_score[node]
            context = self._context[node]
            if partial[node]:
                score += self._word_score(context, partial[node])
                context = (*context, partial[node])
            if final and self.lm is not None and node:
                score += self.config.alpha * self.lm.logprob(self._last_words(context), "</s>")
            return score

        candidates = list(beams)
        if self._closed and final:
            # an utterance cannot end inside a word
            whole = [n for n in beams if not partial[n] or partial[n] in self.lm.vocabulary]
            candidates = whole or candidates
        best = max(candidates, key=score)
        if self._closed and final and partial[best] not in self.lm.vocabulary:
            # every prefix did: the unfinished word is dropped
            for _ in range(len(partial[best])):
                best = self._parent[best]
        step = self.frame_duration_s
        spans = [
            Span(self._chars[self._token[n]], self._frame[n] * step, (self._frame[n] + 1) * step)
            for n in self._path(best)
        ]
        if spans and spans[-1].text == " ":
            spans.pop()
        return "".join(s.text for s in spans), tuple(spans)
