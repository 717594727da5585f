"""CTC decoding: from per-frame scores to text with character and word times."""

from __future__ import annotations

import numpy as np

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
