import jiwer
import pytest

from asrkit.metrics import AlignedWord, ErrorCounts, confusion_pairs, score, score_corpus

# (reference, hypothesis, hits, substitutions, deletions, insertions), counted by hand
HAND_COUNTED = [
    ("the cat sat on the mat", "the cat sat on the mat", 6, 0, 0, 0),
    ("the cat sat on the mat", "the cat sit on mat", 4, 1, 1, 0),
    ("a b c", "a x b c d", 3, 0, 0, 2),
    ("one two three", "", 0, 0, 3, 0),
    ("hello world", "goodbye moon", 0, 2, 0, 0),
    ("It's 10 o'clock!", "its ten o'clock", 2, 1, 0, 0),
]


@pytest.mark.parametrize("ref, hyp, h, s, d, i", HAND_COUNTED)
def test_counts_match_hand_computed(ref, hyp, h, s, d, i):
    result = score(ref, hyp)
    assert result.words == ErrorCounts(h, s, d, i)
    assert result.wer == pytest.approx((s + d + i) / (h + s + d))


def test_normalisation_is_applied_to_both_sides_unless_disabled():
    assert score("Hello, World!", "hello world").wer == 0.0
    assert score("Hello, World!", "hello world", normalize=False).wer == 1.0


def test_alignment_lists_every_word_once():
    result = score("the cat sat on the mat", "the cat sit on mat mat now")
    ops = [a.op for a in result.alignment]
    assert ops.count("substitute") == result.words.substitutions
    assert ops.count("insert") == result.words.insertions
    assert [a.reference for a in result.alignment if a.reference] == "the cat sat on the mat".split()
    assert [a.hypothesis for a in result.alignment if a.hypothesis] == "the cat sit on mat mat now".split()
    assert AlignedWord("substitute", "sat", "sit") in result.alignment


def test_character_error_rate():
    result = score("abc", "abd")
    assert result.chars == ErrorCounts(2, 1, 0, 0)
    assert result.cer == pytest.approx(1 / 3)


def test_corpus_totals_are_summed_errors_not_mean_of_rates():
    refs = ["a b c d e f g h i j", "x"]
    hyps = ["a b c d e f g h i j", "y"]
    corpus = score_corpus(refs, hyps)
    assert corpus.wer == pytest.approx(1 / 11)
    assert corpus.wer == pytest.approx(jiwer.wer(refs, hyps))
    assert [u.wer for u in corpus.utterances] == [0.0, 1.0]


def test_empty_reference_counts_insertions():
    assert score("", "").wer == 0.0
    assert score("", "two words").words.insertions == 2


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        score_corpus(["a", "b"], ["a"])


def test_confusion_pairs_commonest_first():
    scores = score_corpus(["the cat", "the cat", "a dog"], ["the cap", "the cap", "a dot"]).utterances
    assert confusion_pairs(scores) == [(("cat", "cap"), 2), (("dog", "dot"), 1)]
    assert confusion_pairs(scores, top=1) == [(("cat", "cap"), 2)]
