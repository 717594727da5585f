"""Word-level timestamps from the decoder's cross-attention, as faster-whisper's ``word_timestamps=True``.

A few cross-attention heads of Whisper's decoder (the checkpoint's *alignment heads*) look at the
audio a token is spoken in. `find_alignment` runs a window's transcript through the decoder in one
pass, keeps those heads' weights over the window's real audio, standardises them per head, smooths
them along time with a median filter, averages the heads and finds the monotonic path through the
tokens × time matrix that collects the most attention (dynamic time warping); a word starts where
the path first reaches the token before its first token. `add_word_timestamps` then applies
faster-whisper's clean-ups: words at sentence ends clamped to twice the median word length,
punctuation merged into its word, times moved to the window's start and the first and last words
of each segment reconciled with the segment's own times.

Everything follows faster-whisper 1.2.1 and CTranslate2 4.x (``Whisper.align``), which follow
openai-whisper's ``timing.py``; times are in seconds, in steps of one encoder position (20 ms).
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from asrkit.models.whisper.frontend import TOKENS_PER_SECOND

# a word that is one of these (a substring test, as faster-whisper's) ends a sentence
SENTENCE_END_MARKS = ".。!！?？"
# faster-whisper's defaults: punctuation joined to the word after it, and to the word before it
PREPEND_PUNCTUATIONS = "\"'“¿([{-"
APPEND_PUNCTUATIONS = "\"'.。,，!！?？:：”)]}、"
# the median word duration used by the clean-ups is capped at this many seconds
MAX_MEDIAN_DURATION = 0.7


class AlignmentTokenizer(Protocol):
    """What alignment reads of a tokenizer: `asrkit.models.whisper.tokenizer.WhisperTokenizer` has it."""

    eot: int
    no_timestamps: int

    @property
    def sot_sequence(self) -> Sequence[int]: ...

    def split_to_word_tokens(self, tokens: list[int]) -> tuple[list[str], list[list[int]]]: ...


@dataclass(frozen=True)
class WordTiming:
    """One word of a transcript and when it is spoken."""

    # its text, with the leading space the tokenizer gives it
    word: str
    # its token ids (after `merge_punctuations`, those of the punctuation merged into it too)
    tokens: tuple[int, ...]
    # seconds: from the window's start out of `find_alignment`, from the audio's start out of `add_word_timestamps`
    start: float
    # seconds, as start
    end: float
    # mean probability the decoder gave its tokens, each among the text tokens only
    probability: float


@dataclass(frozen=True)
class AlignedSegment:
    """A segment of a window's transcript with its words, out of `add_word_timestamps`."""

    # seconds from the audio's start: the segment's own start, or its first word's when that is more plausible
    start: float
    # seconds, as start, with the last word
    end: float
    # its words in order, empty pieces of merged punctuation left out
    words: tuple[WordTiming, ...]


def median_filter(x: np.ndarray, width: int) -> np.ndarray:
    """Running median over the last axis, the edges mirrored (without repeating the edge value).

    Parameters
    ----------
    x : np.ndarray, shape = (..., n)
    width : int
        Odd window length. When ``n <= width // 2`` there is nothing to mirror and ``x`` comes back
        unchanged, as in CTranslate2.

    Returns
    -------
    np.ndarray, shape = (..., n), dtype of ``x``

    Examples
    --------
    >>> median_filter(np.array([3.0, 1.0, 2.0, 9.0]), 3)
    array([1., 2., 2., 2.])
    """
    width = operator.index(width)
    if width < 1 or width % 2 == 0:
        raise ValueError(f"the median filter's width must be a positive odd number, got {width}")
    x = np.asarray(x)
    half = width // 2
    if half == 0 or x.shape[-1] <= half:
        return x.copy()
    padded = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(half, half)], mode="reflect")
    windows = np.lib.stride_tricks.sliding_window_view(padded, width, axis=-1)
    return np.partition(windows, half, axis=-1)[..., half]


