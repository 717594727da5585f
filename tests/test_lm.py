import dataclasses
import math

import numpy as np
import pytest
from conftest import SHARED_DATA, shared_path
from lab_data import lm_sentences

from asrkit.decoding import DecoderConfig, beam_search, greedy_decode
from asrkit.lm import BOS, NGramLM
from asrkit.manifest import read_manifest
from asrkit.text import BLANK_ID, CharTokenizer, normalize_text

TOK = CharTokenizer()
SENTENCES = ["the cat sat on the mat", "the cat ran to the dog", "a dog sat on a cat", "the mat is red"]


@pytest.fixture(scope="module")
def lm():
    return NGramLM.build(SENTENCES, order=3)


@pytest.mark.parametrize("context", [(), ("the",), (BOS,), ("the", "cat"), ("never", "seen"), (BOS, "a")])
def test_every_context_is_a_probability_distribution(lm, context):
    vocab = [g[0] for g in lm.probs if len(g) == 1 and g[0] != BOS]
    assert sum(math.exp(lm.logprob(context, w)) for w in vocab) == pytest.approx(1.0, abs=1e-6)


def test_seen_word_orders_beat_unseen_and_unknown_words(lm):
    assert lm.sentence_logprob("the cat sat".split()) > lm.sentence_logprob("cat the sat".split())
    assert lm.logprob(("the",), "cat") > lm.logprob(("the",), "zebra")


def test_a_context_shorter_than_the_order_is_kept_whole():
    lm = NGramLM.build(SENTENCES, order=4)
    # "<s> a" differs from "a" alone: only "a dog" starts a sentence, "a cat" and "a mat" do not
    assert lm.logprob((BOS, "a"), "dog") > lm.logprob(("a",), "dog")


def test_arpa_round_trip(lm, tmp_path):
    for name in ("lm.arpa", "lm.arpa.gz"):
        lm.save(tmp_path / name)
        again = NGramLM.load(tmp_path / name)
        assert again.order == 3
        for s in SENTENCES + ["red dog on mat"]:
            assert again.sentence_logprob(s.split()) == pytest.approx(lm.sentence_logprob(s.split()), abs=1e-3)


def test_bad_arpa_is_refused(tmp_path):
    (tmp_path / "x.arpa").write_text("\\data\\\nngram 1=1\n\n\\1-grams:\nnot-a-number word\n")
    with pytest.raises(ValueError, match="malformed ARPA line"):
        NGramLM.load(tmp_path / "x.arpa")
    (tmp_path / "y.arpa").write_text("hello\n")
    with pytest.raises(ValueError, match="no n-grams"):
        NGramLM.load(tmp_path / "y.arpa")


def spell(frames: list[dict[str, float]]) -> np.ndarray:
    """Logits from per-frame {character: probability}; '_' is blank, the rest of the mass is blank."""
    out = np.full((len(frames), TOK.vocab_size), 1e-6)
    for row, probs in zip(out, frames):
        for ch, p in probs.items():
            row[BLANK_ID if ch == "_" else TOK.encode(ch)[0]] = p
        row[BLANK_ID] += max(0.0, 1 - row.sum())
    return np.log(out)


def test_beam_search_without_lm_matches_greedy_on_clear_input():
    logits = spell([{"t": 1}, {"h": 1}, {"e": 1}, {"_": 1}, {" ": 1}, {"c": 1}, {"a": 1}, {"a": 1}, {"_": 1}, {"t": 1}])
    beam = beam_search(logits, tokenizer=TOK, frame_duration_s=0.04, config=DecoderConfig(beta=0.0))
    assert beam[0] == greedy_decode(logits, tokenizer=TOK, frame_duration_s=0.04)[0] == "the cat"
    assert [s.text for s in beam[1]] == list("the cat")
    assert beam[1][4].start == pytest.approx(5 * 0.04)


def test_language_model_settles_an_acoustically_ambiguous_word(lm):
    # "the c?t sat": the vowel is slightly more "o" than "a" acoustically
    frames = [
        {"t": 1},
        {"h": 1},
        {"e": 1},
        {" ": 1},
        {"c": 1},
        {"o": 0.52, "a": 0.48},
        {"t": 1},
        {" ": 1},
        {"s": 1},
        {"a": 1},
        {"t": 1},
    ]
    logits = spell(frames)
    assert greedy_decode(logits, tokenizer=TOK, frame_duration_s=0.04)[0] == "the cot sat"
    with_lm = beam_search(
        logits, tokenizer=TOK, frame_duration_s=0.04, lm=lm, config=DecoderConfig(alpha=0.5, beta=1.0)
    )
    assert with_lm[0] == "the cat sat"


