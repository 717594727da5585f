"""Word and character error rates, alignments and confusion pairs.

Both sides are passed through :func:`asrkit.text.normalize_text` first (unless told not to), so a
score never counts case, punctuation or "10" against "ten". Counts come from jiwer; the word
alignment people read (reports, the app) comes from :func:`align_words`, which keeps jiwer's counts
but pairs similar words where several alignments tie.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import jiwer
import numpy as np
from rapidfuzz.distance import Levenshtein
from rapidfuzz.process import cdist

from asrkit.text import normalize_text

#: Name of the text normaliser every report states, so two WERs can be compared knowingly.
NORMALIZER_NAME = "asrkit.text.normalize_text"
# A substitution's dissimilarity (character edit distance over the longer word's length, 0 to 1) is
# counted in these many steps, so an alignment's cost is an exact integer and ties stay ties.
DISSIMILARITY_STEPS = 1000
# Word pairs (reference words times hypothesis words) of a stretch of wrong words above which it keeps
# jiwer's pairing (the fewest edits, no preference for similar words): re-pairing holds about 50 bytes
# a pair at once, so 2000 x 2000 wrong words in a row take some 200 MB.
MAX_ALIGNMENT_CELLS = 2000 * 2000
# Back-pointer codes of the alignment table.
_DIAGONAL, _DELETE, _INSERT = 0, 1, 2


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


def _pair_similar(ref: list[str], hyp: list[str]) -> list[AlignedWord]:
    """The alignment of a stretch with no word right, ``ref`` shape (r,) and ``hyp`` shape (h,), that
    has the fewest edits and, among those, the least summed dissimilarity of its substituted pairs.

    Identical words are never paired: paired, they would be a word right that jiwer's alignment does
    not count, and the counts would change.
    """
    r, h = len(ref), len(hyp)
    if not r or not h or r * h > MAX_ALIGNMENT_CELLS:
        return []
    ref_vocab, ref_ids = np.unique(np.array(ref, dtype=object), return_inverse=True)
    hyp_vocab, hyp_ids = np.unique(np.array(hyp, dtype=object), return_inverse=True)
    distance = cdist(ref_vocab.tolist(), hyp_vocab.tolist(), scorer=Levenshtein.distance, dtype=np.int64, workers=1)
    longer = np.maximum.outer([len(w) for w in ref_vocab], [len(w) for w in hyp_vocab])
    dissimilarity = np.rint(distance * DISSIMILARITY_STEPS / longer).astype(np.int64)
    # one integer cost in two tiers: all the dissimilarity a path can sum weighs less than one edit
    edit = DISSIMILARITY_STEPS * (min(r, h) + 1)
    # an identical pair costs more than deleting and inserting it, so no best path takes it
    pair_cost = np.where(distance == 0, 3 * edit, edit + dissimilarity)[:, hyp_ids]
    insertions = np.arange(h + 1, dtype=np.int64) * edit
    back = np.empty((r + 1, h + 1), np.int8)
    back[0] = _INSERT
    previous = insertions
    for i in range(1, r + 1):
        diagonal = previous[:-1] + pair_cost[ref_ids[i - 1]]
        up = previous[1:] + edit
        best = np.empty(h + 1, np.int64)
        best[0] = previous[0] + edit
        np.minimum(diagonal, up, out=best[1:])
        # insertions along the row cost one edit a word, so a running minimum finds the best run of them
        current = np.minimum.accumulate(best - insertions) + insertions
        row = back[i]
        row[0] = _DELETE
        row[1:] = np.where(diagonal <= up, _DIAGONAL, _DELETE)
        row[current < best] = _INSERT
        previous = current
    steps: list[AlignedWord] = []
    i, j = r, h
    while i or j:
        move = back[i, j]
        if move == _DIAGONAL:
            i, j = i - 1, j - 1
            steps.append(AlignedWord("substitute", ref[i], hyp[j]))
        elif move == _DELETE:
            i -= 1
            steps.append(AlignedWord("delete", ref[i], None))
        else:
            j -= 1
            steps.append(AlignedWord("insert", None, hyp[j]))
    return steps[::-1]


def _aligned_words(chunks, ref: list[str], hyp: list[str]) -> tuple[AlignedWord, ...]:
    """jiwer's alignment (its chunks) as words, each stretch between right words re-paired by similarity."""
    steps: list[AlignedWord] = []
    stretch: list[AlignedWord] = []
    for chunk in [*chunks, None]:
        if chunk is not None and chunk.type != "equal":
            refs = ref[chunk.ref_start_idx : chunk.ref_end_idx]
            hyps = hyp[chunk.hyp_start_idx : chunk.hyp_end_idx]
            if chunk.type == "substitute":
                stretch.extend(AlignedWord("substitute", r, h) for r, h in zip(refs, hyps))
            elif chunk.type == "delete":
                stretch.extend(AlignedWord("delete", r, None) for r in refs)
            else:
                stretch.extend(AlignedWord("insert", None, h) for h in hyps)
            continue
        # substitutions alone (the commonest stretch) pair up only one way
        if any(s.op != "substitute" for s in stretch):
            refs = [s.reference for s in stretch if s.reference is not None]
            hyps = [s.hypothesis for s in stretch if s.hypothesis is not None]
            stretch = _pair_similar(refs, hyps) or stretch
        steps.extend(stretch)
        stretch = []
        if chunk is not None:
            words = ref[chunk.ref_start_idx : chunk.ref_end_idx]
            steps.extend(AlignedWord("equal", w, w) for w in words)
    return tuple(steps)


def align_words(reference: Sequence[str], hypothesis: Sequence[str]) -> tuple[AlignedWord, ...]:
    """Word alignment with jiwer's counts whose substitutions pair the most similar words.

    jiwer's alignment has the fewest word edits; where several alignments tie, it picks one without
    looking at the words, e.g. "trail philip steels" against "trailed philips deals that's" as
    "trailed" inserted, trail→philips, philip→deals and steels→that's. This keeps the words jiwer finds
    right and re-aligns each stretch between them: the fewest edits again (so the substitution,
    deletion and insertion counts stay jiwer's), and among those the least summed dissimilarity of the
    substituted pairs, a pair's dissimilarity being its character edit distance over the longer
    word's length. The example becomes trail→trailed, philip→philips, steels→deals and "that's"
    inserted. A stretch of more than :data:`MAX_ALIGNMENT_CELLS` word pairs keeps jiwer's pairing.

    Parameters
    ----------
    reference, hypothesis : sequences of str
        Words, shapes (n,) and (m,).

    Returns
    -------
    tuple of AlignedWord
        The steps in order; every reference and hypothesis word appears in exactly one.

    Examples
    --------
    >>> [(a.reference, a.hypothesis) for a in align_words("trail philip steels".split(),
    ...                                                   "trailed philips deals that's".split())]
    [('trail', 'trailed'), ('philip', 'philips'), ('steels', 'deals'), (None, "that's")]
    """
    ref, hyp = list(reference), list(hypothesis)
    chunks = jiwer.process_words(" ".join(ref), " ".join(hyp)).alignments[0]
    return _aligned_words(chunks, ref, hyp)


def score_corpus(references: Sequence[str], hypotheses: Sequence[str], *, normalize: bool = True) -> CorpusScore:
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
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses: they must pair up")
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


def confusion_pairs(scores: Sequence[UtteranceScore], *, top: int | None = None) -> list[tuple[tuple[str, str], int]]:
    """Most frequent (reference word, hypothesis word) substitutions, commonest first."""
    pairs = Counter(
        (step.reference, step.hypothesis) for s in scores for step in s.alignment if step.op == "substitute"
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