def dtw(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The cheapest monotonic path through ``cost`` from its first cell to its last, by whisper's rule.

    Each step moves one row down, one column right, or both; the path's cost is the sum of the
    cells it visits. Each cell is reached as in openai-whisper and CTranslate2: diagonally when
    that is strictly cheapest, else from above when that is strictly cheapest, else from the left,
    even when the diagonal and the step from above tie at a lower cost (with real-valued attention
    they never do).

    Parameters
    ----------
    cost : np.ndarray, shape = (n, m)
        Finite costs (`find_alignment` passes minus the attention).

    Returns
    -------
    rows, cols : np.ndarray of int, each shape = (path length,)
        The cells of the path in order, from (0, 0) to (n - 1, m - 1).

    Examples
    --------
    >>> dtw(np.array([[0.0, 0.0, 5.0], [5.0, 5.0, 0.0]]))
    (array([0, 0, 1]), array([0, 1, 2]))
    """
    cost = np.asarray(cost, dtype=np.float64)
    if cost.ndim != 2 or 0 in cost.shape:
        raise ValueError(f"dtw needs a non-empty 2-D cost matrix, got shape {cost.shape}")
    n, m = cost.shape
    # trace[i, j]: the step that reached cell (i, j) of the 1-based table: 0 diagonal, 1 down, 2 right
    trace = np.empty((n + 1, m + 1), dtype=np.int8)
    previous = np.full(m + 1, np.inf)
    previous[0] = 0.0
    for i in range(1, n + 1):
        # total[j] = cost[j] + min(diagonal[j], up[j], total[j - 1]) chains along the row; unrolled, it
        # is a running minimum over the row's prefix sums S:
        # total[j] = S[j] + min over k <= j of (min(diagonal[k], up[k]) - S[k - 1])
        prefix = np.concatenate(([0.0], np.cumsum(cost[i - 1])))
        diagonal, up = previous[:-1], previous[1:]
        current = np.empty(m + 1)
        current[0] = np.inf
        current[1:] = prefix[1:] + np.minimum.accumulate(np.minimum(diagonal, up) - prefix[:-1])
        left = current[:-1]
        if np.any((diagonal == up) & (diagonal < left)):
            # whisper's rule comes from the left when diagonal and up tie, even if that costs more;
            # exact ties are rare with real attention, so such a row is redone one cell at a time
            current = _dtw_row(cost[i - 1], diagonal, up)
            left = current[:-1]
        trace[i, 1:] = np.where((diagonal < up) & (diagonal < left), 0, np.where((up < diagonal) & (up < left), 1, 2))
        previous = current
    # off the table's edges only one way leads back to (0, 0)
    trace[0, :] = 2
    trace[:, 0] = 1
    i, j = n, m
    path = []
    while i > 0 or j > 0:
        path.append((i - 1, j - 1))
        step = int(trace[i, j])
        i -= step != 2
        j -= step != 1
    rows, cols = np.array(path[::-1], dtype=np.int64).T
    return rows, cols


def _dtw_row(cost: np.ndarray, diagonal: np.ndarray, up: np.ndarray) -> np.ndarray:
    """One row (m + 1,) of `dtw`'s table, cell by cell, with whisper's tie rule."""
    current = np.empty(len(cost) + 1)
    current[0] = np.inf
    for j, (value, c0, c1) in enumerate(zip(cost.tolist(), diagonal.tolist(), up.tolist()), start=1):
        c2 = current[j - 1]
        if c0 < c1 and c0 < c2:
            best = c0
        elif c1 < c0 and c1 < c2:
            best = c1
        else:
            best = c2
        current[j] = value + best
    return current


def _text_probabilities(logits: np.ndarray, targets: np.ndarray, eot: int) -> np.ndarray:
    """Probability (T,) of each target among the text tokens (ids below ``eot``), from logits (T, V)."""
    text = logits[:, :eot].astype(np.float64)
    text -= text.max(axis=-1, keepdims=True)
    log_z = np.log(np.exp(text).sum(axis=-1))
    return np.exp(text[np.arange(len(targets)), targets] - log_z)


def _attention_matrix(heads: np.ndarray, positions: int, median_filter_width: int) -> np.ndarray:
    """(T, positions) alignment matrix from the alignment heads' weights (H, T, A) of one sequence."""
    # renormalising the softmax over the real audio equals a softmax of the scores cut to it
    weights = heads[:, :, :positions].astype(np.float64)
    weights /= weights.sum(axis=-1, keepdims=True)
    # standardised over the tokens, per head and audio position (CTranslate2: layer norm, epsilon 0);
    # a position every token weighs alike (only when there is one position) stays 0, not NaN
    weights -= weights.mean(axis=1, keepdims=True)
    std = weights.std(axis=1, keepdims=True)
    np.divide(weights, std, out=weights, where=std > 0)
    return median_filter(weights, median_filter_width).mean(axis=0)


def find_alignment(
    inference,
    cross_kv,
    *,
    text_tokens: Sequence[Sequence[int]],
    num_frames: Sequence[int],
    tokenizer: AlignmentTokenizer,
    alignment_heads: Sequence[tuple[int, int]],
    median_filter_width: int = 7,
) -> list[list[WordTiming]]:
    """Words of each window's transcript and when in the window they are spoken.

    Each window's ``sot_sequence``, ``<|notimestamps|>``, text tokens and ``<|endoftext|>`` go through
    the decoder at once, the windows of a batch padded at the end (the decoder is causal, so padding
    changes nothing before it).

    Parameters
    ----------
    inference : WhisperInference
    cross_kv : list
        ``inference.cross_keys_values`` of the B windows' encoder output.
    text_tokens : sequence of B sequences of int
        Each window's transcript: text tokens only (ids below ``tokenizer.eot``), no timestamps.
    num_frames : sequence of B int
        Mel frames of real audio in each window (at most 3000); two frames make one encoder position.
    tokenizer : AlignmentTokenizer
        Gives ``sot_sequence``, ``no_timestamps``, ``eot`` and ``split_to_word_tokens``.
    alignment_heads : sequence of (decoder block, head)
        The checkpoint's ``generation.alignment_heads``.
    median_filter_width : int
        Odd width, in encoder positions, of the median filter on each head's weights.

    Returns
    -------
    list of B lists of WordTiming
        Times in seconds from the window's start, in 20-ms steps; probabilities of the tokens
        given the ones before them. Empty for a window without text tokens.
    """
    rows = [[int(token) for token in tokens] for tokens in text_tokens]
    num_frames = [operator.index(n) for n in num_frames]
    if len(num_frames) != len(rows):
        raise ValueError(f"num_frames has {len(num_frames)} entries for {len(rows)} windows of text_tokens")
    if not alignment_heads:
        raise ValueError("alignment needs the checkpoint's alignment heads; this checkpoint lists none")
    eot = tokenizer.eot
    for tokens in rows:
        if any(token >= eot or token < 0 for token in tokens):
            raise ValueError(f"text_tokens must be text token ids (0 to {eot - 1}), not special or timestamp tokens")
    if not any(rows):
        return [[] for _ in rows]
    median_filter_width = operator.index(median_filter_width)
    if median_filter_width < 1 or median_filter_width % 2 == 0:
        raise ValueError(f"median_filter_width must be a positive odd number, got {median_filter_width}")

    prompt = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
    sequences = [prompt + tokens + [eot] for tokens in rows]
    longest = max(map(len, sequences))
    if longest > inference.config.n_text_ctx:
        raise ValueError(
            f"a transcript of {longest - len(prompt) - 1} text tokens does not fit the decoder's "
            f"{inference.config.n_text_ctx} positions with its {len(prompt) + 1} special tokens"
        )
    batch = np.array([sequence + [eot] * (longest - len(sequence)) for sequence in sequences], dtype=np.int32)
    logits, weights = inference.cross_attention(batch, cross_kv)
    # (B, heads, T, A) of the alignment heads only
    heads = np.stack([weights[layer][:, head] for layer, head in alignment_heads], axis=1)

    results = []
    for b, tokens in enumerate(rows):
        if not tokens:
            results.append([])
            continue
        length = len(sequences[b])
        # encoder positions of real audio; a window of under two frames still gets its first position
        positions = min(max(num_frames[b] // 2, 1), heads.shape[-1])
        matrix = _attention_matrix(heads[b, :, :length], positions, median_filter_width)
        # rows from <|notimestamps|> (which predicts the first text token) to the last text token
        text_rows, times = dtw(-matrix[len(prompt) - 1 : -1])
        probabilities = _text_probabilities(logits[b, len(prompt) - 1 : length - 2], np.array(tokens), eot)
        words, word_tokens = tokenizer.split_to_word_tokens(tokens + [eot])
        # the last "word" is <|endoftext|>, which only closes the one before it
        boundaries = np.concatenate(([0], np.cumsum([len(piece) for piece in word_tokens[:-1]]))).astype(int)
        # where the path first reaches each row
        first_visit = np.diff(text_rows, prepend=-1).astype(bool)
        row_times = times[first_visit] / TOKENS_PER_SECOND
        results.append(
            [
                WordTiming(
                    word=word,
                    tokens=tuple(int(token) for token in pieces),
                    start=float(row_times[start]),
                    end=float(row_times[end]),
                    probability=float(np.mean(probabilities[start:end])),
                )
                for word, pieces, start, end in zip(words, word_tokens, boundaries[:-1], boundaries[1:])
            ]
        )
    return results


def merge_punctuations(
    words: Sequence[WordTiming],
    *,
    prepended: str = PREPEND_PUNCTUATIONS,
    appended: str = APPEND_PUNCTUATIONS,
) -> list[WordTiming]:
    """Opening punctuation joined to the word after it and closing punctuation to the word before.

    A merged piece stays in the list, its word and tokens emptied (its times unchanged), so that the
    list keeps one entry per tokenizer word; the word it joins keeps its own times. Which pieces
    count (a substring test on the word) is faster-whisper's.

    Examples
    --------
    >>> words = [WordTiming(w, (i,), i, i + 1, 1.0) for i, w in enumerate([" (", "Yes", ")", "."])]
    >>> [w.word for w in merge_punctuations(words)]
    ['', ' (Yes).', '', '']
    """
    texts = [w.word for w in words]
    tokens = [list(w.tokens) for w in words]
    following = len(words) - 1
    for i in range(len(words) - 2, -1, -1):
        if texts[i].startswith(" ") and texts[i].strip() in prepended:
            texts[following] = texts[i] + texts[following]
            tokens[following] = tokens[i] + tokens[following]
            texts[i], tokens[i] = "", []
        else:
            following = i
    previous = 0
    for j in range(1, len(words)):
        if not texts[previous].endswith(" ") and texts[j] in appended:
            texts[previous] += texts[j]
            tokens[previous] += tokens[j]
            texts[j], tokens[j] = "", []
        else:
            previous = j
    return [WordTiming(text, tuple(ids), w.start, w.end, w.probability) for w, text, ids in zip(words, texts, tokens)]


def _clamp_sentence_ends(starts: list[float], ends: list[float], texts: list[str], max_duration: float) -> None:
    """Shorten in place a word longer than ``max_duration`` that is, or follows, a sentence end."""
    for i in range(1, len(texts)):
        if ends[i] - starts[i] > max_duration:
            if texts[i] in SENTENCE_END_MARKS:
                ends[i] = starts[i] + max_duration
            elif texts[i - 1] in SENTENCE_END_MARKS:
                starts[i] = ends[i] - max_duration


def add_word_timestamps(
    alignments: Sequence[Sequence[WordTiming]],
    segments: Sequence[Sequence[tuple[float, float, Sequence[int]]]],
    *,
    time_offsets: Sequence[float],
    eot: int,
    last_speech_timestamp: float = 0.0,
    prepend_punctuations: str = PREPEND_PUNCTUATIONS,
    append_punctuations: str = APPEND_PUNCTUATIONS,
) -> tuple[list[list[AlignedSegment]], float]:
    """Give each segment of each window its words, with faster-whisper's clean-ups.

    Per window: a word longer than twice the median word duration (the median capped at
    `MAX_MEDIAN_DURATION`) is shortened if it is, or follows, a sentence end; punctuation is merged
    (`merge_punctuations`); times move to the audio's start, rounded to 10 ms. Per segment: after a
    pause of over four median durations an overlong first word (or first two) is shortened; a first
    or last word reaching over 0.5 s beyond the segment's own start or end is pulled in to it,
    otherwise the segment's start or end moves to its first or last word.

    Parameters
    ----------
    alignments : sequence of W sequences of WordTiming
        `find_alignment` of each window's text tokens (those of all its segments, in order).
    segments : sequence of W sequences of (start, end, tokens)
        Each window's segments, as ``Transcriber.split_segments`` gives them: start and end in
        seconds from the audio's start, and tokens (special and timestamp tokens are skipped).
    time_offsets : sequence of W float
        Each window's start in seconds from the audio's start.
    eot : int
        The tokenizer's ``eot``: ids from it up are not text.
    last_speech_timestamp : float
        End in seconds of the last word before these windows (0 at the audio's start).
    prepend_punctuations, append_punctuations : str
        As `merge_punctuations`.

    Returns
    -------
    segments : list of W lists of AlignedSegment
        One per input segment, in order.
    last_speech_timestamp : float
        End of the last segment that has words, or the argument if none has.
    """
    if not len(alignments) == len(segments) == len(time_offsets):
        raise ValueError(
            f"alignments ({len(alignments)}), segments ({len(segments)}) and time_offsets "
            f"({len(time_offsets)}) must have one entry per window"
        )
    results = []
    for alignment, window, time_offset in zip(alignments, segments, time_offsets):
        starts = [w.start for w in alignment]
        ends = [w.end for w in alignment]
        durations = np.array(ends) - np.array(starts)
        durations = durations[durations.nonzero()]
        median_duration = min(MAX_MEDIAN_DURATION, float(np.median(durations)) if len(durations) else 0.0)
        max_duration = median_duration * 2
        if len(durations):
            _clamp_sentence_ends(starts, ends, [w.word for w in alignment], max_duration)
        clamped = [WordTiming(w.word, w.tokens, s, e, w.probability) for w, s, e in zip(alignment, starts, ends)]
        merged = merge_punctuations(clamped, prepended=prepend_punctuations, appended=append_punctuations)

        aligned, index = [], 0
        for segment_start, segment_end, tokens in window:
            n_text = sum(1 for token in tokens if token < eot)
            # the alignment's entries up to this segment's last text token (merged pieces count theirs)
            taken, words = 0, []
            while index < len(merged) and taken < n_text:
                timing = merged[index]
                if timing.word:
                    words.append([timing, round(time_offset + timing.start, 2), round(time_offset + timing.end, 2)])
                taken += len(timing.tokens)
                index += 1
            if words:
                segment_start, segment_end = _fit_segment(
                    words, segment_start, segment_end, median_duration, max_duration, last_speech_timestamp
                )
                last_speech_timestamp = segment_end
            aligned.append(
                AlignedSegment(
                    start=float(segment_start),
                    end=float(segment_end),
                    words=tuple(WordTiming(t.word, t.tokens, float(s), float(e), t.probability) for t, s, e in words),
                )
            )
        results.append(aligned)
    return results, last_speech_timestamp


def _fit_segment(
    words: list[list],
    start: float,
    end: float,
    median_duration: float,
    max_duration: float,
    last_speech_timestamp: float,
) -> tuple[float, float]:
    """Reconcile a segment's first and last words (``[timing, start, end]``, edited in place) with its
    own ``start`` and ``end``; returns the segment's start and end."""
    first, second = words[0], words[1] if len(words) > 1 else None
    # the first word (or two) after a pause must not be longer than twice the median word
    if first[2] - last_speech_timestamp > median_duration * 4 and (
        first[2] - first[1] > max_duration or (second is not None and second[2] - first[1] > max_duration * 2)
    ):
        if second is not None and second[2] - second[1] > max_duration:
            boundary = max(second[2] / 2, second[2] - max_duration)
            first[2] = second[1] = boundary
        first[1] = max(0.0, first[2] - max_duration)
    # prefer the segment's own start when the first word reaches well before it
    if start < first[2] and start - 0.5 > first[1]:
        first[1] = max(0.0, min(first[2] - median_duration, start))
    else:
        start = first[1]
    last = words[-1]
    # and its own end when the last word reaches well beyond it
    if end > last[1] and end + 0.5 < last[2]:
        last[2] = max(last[1] + median_duration, end)
    else:
        end = last[2]
    return start, end
