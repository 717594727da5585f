"""Subtitle cues: two lines of 42 characters, 1 to 7 s, cut at pauses and sentences, never overlapping."""

import itertools
import json
import random
from pathlib import Path

import pytest

from asrkit.contracts import Span, Transcript
from asrkit.formats import (
    MAX_CUE_SECONDS,
    MAX_LINE_CHARS,
    MIN_CUE_SECONDS,
    PAUSE_SECONDS,
    cues,
    render,
    to_json,
    to_srt,
)

# Whisper tiny.en and PocketSphinx transcripts of fixtures_dev audio (see tests/data/transcripts/README.md)
TRANSCRIPTS = sorted((Path(__file__).parent / "data" / "transcripts").glob("*.json"))


def timed(*words: tuple[str, float, float], duration: float | None = None) -> Transcript:
    spans = tuple(Span(*w) for w in words)
    return Transcript(" ".join(w.text for w in spans), duration or spans[-1].end + 1.0, words=spans)


def steady(text: str, *, start: float = 0.0, seconds_per_word: float = 0.3) -> list[tuple[str, float, float]]:
    """Words said one after another with no pause, ``seconds_per_word`` each."""
    return [(w, start + k * seconds_per_word, start + (k + 1) * seconds_per_word) for k, w in enumerate(text.split())]


def check_cues(transcript: Transcript) -> list[Span]:
    """The cues of ``transcript``, once every subtitle rule is checked on them."""
    result = cues(transcript)
    words = [w for w in transcript.words if w.text.strip()]
    audio_end = max([transcript.duration_s] + [w.end for w in words])
    # nothing dropped, nothing reordered
    assert " ".join(c.text.replace("\n", " ") for c in result) == " ".join(transcript.text.split())
    for k, cue in enumerate(result):
        lines = cue.text.split("\n")
        assert len(lines) <= 2 and all(0 < len(line) <= MAX_LINE_CHARS for line in lines), cue
        next_start = result[k + 1].start if k + 1 < len(result) else audio_end
        assert cue.start <= cue.end <= next_start, (cue, next_start)
        # at least MIN_CUE_SECONDS on screen, unless the next cue (or the audio's end) leaves no room
        assert cue.end - cue.start >= MIN_CUE_SECONDS - 1e-9 or cue.end == pytest.approx(next_start), cue
        # at most MAX_CUE_SECONDS of speech, unless it is a single word
        assert cue.end - cue.start <= MAX_CUE_SECONDS + 1e-9 or " " not in cue.text.replace("\n", " "), cue
    for before, after in itertools.pairwise(words):
        if after.start - before.end >= PAUSE_SECONDS:
            assert not any(c.start <= before.start and c.end > after.start for c in result), (before, after)
    return result


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=lambda p: p.stem)
def test_cues_of_real_transcripts_follow_the_rules(path):
    transcript = Transcript.from_dict(json.loads(path.read_text(encoding="utf-8")))
    result = check_cues(transcript)
    assert len(result) > 1


def test_cues_follow_the_rules_on_random_speech():
    rng = random.Random(0)
    vocabulary = [
        "a",
        "the",
        "of",
        "cat",
        "window",
        "extraordinary",
        "said",
        "Dashwood,",
        "home.",
        "why?",
        "ill-disposed",
    ]
    for _ in range(200):
        words, clock = [], rng.uniform(0, 2)
        for _ in range(rng.randint(1, 60)):
            clock += rng.choice([0.0, 0.0, 0.0, 0.1, 0.3, 0.5, 0.8, 2.0])
            length = rng.uniform(0.05, 1.2)
            words.append((rng.choice(vocabulary), clock, clock + length))
            clock += length
        check_cues(timed(*words, duration=clock + rng.choice([0.0, 0.3, 3.0])))


def test_a_pause_ends_a_cue_and_a_short_cue_stays_on_screen_until_the_next():
    result = check_cues(timed(("Yes.", 0.0, 0.3), ("I", 0.9, 1.0), ("think", 1.0, 1.3), ("so.", 1.3, 1.6)))
    assert [(c.text, c.start, c.end) for c in result] == [("Yes.", 0.0, 0.9), ("I think so.", 0.9, 1.9)]


