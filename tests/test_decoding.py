import numpy as np
import pytest

from asrkit.decoding import greedy_decode, words_from_chars
from asrkit.text import BLANK_ID, CharTokenizer

TOK = CharTokenizer()
FRAME = 0.04


def logits_for(path: str) -> np.ndarray:
    """One-hot logits: '_' is blank, any other character is that token."""
    ids = [BLANK_ID if c == "_" else TOK.encode(c)[0] for c in path]
    return np.log(np.eye(TOK.vocab_size)[ids] * 0.9 + 0.1 / TOK.vocab_size)


@pytest.mark.parametrize(
    "path, text",
    [
        ("hh_ee_ll_ll_oo", "hello"),  # a blank separates a real double letter
        ("hheelllloo", "helo"),  # without one, repeats merge
        ("____", ""),
        ("", ""),
        ("_a_ _b_", "a b"),
        ("  a  b  ", "a b"),  # spaces at the edges and doubled spaces collapse
    ],
)
def test_greedy_decode_hand_made_logits(path, text):
    assert greedy_decode(logits_for(path), tokenizer=TOK, frame_duration_s=FRAME)[0] == text


def test_char_and_word_times():
    _, chars = greedy_decode(logits_for("__hi___ _yo"), tokenizer=TOK, frame_duration_s=FRAME)
    assert [c.text for c in chars] == ["h", "i", " ", "y", "o"]
    assert chars[0].start == pytest.approx(2 * FRAME) and chars[0].end == pytest.approx(3 * FRAME)
    words = words_from_chars(chars)
    assert [(w.text, round(w.start / FRAME), round(w.end / FRAME)) for w in words] == [
        ("hi", 2, 4),
        ("yo", 9, 11),
    ]


def test_wrong_shape_is_refused():
    with pytest.raises(ValueError, match="n_frames, 29"):
        greedy_decode(np.zeros((5, 3)), tokenizer=TOK, frame_duration_s=FRAME)
