"""Word and character error rates, alignments and confusion pairs, built on jiwer.

Both sides are passed through :func:`asrkit.text.normalize_text` first (unless told not to), so a
score never counts case, punctuation or "10" against "ten".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import jiwer
import numpy as np

from asrkit.text import normalize_text

#: Name of the text normaliser every report states, so two WERs can be compared knowingly.
NORMALIZER_NAME = "asrkit.text.normalize_text"


@dataclass(frozen=True)
class ErrorCounts:
    """Edit counts of one alignment (or a sum of several)."""

    hits: int = 0
    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def reference_length(self) -> int:
        return self.hits + self.substitutions + self.deletions

    @property
    def rate(self) -> float:
        """Errors per reference unit; with an empty reference, errors per one unit (as jiwer)."""
        return self.errors / max(self.reference_length, 1)

    def __add__(self, other: ErrorCounts) -> ErrorCounts:
        return ErrorCounts(
            self.hits + other.hits,
            self.substitutions + other.substitutions,
            self.deletions + other.deletions,
            self.insertions + other.insertions,
        )


@dataclass(frozen=True)
class AlignedWord:
    """One step of a word alignment: ``op`` is "equal", "substitute", "delete" or "insert".

    ``reference`` is None for an insertion and ``hypothesis`` is None for a deletion.
    """

    op: str
    reference: str | None
    hypothesis: str | None


class _Rates:
    """Word and character error rates of a score holding ``words`` and ``chars`` counts."""

    words: ErrorCounts
    chars: ErrorCounts

    @property
    def wer(self) -> float:
        return self.words.rate

    @property
    def cer(self) -> float:
        return self.chars.rate


@dataclass(frozen=True)
class UtteranceScore(_Rates):
    """Score of one hypothesis against its reference (both as normalised text)."""

    reference: str
    hypothesis: str
    words: ErrorCounts
    chars: ErrorCounts
    alignment: tuple[AlignedWord, ...]


@dataclass(frozen=True)
class CorpusScore(_Rates):
    """Scores of many utterances and their totals (errors summed, then divided)."""

    utterances: tuple[UtteranceScore, ...]
    words: ErrorCounts
    chars: ErrorCounts


def _counts(chunks) -> ErrorCounts:
    hits = subs = dels = ins = 0
    for chunk in chunks:
        ref_len = chunk.ref_end_idx - chunk.ref_start_idx
        hyp_len = chunk.hyp_end_idx - chunk.hyp_start_idx
        if chunk.type == "equal":
            hits += ref_len
        elif chunk.type == "substitute":
            subs += ref_len
        elif chunk.type == "delete":
            dels += ref_len
        else:
            ins += hyp_len
    return ErrorCounts(hits, subs, dels, ins)


def _aligned_words(chunks, ref: list[str], hyp: list[str]) -> tuple[AlignedWord, ...]:
    steps: list[AlignedWord] = []
    for chunk in chunks:
        refs = ref[chunk.ref_start_idx : chunk.ref_end_idx]
        hyps = hyp[chunk.hyp_start_idx : chunk.hyp_end_idx]
        if chunk.type in ("equal", "substitute"):
            steps.extend(AlignedWord(chunk.type, r, h) for r, h in zip(refs, hyps))
        elif chunk.type == "delete":
            steps.extend(AlignedWord("delete", r, None) for r in refs)
        else:
            steps.extend(AlignedWord("insert", None, h) for h in hyps)
    return tuple(steps)


def score_corpus(
    references: Sequence[str], hypotheses: Sequence[str], *, normalize: bool = True
) -> CorpusScore:
    """Score hypotheses against references, one pair per utterance.

    Parameters
    ----------
    references, hypotheses : sequences of str, same length
    normalize : bool
        Pass both sides through :func:`asrkit.text.normalize_text` first.

    Examples
    --------
    >>> s = score_corpus(["the cat sat"], ["the cat sat down"])
    >>> s.wer, s.words.insertions
    (0.3333333333333333, 1)
    """
    if len(references) != len(hypotheses):
        raise ValueError(
            f"{len(references)} references but {len(hypotheses)} hypotheses: they must pair up"
        )
    prepare = normalize_text if normalize else (lambda s: " ".join(s.split()))
    refs = [prepare(r) for r in references]
    hyps = [prepare(h) for h in hypotheses]
    if not refs:
        return CorpusScore((), ErrorCounts(), ErrorCounts())
    words = jiwer.process_words(refs, hyps)
    chars = jiwer.process_characters(refs, hyps)
    scores = tuple(
        UtteranceScore(
            reference=r,
            hypothesis=h,
            words=_counts(word_chunks),
            chars=_counts(char_chunks),
            alignment=_aligned_words(word_chunks, ref_words, hyp_words),
        )
        for r, h, word_chunks, char_chunks, ref_words, hyp_words in zip(
            refs, hyps, words.alignments, chars.alignments, words.references, words.hypotheses
        )
    )
    return CorpusScore(
        utterances=scores,
        words=sum((s.words for s in scores), ErrorCounts()),
        chars=sum((s.chars for s in scores), ErrorCounts()),
    )


def score(reference: str, hypothesis: str, *, normalize: bool = True) -> UtteranceScore:
    """Score one hypothesis against one reference.

    Examples
    --------
    >>> s = score("He was not an ill-disposed man.", "he was an ill disposed van")
    >>> round(s.wer, 3), s.words.deletions, s.words.substitutions
    (0.286, 1, 1)
    """
    return score_corpus([reference], [hypothesis], normalize=normalize).utterances[0]


def confusion_pairs(
    scores: Sequence[UtteranceScore], *, top: int | None = None
) -> list[tuple[tuple[str, str], int]]:
    """Most frequent (reference word, hypothesis word) substitutions, commonest first."""
    pairs = Counter(
        (step.reference, step.hypothesis)
        for s in scores
        for step in s.alignment
        if step.op == "substitute"
    )
    return pairs.most_common(top)


@dataclass(frozen=True)
class Interval:
    """A bootstrap confidence interval of an error rate."""

    low: float
    high: float
    # the probability mass between low and high, e.g. 0.95
    confidence: float


def bootstrap_interval(
    counts: Sequence[ErrorCounts], *, resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> Interval:
    """Confidence interval of the corpus error rate by resampling utterances with replacement.

    Utterances, not words, are resampled: errors within one utterance are not independent.

    Examples
    --------
    >>> counts = [ErrorCounts(hits=9, substitutions=1)] * 50 + [ErrorCounts(hits=5, deletions=5)] * 50
    >>> i = bootstrap_interval(counts)
    >>> round(i.low, 2) < 0.3 < round(i.high, 2)
    True
    """
    if not counts:
        return Interval(0.0, 0.0, confidence)
    errors = np.array([c.errors for c in counts], np.int64)
    lengths = np.array([c.reference_length for c in counts], np.int64)
    rng = np.random.default_rng(seed)
    rates = []
    # blocks of resamples bound memory for large corpora
    block = max(1, 2_000_000 // len(counts))
    for start in range(0, resamples, block):
        picks = rng.integers(0, len(counts), (min(block, resamples - start), len(counts)))
        rates.append(errors[picks].sum(axis=1) / np.maximum(lengths[picks].sum(axis=1), 1))
    low, high = np.quantile(np.concatenate(rates), [(1 - confidence) / 2, (1 + confidence) / 2])
    return Interval(float(low), float(high), confidence)