def test_a_new_sentence_starts_a_new_cue_unless_a_cue_would_be_too_short():
    two = check_cues(timed(*steady("We went home early. The rain had not stopped all day.")))
    assert [c.text for c in two] == ["We went home early.", "The rain had not stopped all day."]
    merged = check_cues(timed(*steady("No. The rain had not stopped all day.")))
    assert [c.text for c in merged] == ["No. The rain had not stopped all day."]


def test_long_sentences_are_cut_at_clauses_into_balanced_lines():
    first = "The birch canoe slid on the smooth planks of the old dock,"
    second = "while the sheet was glued to the dark blue background."
    result = check_cues(timed(*steady(f"{first} {second}", seconds_per_word=0.2)))
    assert [c.text.replace("\n", " ") for c in result] == [first, second]
    for cue in result:
        top, bottom = cue.text.split("\n")
        assert abs(len(top) - len(bottom)) <= 12, cue.text


def test_slow_speech_is_cut_at_seven_seconds():
    result = check_cues(
        timed(*steady("one two three four five six seven eight nine ten eleven twelve", seconds_per_word=0.9))
    )
    assert len(result) == 2 and all(c.end - c.start <= MAX_CUE_SECONDS for c in result)


def test_a_word_stretched_over_a_silence_counts_as_a_pause():
    # Whisper's times for JFK: "what" runs over the silence after "ask not"
    result = check_cues(
        timed(
            ("ask", 2.26, 3.88), ("not", 3.88, 4.52), ("what", 4.52, 5.7), ("your", 5.7, 6.02), ("country", 6.02, 6.36)
        )
    )
    assert [c.text for c in result] == ["ask not", "what your country"]


def test_pieces_written_as_one_word_are_joined():
    words = (Span("ill", 0.0, 0.3), Span("-disposed", 0.3, 0.8), Span("man.", 0.8, 1.2))
    result = check_cues(Transcript("ill-disposed man.", 2.0, words=words))
    assert [c.text for c in result] == ["ill-disposed man."]


def test_overlapping_word_times_give_cues_that_do_not_overlap():
    words = [*steady("First sentence is here."), ("Second", 1.0, 1.5), *steady("one is here.", start=1.4)]
    result = check_cues(timed(*words))
    assert all(a.end <= b.start for a, b in itertools.pairwise(result))


def test_a_word_longer_than_a_line_is_cut():
    url = "https://example.org/" + "x" * 60
    result = cues(Transcript(url, 3.0, words=(Span(url, 0.0, 2.0),)))
    assert "".join(c.text.replace("\n", "") for c in result) == url
    assert all(len(line) <= MAX_LINE_CHARS for c in result for line in c.text.split("\n"))


def test_without_word_times_the_text_still_makes_readable_cues():
    text = " ".join(["the quick brown fox jumps over the lazy dog."] * 12)
    result = check_cues(Transcript(text, 40.0))
    assert len(result) > 4 and result[0].start == 0.0 and result[-1].end == pytest.approx(40.0)


def test_json_times_are_rounded_to_milliseconds():
    t = Transcript("a b", 2.0000000000000004, words=(Span("a", 0.1 + 0.2, 1.6400000000000001), Span("b", 1.7, 1.9)))
    data = json.loads(to_json(t))
    assert data["words"][0] == {"text": "a", "start": 0.3, "end": 1.64}
    assert data["duration_s"] == 2.0
    assert "0000000" not in render(t, "json")


def test_srt_numbers_cues_and_writes_their_lines():
    srt = to_srt(timed(*steady("We went home early. The rain had not stopped all day.")))
    second = ["2", "00:00:01,200 --> 00:00:03,300", "The rain had not stopped all day."]
    assert srt.split("\n\n")[1].splitlines() == second


def test_a_title_does_not_end_a_sentence():
    result = check_cues(timed(*steady("The house of our old friend Mr. Dashwood stood by the mill.")))
    assert [c.text for c in result] == ["The house of our old friend\nMr. Dashwood stood by the mill."]