def test_closed_vocabulary_snaps_a_misspelling_to_a_known_word(lm):
    # "the mxt is red": acoustically "mit", which the LM has never seen; its only m-word is "mat".
    # With no weight on the LM's probabilities, only the vocabulary can decide.
    frames = [
        {"t": 1},
        {"h": 1},
        {"e": 1},
        {" ": 1},
        {"m": 1},
        {"i": 0.7, "a": 0.3},
        {"t": 1},
        {" ": 1},
        {"i": 1},
        {"s": 1},
        {" ": 1},
        {"r": 1},
        {"e": 1},
        {"d": 1},
    ]
    logits = spell(frames)
    config = DecoderConfig(alpha=0.0, beta=1.0)
    assert beam_search(logits, tokenizer=TOK, frame_duration_s=0.04, lm=lm, config=config)[0] == "the mit is red"
    closed = DecoderConfig(alpha=0.0, beta=1.0, closed_vocabulary=True)
    assert beam_search(logits, tokenizer=TOK, frame_duration_s=0.04, lm=lm, config=closed)[0] == "the mat is red"


def test_closed_vocabulary_keeps_repeated_letters_and_ends_on_a_whole_word():
    lm = NGramLM.build(["all is well", "a ball"], order=2)
    closed = DecoderConfig(alpha=0.0, beta=1.0, closed_vocabulary=True)
    # double letters need a blank between them, and repeated frames of one letter merge
    frames = [
        {"a": 1},
        {"l": 1},
        {"l": 1},
        {"_": 1},
        {"l": 1},
        {" ": 1},
        {"i": 1},
        {"s": 1},
        {" ": 1},
        {"w": 1},
        {"e": 1},
        {"l": 1},
        {"_": 1},
        {"l": 1},
    ]
    assert beam_search(spell(frames), tokenizer=TOK, frame_duration_s=0.04, lm=lm, config=closed)[0] == "all is well"
    # the second l of "ball" is the weaker reading of the last frame: the utterance may not end on "bal"
    frames = [{"a": 1}, {" ": 1}, {"b": 1}, {"a": 1}, {"l": 1}, {"_": 1}, {"l": 0.4, "_": 0.6}]
    open_ = DecoderConfig(alpha=0.0, beta=1.0)
    assert beam_search(spell(frames), tokenizer=TOK, frame_duration_s=0.04, lm=lm, config=open_)[0] == "a bal"
    assert beam_search(spell(frames), tokenizer=TOK, frame_duration_s=0.04, lm=lm, config=closed)[0] == "a ball"
    # the audio stops inside "well" and the one-prefix beam holds no whole-word reading: the unfinished
    # word is dropped
    frames = [{"i": 1}, {"s": 1}, {" ": 1}, {"w": 1}, {"e": 1}]
    narrow = dataclasses.replace(closed, beam_width=1)
    assert beam_search(spell(frames), tokenizer=TOK, frame_duration_s=0.04, lm=lm, config=narrow)[0] == "is"


def test_the_end_of_the_sentence_is_scored_after_a_trailing_space_too():
    # "go" is never the last word of the LM's text; "home" always is. The audio says "go", a space,
    # then "home" or silence equally (each frame half character, half blank): ending after the
    # space must not escape the improbable "go </s>".
    lm = NGramLM.build(["we go home", "they go home", "go home now", "home"], order=3)
    frames = [{"g": 1}, {"o": 1}, {" ": 1}] + [{c: 0.5, "_": 0.5} for c in "home"]
    config = DecoderConfig(alpha=1.0, beta=0.0)
    assert beam_search(spell(frames), tokenizer=TOK, frame_duration_s=0.04, lm=lm, config=config)[0] == "go home"


def test_closed_vocabulary_survives_a_frame_that_no_word_allows(lm):
    # the confident "x" (blank far below the pruning margin) continues no word the LM knows
    logits = spell([{"c": 1}, {"a": 1}, {"x": 1}, {"t": 1}])
    closed = DecoderConfig(alpha=0.5, beta=1.0, closed_vocabulary=True)
    assert beam_search(logits, tokenizer=TOK, frame_duration_s=0.04, lm=lm, config=closed)[0] == "cat"


def test_language_model_text_leaves_out_every_evaluation_sentence():
    shared_path("splits")
    sentences = {normalize_text(s) for s in lm_sentences(SHARED_DATA)}
    excluded = (SHARED_DATA / "splits/eval_texts_to_exclude_from_training.txt").read_text().splitlines()
    evaluation = {
        normalize_text(u.transcript)
        for split in ("kathleen_dev", "fixtures_dev", "fsdd_dev")
        for u in read_manifest(SHARED_DATA / f"splits/{split}.tsv")
    }
    assert len(sentences) > 10_000
    assert not sentences & {normalize_text(e) for e in excluded}
    # fsdd_dev's single digit words are also training transcripts (another speaker said them)
    assert not (sentences & evaluation) - {
        normalize_text(u.transcript) for u in read_manifest(SHARED_DATA / "splits/fsdd_train.tsv")
    }
