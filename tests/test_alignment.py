"""Word alignments: jiwer's counts, with substitutions that pair the most similar words."""

import random
from collections import Counter
from functools import cache

import jiwer
import pytest
from conftest import shared_path
from rapidfuzz.distance import Levenshtein

from asrkit import metrics
from asrkit.metrics import AlignedWord, ErrorCounts, align_words, score, score_corpus
from asrkit.report import alignment_html
from asrkit.text import normalize_text
from asrkit.widgets.read_aloud import score_html

# CMU ARCTIC a0001 (in fixtures_dev) and a hypothesis with the errors a small model makes on it
ARCTIC_A0001 = "Author of the danger trail, Philip Steels, etc."
MISHEARD = "author of the danger trailed philips deals that's etc"


def counts_of(alignment) -> ErrorCounts:
    ops = Counter(a.op for a in alignment)
    return ErrorCounts(ops["equal"], ops["substitute"], ops["delete"], ops["insert"])


def jiwer_counts(reference: list[str], hypothesis: list[str]) -> ErrorCounts:
    out = jiwer.process_words(" ".join(reference), " ".join(hypothesis))
    return ErrorCounts(out.hits, out.substitutions, out.deletions, out.insertions)


def dissimilarity(alignment) -> float:
    return sum(Levenshtein.normalized_distance(a.reference, a.hypothesis) for a in alignment if a.op == "substitute")


def assert_consistent(alignment, reference: list[str], hypothesis: list[str]) -> None:
    """Every word once, in order; "equal" exactly where the words are the same; jiwer's counts."""
    assert [a.reference for a in alignment if a.reference is not None] == reference
    assert [a.hypothesis for a in alignment if a.hypothesis is not None] == hypothesis
    assert all((a.op == "equal") == (a.reference == a.hypothesis) for a in alignment)
    assert counts_of(alignment) == jiwer_counts(reference, hypothesis)


def test_the_reported_pair_substitutes_similar_words():
    result = score(ARCTIC_A0001, MISHEARD)
    errors = [(a.op, a.reference, a.hypothesis) for a in result.alignment if a.op != "equal"]
    assert errors == [
        ("substitute", "trail", "trailed"),
        ("substitute", "philip", "philips"),
        ("substitute", "steels", "deals"),
        ("insert", None, "that's"),
    ]
    assert result.words == jiwer_counts(result.reference.split(), result.hypothesis.split())
    assert result.wer == pytest.approx(jiwer.wer(result.reference, result.hypothesis))


def test_report_and_read_aloud_show_the_same_pairing():
    shown = alignment_html(score(ARCTIC_A0001, MISHEARD).alignment)
    assert '<span class="sub">trail→trailed</span>' in shown
    assert '<span class="ins">that&#x27;s</span>' in shown
    assert shown in score_html(ARCTIC_A0001, MISHEARD)


def test_words_jiwer_counts_right_stay_right():
    # "trail" is right here; the words after it are re-paired by similarity
    alignment = align_words(["trail", "philip", "steels"], ["trailed", "trail", "philips", "deals", "that's"])
    assert [(a.reference, a.hypothesis) for a in alignment] == [
        (None, "trailed"),
        ("trail", "trail"),
        ("philip", "philips"),
        ("steels", "deals"),
        (None, "that's"),
    ]


@pytest.mark.parametrize("vocabulary_size", [2, 3, 6, 30])
def test_counts_are_jiwers_on_random_pairs(vocabulary_size):
    # small vocabularies make many alignments tie, where a different choice could change the counts
    rng = random.Random(vocabulary_size)
    vocabulary = [c * (k % 4 + 1) for k, c in enumerate("abcdefghijklmnopqrstuvwxyzABCD"[:vocabulary_size])]
    for _ in range(300):
        reference = [rng.choice(vocabulary) for _ in range(rng.randint(0, 14))]
        hypothesis = [rng.choice(vocabulary) for _ in range(rng.randint(0, 14))]
        assert_consistent(align_words(reference, hypothesis), reference, hypothesis)


