import json

import pytest

from asrkit.contracts import Span, Transcript
from asrkit.formats import MAX_CUE_SECONDS, MAX_LINE_CHARS, cues, render, to_srt, to_vtt


def transcript(n_words: int, step: float = 0.5) -> Transcript:
    words = tuple(Span(f"word{i}", i * step, i * step + 0.4) for i in range(n_words))
    return Transcript(" ".join(w.text for w in words), n_words * step, words=words)


def test_cues_respect_length_and_duration_bounds():
    for c in cues(transcript(40)):
        assert all(len(line) <= MAX_LINE_CHARS for line in c.text.split("\n"))
        assert c.end - c.start <= MAX_CUE_SECONDS
    assert " ".join(c.text.replace("\n", " ") for c in cues(transcript(40))) == transcript(40).text


def test_no_word_times_gives_one_cue_and_empty_gives_none():
    assert cues(Transcript("hello there", 2.5)) == [Span("hello there", 0.0, 2.5)]
    assert cues(Transcript("", 2.5)) == []
    assert to_srt(Transcript("", 2.5)) == ""


def test_srt_and_vtt_timestamps():
    t = Transcript("a bee", 3725.0, words=(Span("a", 3723.25, 3723.5), Span("bee", 3723.6, 3724.299)))
    assert to_srt(t) == "1\n01:02:03,250 --> 01:02:04,299\na bee\n"
    assert to_vtt(t) == "WEBVTT\n\n01:02:03.250 --> 01:02:04.299\na bee\n\n"


def test_json_carries_times_and_extra_fields():
    data = json.loads(render(transcript(2), "json", file="x.wav"))
    assert data["file"] == "x.wav"
    assert data["words"][1] == {"text": "word1", "start": 0.5, "end": 0.9}


def test_unknown_format():
    with pytest.raises(ValueError, match="unknown format 'doc'"):
        render(transcript(1), "doc")
