"""Error analysis of evaluation reports: which words go wrong, for whom, and how two models differ.

Everything here works on :class:`~asrkit.evaluate.EvalReport` objects, whatever model made them.

Usage
-----
::

    report = evaluate(load_model(), read_manifest("dev.tsv"))
    errors = word_errors(report)
    errors.substitutions[:3]
    # [(('the', 'a'), 12), (('in', 'and'), 7), (('a', 'the'), 5)]
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from asrkit.evaluate import EvalReport, EvalRow
from asrkit.metrics import ErrorCounts, Interval, bootstrap_interval, confusion_pairs
from asrkit.text import normalize_text

# Utterance length bins (reference words) for WER by length.
LENGTH_BINS = (1, 3, 6, 11, 21)


@dataclass(frozen=True)
class WordErrors:
    """The commonest errors, commonest first."""

    # ((reference word, hypothesis word), count)
    substitutions: list[tuple[tuple[str, str], int]]
    # (word the model added, count)
    insertions: list[tuple[str, int]]
    # (word the model missed, count)
    deletions: list[tuple[str, int]]


@dataclass(frozen=True)
class WordStat:
    """How often one reference word was recognised."""

    word: str
    count: int
    correct: int
    # not in the vocabulary given (e.g. the model's training text); None when none was given
    oov: bool | None = None

    @property
    def accuracy(self) -> float:
        return self.correct / self.count if self.count else 0.0


@dataclass(frozen=True)
class GroupScore:
    """Word errors of a group of utterances (one speaker, one length bin)."""

    name: str
    utterances: int
    words: ErrorCounts
    interval: Interval

    @property
    def wer(self) -> float:
        return self.words.rate


def word_errors(report: EvalReport, *, top: int | None = 20) -> WordErrors:
    """Top confusion pairs and the most inserted and most deleted words."""
    scores = report.corpus.utterances
    inserted = Counter(a.hypothesis for s in scores for a in s.alignment if a.op == "insert")
    deleted = Counter(a.reference for s in scores for a in s.alignment if a.op == "delete")
    return WordErrors(confusion_pairs(scores, top=top), inserted.most_common(top), deleted.most_common(top))


def vocabulary(texts: Iterable[str]) -> set[str]:
    """Normalised words of ``texts``, e.g. the model's training transcripts.

    Usage
    -----
    ::

        sorted(vocabulary(["Hello, World!", "hello there"]))
        # ['hello', 'there', 'world']
    """
    return {word for text in texts for word in normalize_text(text).split()}


def word_accuracy(report: EvalReport, *, known: set[str] | None = None) -> list[WordStat]:
    """Per reference word: occurrences and how many were recognised, most frequent first.

    With ``known`` (a vocabulary), each word says whether it is out of it: a model rarely gets a
    word right that it never saw in training.
    """
    count: Counter[str] = Counter()
    correct: Counter[str] = Counter()
    for s in report.corpus.utterances:
        for a in s.alignment:
            if a.reference is not None:
                count[a.reference] += 1
                correct[a.reference] += a.op == "equal"
    return [
        WordStat(w, n, correct[w], None if known is None else w not in known)
        for w, n in sorted(count.items(), key=lambda item: (-item[1], item[0]))
    ]


def _group(name: str, rows: Sequence[EvalRow]) -> GroupScore:
    counts = [r.score.words for r in rows]
    return GroupScore(name, len(rows), sum(counts, ErrorCounts()), bootstrap_interval(counts))


def wer_by_speaker(report: EvalReport) -> list[GroupScore]:
    """One group per speaker ("" when the manifest names none), worst WER first."""
    speakers: dict[str, list[EvalRow]] = {}
    for row in report.rows:
        speakers.setdefault(row.utterance.speaker, []).append(row)
    return sorted((_group(s, rows) for s, rows in speakers.items()), key=lambda g: -g.wer)


def wer_by_length(report: EvalReport, *, bins: Sequence[int] = LENGTH_BINS) -> list[GroupScore]:
    """Groups by reference length in words: ``bins`` are the lower edges (the last is open)."""
    edges = list(bins)
    groups: dict[int, list[EvalRow]] = {}
    for row in report.rows:
        n = row.score.words.reference_length
        groups.setdefault(max((i for i, e in enumerate(edges) if n >= e), default=0), []).append(row)
    names = [
        f"{lo}-{hi - 1} words" if hi - 1 > lo else f"{lo} word{'s' * (lo != 1)}" for lo, hi in zip(edges, edges[1:])
    ]
    names.append(f"{edges[-1]}+ words")
    return [_group(names[i], groups[i]) for i in sorted(groups)]


@dataclass(frozen=True)
class Difference:
    """One utterance that two models transcribe differently."""

    row_a: EvalRow
    row_b: EvalRow

    @property
    def wer_delta(self) -> float:
        """WER of B minus WER of A on this utterance."""
        return self.row_b.score.wer - self.row_a.score.wer


@dataclass(frozen=True)
class Comparison:
    """Two models on the same utterances."""

    a: EvalReport
    b: EvalReport
    # utterances whose normalised hypotheses differ, where B is worse first
    differences: list[Difference]
    # corpus WER of B minus A, and its paired bootstrap interval (utterances resampled together)
    wer_delta: float
    delta_interval: Interval
    # (reference word, times) that A recognised and B did not at the same place, and the reverse
    only_a_right: list[tuple[str, int]]
    only_b_right: list[tuple[str, int]]


def _right_words(row: EvalRow) -> list[bool]:
    """For each reference word in order, whether the hypothesis has it."""
    return [a.op == "equal" for a in row.score.alignment if a.reference is not None]


def compare(a: EvalReport, b: EvalReport, *, top: int | None = 20, resamples: int = 1000, seed: int = 0) -> Comparison:
    """Compare two reports of the same utterances (matched by audio file)."""
    b_rows = {r.utterance.audio_path: r for r in b.rows}
    pairs = [(r, b_rows[r.utterance.audio_path]) for r in a.rows if r.utterance.audio_path in b_rows]
    if not pairs:
        raise ValueError(f"reports of {a.model!r} and {b.model!r} share no utterance")
    only_a: Counter[str] = Counter()
    only_b: Counter[str] = Counter()
    for ra, rb in pairs:
        words = [x.reference for x in ra.score.alignment if x.reference is not None]
        for word, right_a, right_b in zip(words, _right_words(ra), _right_words(rb)):
            if right_a and not right_b:
                only_a[word] += 1
            elif right_b and not right_a:
                only_b[word] += 1
    errors = np.array([[ra.score.words.errors, rb.score.words.errors] for ra, rb in pairs])
    lengths = np.array([ra.score.words.reference_length for ra, _ in pairs])
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(pairs), (resamples, len(pairs)))
    picked_len = np.maximum(lengths[picks].sum(axis=1), 1)
    deltas = (errors[picks, 1].sum(axis=1) - errors[picks, 0].sum(axis=1)) / picked_len
    low, high = np.quantile(deltas, [0.025, 0.975])
    delta = (errors[:, 1].sum() - errors[:, 0].sum()) / max(lengths.sum(), 1)
    differences = sorted(
        (Difference(ra, rb) for ra, rb in pairs if ra.score.hypothesis != rb.score.hypothesis),
        key=lambda d: -d.wer_delta,
    )
    return Comparison(
        a,
        b,
        differences,
        float(delta),
        Interval(float(low), float(high), 0.95),
        only_a.most_common(top),
        only_b.most_common(top),
    )