def misrecognise(words: list[str], rng: random.Random) -> list[str]:
    """Errors of the kinds a recogniser makes: inflections, dropped and repeated words, split words."""
    out: list[str] = []
    for word in words:
        roll = rng.random()
        if roll < 0.05:
            continue
        if roll < 0.12:
            out.append(word + rng.choice(["s", "ed", "ing"]))
        elif roll < 0.16 and len(word) > 5:
            out.extend([word[: len(word) // 2], word[len(word) // 2 :]])
        else:
            out.append(word)
        if rng.random() < 0.04:
            out.append(rng.choice(words))
    return out


def test_counts_are_jiwers_on_real_sentences():
    sentences = shared_path("text/harvard_sentences.txt").read_text(encoding="utf-8").splitlines()[:150]
    rng = random.Random(0)
    references = [normalize_text(s) for s in sentences]
    pairs = [(r, " ".join(misrecognise(r.split(), rng))) for r in references]
    # and unrelated sentences, the hardest case: long stretches with nothing right
    pairs += list(zip(references, references[1:] + references[:1]))
    corpus = score_corpus([r for r, _ in pairs], [h for _, h in pairs])
    for (reference, hypothesis), utterance in zip(pairs, corpus.utterances):
        assert_consistent(utterance.alignment, reference.split(), hypothesis.split())
        assert utterance.words == counts_of(utterance.alignment)
    assert corpus.wer == pytest.approx(jiwer.wer([r for r, _ in pairs], [h for _, h in pairs]))


def all_alignments(reference: tuple[str, ...], hypothesis: tuple[str, ...]) -> list[tuple[AlignedWord, ...]]:
    """Every alignment of two word sequences that never pairs a word with itself."""

    @cache
    def paths(i: int, j: int) -> list[tuple[AlignedWord, ...]]:
        if i == len(reference) and j == len(hypothesis):
            return [()]
        out = []
        if i < len(reference):
            out += [(AlignedWord("delete", reference[i], None),) + p for p in paths(i + 1, j)]
        if j < len(hypothesis):
            out += [(AlignedWord("insert", None, hypothesis[j]),) + p for p in paths(i, j + 1)]
        if i < len(reference) and j < len(hypothesis) and reference[i] != hypothesis[j]:
            out += [(AlignedWord("substitute", reference[i], hypothesis[j]),) + p for p in paths(i + 1, j + 1)]
        return out

    return paths(0, 0)


def test_pairing_is_the_most_similar_of_all_minimum_edit_alignments():
    # no word in common, so every alignment with the fewest edits has jiwer's counts
    rng = random.Random(1)
    stems = ["cat", "catch", "cart", "dog", "dough", "deal", "steel", "trail", "tail", "trial", "philip", "flip"]
    for _ in range(60):
        vocabulary = rng.sample(stems, 8)
        reference = rng.sample(vocabulary[:4], rng.randint(1, 4))
        hypothesis = rng.sample(vocabulary[4:], rng.randint(1, 4))
        candidates = all_alignments(tuple(reference), tuple(hypothesis))
        fewest = min(counts_of(c).errors for c in candidates)
        best = min(dissimilarity(c) for c in candidates if counts_of(c).errors == fewest)
        ours = align_words(reference, hypothesis)
        assert counts_of(ours).errors == fewest
        assert dissimilarity(ours) == pytest.approx(best, abs=len(reference) / metrics.DISSIMILARITY_STEPS)


def test_a_stretch_beyond_the_limit_keeps_jiwers_pairing(monkeypatch):
    reference, hypothesis = ["trail", "philip", "steels"], ["trailed", "philips", "deals", "that's"]
    monkeypatch.setattr(metrics, "MAX_ALIGNMENT_CELLS", 11)
    alignment = align_words(reference, hypothesis)
    assert_consistent(alignment, reference, hypothesis)
    assert ("trail", "philips") in [(a.reference, a.hypothesis) for a in alignment]
